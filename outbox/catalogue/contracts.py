"""Who writes and who reads each event type, from the project's code: the catalogue's producers and consumers.

A producer is a service (`<package>.<name>`) whose code outside its events module builds the type's newest
class: calls it, or passes it to a builder (``from_row``, msgspec's ``convert``). Services build only the
newest version (tests/unit/test_event_catalogue_is_current.py), and add_event takes a built event, so this
is the set of services that write the type to their outbox. A consumer is a group (outbox.groups) with a
handler for the type.
"""

from __future__ import annotations

import ast
import importlib.util
from collections.abc import Iterable, Iterator
from pathlib import Path

from outbox.discovery import packages_or_default
from outbox.events import EventRegistry, default_registry
from outbox.groups import consumer_modules

__all__ = ["BUILDERS", "built", "consumers", "parse", "producers", "service_sources"]

# Helpers that build an event Struct from a row or a dict: an event class passed to one of them is built.
BUILDERS = frozenset({"from_row", "convert"})


def service_sources(packages: str | Iterable[str] | None = None) -> list[tuple[str, Path]]:
    """(service, file) for every module of every `<package>.<name>` but its events module and migrations."""
    found = []
    for package in packages_or_default(packages):
        spec = importlib.util.find_spec(package)
        folders = (spec.submodule_search_locations or []) if spec is not None else []
        for folder in folders:
            for path in sorted(Path(folder).glob("*/**/*.py")):
                service, *inside = path.relative_to(folder).parts
                if inside != ["events.py"] and "migrations" not in inside:
                    found.append((service, path))
    return found


def built(tree: ast.Module) -> Iterator[tuple[int, str]]:
    """(line, name) of every name a module calls, or passes to a builder."""
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        func = node.func.id if isinstance(node.func, ast.Name) else getattr(node.func, "attr", None)
        if func is not None:
            yield node.lineno, func
        if func in BUILDERS:
            for arg in (*node.args, *(keyword.value for keyword in node.keywords)):
                if isinstance(arg, ast.Name):
                    yield node.lineno, arg.id


def parse(path: Path) -> ast.Module:
    return ast.parse(path.read_text(encoding="utf-8"), str(path))


def producers(
    registry: EventRegistry = default_registry, packages: str | Iterable[str] | None = None
) -> dict[str, list[str]]:
    """Per event type, the services whose code builds its newest class (sorted)."""
    newest = {event_type: registry.latest(event_type).__name__ for event_type, _, _ in registry}
    services: dict[str, set[str]] = {event_type: set() for event_type in newest}
    for service, path in service_sources(packages):
        names = {name for _, name in built(parse(path))}
        for event_type, class_name in newest.items():
            if class_name in names:
                services[event_type].add(service)
    return {event_type: sorted(found) for event_type, found in services.items()}


def consumers(
    registry: EventRegistry = default_registry, packages: str | Iterable[str] | None = None
) -> dict[str, list[str]]:
    """Per event type, the consumer groups that handle it (sorted)."""
    handled: dict[str, set[str]] = {event_type: set() for event_type, _, _ in registry}
    for module in consumer_modules(packages):
        group = module.group
        for event_type in group.event_types:
            handled.setdefault(event_type, set()).add(group.name)
    return {event_type: sorted(groups) for event_type, groups in handled.items()}
