"""The committed event catalogue (docs/events) matches the registered schemas and breaks no rule, and it is
the whole contract: every event a group handles is in it, on a topic the group reads, decoded with its
versions; every event type in it is built by exactly one service and names the field that holds its key;
its consumers are the groups that handle it; every event Struct of a service is a registered schema, and no
service defines one outside its events module; a service builds only the newest version of a type (older
ones stay to decode what Kafka still holds).
"""

from __future__ import annotations

import ast
import inspect
import json
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from outbox import catalogue, groups
from outbox.catalogue import contracts
from outbox.config import settings
from outbox.discovery import import_service_modules
from outbox.events import Event, default_registry

pytestmark = pytest.mark.unit

APPS = Path(__file__).resolve().parents[2] / "apps"


def committed_events() -> dict[str, dict[str, Any]]:
    config = settings()
    assert config.catalogue_json is not None
    events: dict[str, dict[str, Any]] = json.loads((config.root / config.catalogue_json).read_text())["events"]
    return events


def event_modules() -> list[ModuleType]:
    return import_service_modules("apps", "events")


def registered() -> dict[tuple[str, int], type[Event]]:
    event_modules()  # registers every service's schemas
    return {(event_type, version): cls for event_type, version, cls in default_registry}


def code_outside_events_modules() -> list[tuple[Path, ast.Module]]:
    return [(path, contracts.parse(path)) for _, path in contracts.service_sources("apps")]


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
    built = [
        f"{path.relative_to(APPS.parent)}:{line} builds {older[name]}"
        for path, tree in code_outside_events_modules()
        for line, name in contracts.built(tree)
        if name in older
    ]
    assert built == []


def test_every_catalogued_event_type_is_written_by_exactly_one_service() -> None:
    # Its producer's database is the one outbox (and connector) it leaves by; two writers would be two
    # sequences of event_version for one key. A type no service writes is read from nowhere.
    producers = {event_type: entry.get("producers") for event_type, entry in committed_events().items()}

    assert {event_type: found for event_type, found in producers.items() if not found or len(found) != 1} == {}
    assert producers == {event_type: found for event_type, found in contracts.producers().items()}


def test_the_catalogued_consumers_of_each_type_are_the_groups_that_handle_it() -> None:
    handled: dict[str, set[str]] = {}
    for module in groups.consumer_modules():
        for event_type in module.group.event_types:
            handled.setdefault(event_type, set()).add(module.group.name)

    catalogued = {event_type: entry.get("consumers") for event_type, entry in committed_events().items()}

    assert catalogued == {event_type: sorted(handled.get(event_type, ())) for event_type in committed_events()}


def test_every_group_decodes_with_the_catalogues_versions() -> None:
    # A group with a registry of its own could decode a version the catalogue does not hold, or miss one.
    own = [module.group.name for module in groups.consumer_modules() if module.group.registry is not default_registry]
    assert own == []


def test_every_catalogued_type_names_a_key_field_every_version_requires_as_a_uuid() -> None:
    # The key is the aggregate id add_event is given; the catalogue says which field carries it, so a reader
    # knows what one partition orders (tests/integration/test_event_keys.py checks the written rows).
    wrong = {}
    for event_type, entry in committed_events().items():
        key = entry.get("key")
        for version, schema in entry["versions"].items():
            root = schema["$defs"][schema["$ref"].removeprefix("#/$defs/")]
            if key not in root["required"] or root["properties"][key] != {"format": "uuid", "type": "string"}:
                wrong[f"{event_type} v{version}"] = key
    assert wrong == {}


def test_no_service_defines_an_event_outside_its_events_module() -> None:
    # Only events modules are imported to register schemas (discover_event_modules): an Event subclass
    # elsewhere would be missing from the catalogue, or be a second schema of a type.
    elsewhere = [
        f"{path.relative_to(APPS.parent)}:{node.lineno} {node.name}"
        for path, tree in code_outside_events_modules()
        for node in ast.walk(tree)
        if isinstance(node, ast.ClassDef)
        and any(isinstance(base, ast.Name) and base.id == "Event" for base in node.bases)
    ]
    assert elsewhere == []
