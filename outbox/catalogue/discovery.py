"""Import a project's event modules, so the default registry holds every schema before it is exported."""

from __future__ import annotations

from collections.abc import Iterable

from outbox.discovery import import_service_modules

__all__ = ["discover_event_modules"]


def discover_event_modules(packages: str | Iterable[str] | None = None) -> list[str]:
    """Import every ``<package>.<name>.events`` module; packages default to the project's ([tool.outbox])."""
    return [module.__name__ for module in import_service_modules(packages, "events")]
