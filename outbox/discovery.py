"""Find a project's event and consumer modules: `<package>.<name>.<leaf>` for every sub-package.

Which packages to look in is the project's setting (outbox.config: [tool.outbox] packages), never the
library's guess.
"""

from __future__ import annotations

import importlib
import importlib.util
import pkgutil
from collections.abc import Iterable
from types import ModuleType

from outbox.config import settings

__all__ = ["import_service_modules", "packages_or_default"]


def packages_or_default(packages: str | Iterable[str] | None) -> tuple[str, ...]:
    if packages is None:
        return settings().packages
    return (packages,) if isinstance(packages, str) else tuple(packages)


def import_service_modules(packages: str | Iterable[str] | None, leaf: str) -> list[ModuleType]:
    """Import `<package>.<name>.<leaf>` wherever it exists, in name order; a missing package finds nothing."""
    found: list[ModuleType] = []
    for package in packages_or_default(packages):
        try:
            root = importlib.import_module(package)
        except ModuleNotFoundError as exc:
            if exc.name != package:
                raise  # the package exists but one of its own imports is broken: surface that
            continue
        for info in sorted(pkgutil.iter_modules(getattr(root, "__path__", [])), key=lambda i: i.name):
            name = f"{package}.{info.name}.{leaf}"
            if info.ispkg and importlib.util.find_spec(name) is not None:
                found.append(importlib.import_module(name))
    return found
