"""The committed event catalogue (docs/events) matches the registered schemas and breaks no rule, and it is
the whole contract: every event a group handles is in it, on a topic the group reads; every event type in
it is built by a service or handled by a group; every event Struct of a service is a registered schema;
and a service builds only the newest version of a type (older ones stay to decode what Kafka still holds).
"""

from __future__ import annotations

import ast
import inspect
import json
from pathlib import Path
from types import ModuleType

import pytest

from outbox import catalogue, groups
from outbox.config import settings
from outbox.discovery import import_service_modules
from outbox.events import Event, default_registry

pytestmark = pytest.mark.unit

APPS = Path(__file__).resolve().parents[2] / "apps"
# Helpers that build an event Struct from a row or a dict (apps/common/responses.py from_row, msgspec's
# convert): an event class passed to one of them, or called, is an event built.
BUILDERS = {"from_row", "convert"}


def committed_events() -> dict[str, dict[str, object]]:
    config = settings()
    assert config.catalogue_json is not None
    events: dict[str, dict[str, object]] = json.loads((config.root / config.catalogue_json).read_text())["events"]
    return events


def event_modules() -> list[ModuleType]:
    return import_service_modules("apps", "events")


def registered() -> dict[tuple[str, int], type[Event]]:
    event_modules()  # registers every service's schemas
    return {(event_type, version): cls for event_type, version, cls in default_registry}


def code_outside_events_modules() -> list[tuple[Path, ast.Module]]:
    return [
        (path, ast.parse(path.read_text(), str(path)))
        for path in sorted(APPS.rglob("*.py"))
        if path.name != "events.py" and "migrations" not in path.parts
    ]


def test_committed_catalogue_matches_the_code_and_its_versioning_rules() -> None:
    # Fails when a schema changed without a version bump, a version was removed, a new version is not
    # readable by the previous one's consumers, or someone forgot `python -m outbox.catalogue write`.
    assert catalogue.main(["check"]) == 0


def test_every_event_a_group_handles_is_catalogued_on_a_topic_the_group_reads() -> None:
    events = committed_events()
    for module in groups.consumer_modules():
        group = module.group
        for event_type in sorted(group.event_types):
            assert event_type in events, f"{group.name} handles {event_type}, which the catalogue does not document"
            assert events[event_type]["topic"] in group.topics, (group.name, event_type, group.topics)


def test_every_catalogued_event_type_is_built_by_a_service_or_handled_by_a_group() -> None:
    # A type nobody writes and nobody reads is a contract for nothing; "built" is its newest class named
    # by a service's code outside the events modules (called, passed to from_row/convert, or to add_event).
    handled = {event_type for module in groups.consumer_modules() for event_type in module.group.event_types}
    schemas = registered()
    newest = {event_type: default_registry.latest(event_type) for event_type, _ in schemas}
    named = {
        node.id for _, tree in code_outside_events_modules() for node in ast.walk(tree) if isinstance(node, ast.Name)
    }
    unused = sorted(
        event_type
        for event_type in committed_events()
        if event_type not in handled and (event_type not in newest or newest[event_type].__name__ not in named)
    )
    assert unused == []


def test_every_event_struct_of_a_service_is_a_registered_schema() -> None:
    # An Event subclass without @event has no type, version or catalogue entry (add_event could not write
    # it); only private bases shared by several registered events (named _...) may go without.
    loose = [
        f"{module.__name__}.{name}"
        for module in event_modules()
        for name, cls in vars(module).items()
        if inspect.isclass(cls)
        and issubclass(cls, Event)
        and cls.__module__ == module.__name__
        and "event_type" not in cls.__dict__
        and not name.startswith("_")
    ]
    assert loose == []


def test_services_build_only_the_newest_version_of_an_event() -> None:
    schemas = registered()
    older = {
        cls.__name__: f"{event_type} v{version}"
        for (event_type, version), cls in schemas.items()
        if version < default_registry.latest(event_type).schema_version
    }
    built = []
    for path, tree in code_outside_events_modules():
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call):
                continue
            func = node.func.id if isinstance(node.func, ast.Name) else getattr(node.func, "attr", None)
            candidates = [node.func] if func in older else []
            if func in BUILDERS:
                candidates += [*node.args, *(keyword.value for keyword in node.keywords)]
            built += [
                f"{path.relative_to(APPS.parent)}:{node.lineno} builds {older[arg.id]}"
                for arg in candidates
                if isinstance(arg, ast.Name) and arg.id in older
            ]
    assert built == []
