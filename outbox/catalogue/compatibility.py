"""Compatibility rules between the committed catalogue and the code's: published versions are permanent,
and a new version must stay readable by consumers of the previous one."""

from __future__ import annotations

import itertools
from typing import Any

from outbox.catalogue.schema import Schema, describe, split, struct_within, versions, wire_shape

VERSIONING_RULES = """\
## Versioning rules

Published event versions are permanent: a version in this catalogue may never change or disappear,
because messages of that version sit in Kafka and in consumers' dead-letter topics. To change a
payload, register a new schema version of the same event type, which must stay readable by consumers
of the previous version (they decode it with their newest class and ignore unknown fields): every
field required in the previous version must still exist with the same JSON type, no field may change
its type (a new enum value is a change of type: an older reader would refuse it), and fields added (or
made required) must have a default. No struct of an event may refuse unknown fields
(`forbid_unknown_fields`), or its readers could read no later version. An event type keeps its
aggregate and its key. A change that cannot meet these rules is a new event type with a new name.

What a consumer does with a version newer than the newest it knows (a producer deployed first): it
decodes it with that newest class, ignoring the fields it does not know and taking the defaults of
those that are missing. A record it cannot decode so (a rule broken) goes to its dead-letter topic, to
be redriven once the consumer knows the version; an older version it does not know is dead-lettered
too. A reader that ignores a new field must be safe doing so. When it is not (the field changes what
the event means: return.received v3's `settle_with` ignored refunds a return already paid back by hand),
the version declares `@event(..., min_reader_version=N)`: its outbox rows carry N, the connector sends it
as the record's `min_reader_version` header, and a consumer that knows no version of the type from N up
dead-letters the record ("needs a consumer that knows vN or later ... deploy the consumer") instead of
reading it as its newest; `just dlq redrive GROUP` applies it after that consumer's deploy. Declare it on
every version whose new field an older reader would misread; a record without the header is readable by
any reader. A consumer that knows the record's own version reads it whatever the header says.

[catalogue.json](catalogue.json) is the snapshot of every published schema: `python -m outbox.catalogue
check` compares the code's schemas with it and applies these rules (tests/unit/test_event_catalogue_is_current.py
runs it with the unit tests), and `write` refuses to rewrite a published version (`--force` only for a
version never published). Datetimes and times carry a format of their own (`datetime`, `naive-datetime`,
`time-of-day`) where msgspec writes a bare string, so that retyping one as text is a change.
"""


def _backward_problems(
    prev: Schema,
    prev_defs: dict[str, Schema],
    cur: Schema,
    cur_defs: dict[str, Schema],
    path: str = "",
    seen: frozenset[tuple[int, int]] = frozenset(),
) -> list[str]:
    """Reasons why a consumer of ``prev`` cannot read payloads of ``cur`` (nested structs included)."""
    if (id(prev), id(cur)) in seen:
        return []
    seen = seen | {(id(prev), id(cur))}
    prev_props: dict[str, Schema] = prev.get("properties", {})
    cur_props: dict[str, Schema] = cur.get("properties", {})
    prev_required = set(prev.get("required", []))
    cur_required = set(cur.get("required", []))
    problems: list[str] = []
    for field in prev_props:
        where = f"{path}{field}"
        if field not in cur_props:
            if field in prev_required:
                problems.append(f"required field '{where}' was removed")
            continue
        old_type = describe(prev_props[field], prev_defs, named=False)
        new_type = describe(cur_props[field], cur_defs, named=False)
        if old_type != new_type:
            problems.append(f"field '{where}' changed type from {old_type} to {new_type}")
            continue
        old_struct = struct_within(prev_props[field], prev_defs)
        new_struct = struct_within(cur_props[field], cur_defs)
        if old_struct and new_struct:
            nested_path = f"{where}{old_struct[1]}."
            problems += _backward_problems(old_struct[0], prev_defs, new_struct[0], cur_defs, nested_path, seen)
    for field in cur_props:
        if field in cur_required and field not in prev_required:
            state = "became required" if field in prev_props else "was added as required"
            problems.append(f"field '{path}{field}' {state}; it needs a default")
    return problems


def _closed_structs(label: str, schema: Schema) -> list[str]:
    """A struct with forbid_unknown_fields (additionalProperties false) in a version: its readers would
    dead-letter every later version that adds a field, the one change the rules allow."""
    # msgspec puts every struct, the payload's own too, in $defs.
    closed = [name for name, sub in sorted(schema.get("$defs", {}).items()) if sub.get("additionalProperties") is False]
    return [
        f"{label} refuses unknown fields ({name}: forbid_unknown_fields); "
        "its readers could not read a later version that adds one"
        for name in closed
    ]


def check_compatibility(committed: dict[str, Any], current: dict[str, Any]) -> list[str]:
    """List human-readable rule violations between the committed and current catalogues."""
    problems: list[str] = []
    committed_events: dict[str, Any] = committed.get("events", {})
    current_events: dict[str, Any] = current.get("events", {})

    for event_type in sorted(committed_events):
        old_versions = versions(committed, event_type)
        new_versions = versions(current, event_type)
        old_aggregate = committed_events[event_type].get("aggregate")
        new_aggregate = current_events.get(event_type, {}).get("aggregate", old_aggregate)
        if old_aggregate != new_aggregate:
            problems.append(
                f"{event_type} moved from aggregate {old_aggregate!r} to {new_aggregate!r}; "
                "published events keep their aggregate"
            )
        old_key = committed_events[event_type].get("key")
        new_key = current_events.get(event_type, {}).get("key", old_key)
        if old_key is not None and old_key != new_key:
            problems.append(
                f"{event_type} moved its key from field {old_key!r} to {new_key!r}; "
                "published events keep their key (it decides the partition, so the order)"
            )
        for version in sorted(old_versions):
            if version not in new_versions:
                problems.append(f"{event_type} v{version} was removed; published versions are permanent")
                continue
            old_shape = wire_shape(old_versions[version], old_versions[version].get("$defs", {}))
            new_shape = wire_shape(new_versions[version], new_versions[version].get("$defs", {}))
            if old_shape != new_shape:
                problems.append(f"{event_type} v{version} changed without a version bump")

    for event_type in sorted(current_events):
        by_version = versions(current, event_type)
        for version, schema in sorted(by_version.items()):
            problems += _closed_structs(f"{event_type} v{version}", schema)
        for older, newer in itertools.pairwise(sorted(by_version)):
            prev, prev_defs = split(by_version[older])
            cur, cur_defs = split(by_version[newer])
            for reason in _backward_problems(prev, prev_defs, cur, cur_defs):
                problems.append(f"{event_type} v{newer} is not backward compatible with v{older}: {reason}")
    return problems
