"""Find a consumer group's definition (its module) by group name, for the operator CLIs."""

from __future__ import annotations

import importlib
from collections.abc import Iterable
from types import ModuleType

from outbox.config import settings
from outbox.consumer import ConsumerGroup
from outbox.discovery import import_service_modules


def consumer_modules(packages: str | Iterable[str] | None = None) -> list[ModuleType]:
    """Every `<package>.<name>.consumers` module of the project's packages, then the modules its
    [tool.outbox] consumer_modules names (groups a service runs as a process of their own)."""
    found = import_service_modules(packages, "consumers")
    if packages is None:
        found += [importlib.import_module(name) for name in settings().consumer_modules]
    return found


def database_url(module: ModuleType) -> str:
    """The SQLAlchemy URL of the database holding a group's inbox and projection (its module says)."""
    value = module.database_url
    return str(value() if callable(value) else value)


def find(group_name: str, packages: str | Iterable[str] | None = None) -> ModuleType:
    """The module that defines `group` with this name (and `database_url`, `projection_tables`)."""
    known = []
    for module in consumer_modules(packages):
        group = getattr(module, "group", None)
        if isinstance(group, ConsumerGroup):
            known.append(group.name)
            if group.name == group_name:
                return module
    raise SystemExit(f"unknown consumer group {group_name!r}; known: {', '.join(sorted(known)) or 'none'}")
