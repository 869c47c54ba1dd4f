"""Find a consumer group's definition (its module) by group name, for the operator CLIs."""

from __future__ import annotations

import importlib
import pkgutil
from types import ModuleType

from outbox.consumer import ConsumerGroup


def consumer_modules(package: str = "apps") -> list[ModuleType]:
    root = importlib.import_module(package)
    modules = []
    for info in pkgutil.iter_modules(root.__path__):
        try:
            modules.append(importlib.import_module(f"{package}.{info.name}.consumers"))
        except ModuleNotFoundError as exc:
            if exc.name != f"{package}.{info.name}.consumers":
                raise
    return modules


def database_url(module: ModuleType) -> str:
    """The SQLAlchemy URL of the database holding a group's inbox and projection (its module says)."""
    value = module.database_url
    return str(value() if callable(value) else value)


def find(group_name: str) -> ModuleType:
    """The module that defines `group` with this name (and `database_url`, `projection_tables`)."""
    known = []
    for module in consumer_modules():
        group = getattr(module, "group", None)
        if isinstance(group, ConsumerGroup):
            known.append(group.name)
            if group.name == group_name:
                return module
    raise SystemExit(f"unknown consumer group {group_name!r}; known: {', '.join(sorted(known)) or 'none'}")
