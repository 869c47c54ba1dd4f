"""The catalogue as a markdown page: one table row per event version, then the versioning rules."""

from __future__ import annotations

import json
from typing import Any

from outbox.catalogue.compatibility import VERSIONING_RULES
from outbox.catalogue.schema import Schema, describe, ref_name, split, versions

WRITE_HINT = "run `python -m outbox.catalogue write`"
ROUTING_NOTE = (
    "An event's topic is its aggregate's unless its type starts with one of the project's streams\n"
    "([tool.outbox] streams, outbox/routing.py). Moving a published type to a stream: see\n"
    "[Moving event types to a stream](routing.md)."
)


def _cell(text: str) -> str:
    # GFM splits table cells on "|" even inside code spans unless it is escaped.
    return text.replace("|", "\\|")


def _fields(obj: Schema, defs: dict[str, Schema]) -> list[str]:
    required = set(obj.get("required", []))
    lines = []
    for field, sub in obj.get("properties", {}).items():
        text = f"`{field}`: `{describe(sub, defs, named=True)}`"
        if field in required:
            text += " **required**"
        elif "default" in sub:
            text += f", default `{json.dumps(sub['default'])}`"
        lines.append(text)
    return lines


def _names(names: list[str]) -> str:
    return ", ".join(f"`{name}`" for name in names)


def _meaning_cell(schema: Schema) -> str:
    """The version's Struct docstring (JSON Schema ``description``): what the event means, and for a new
    version what changed. Without it a v2 that seals v1's fields reads exactly like v1 on this page."""
    root, _ = split(schema)
    text = str(root.get("description", "")).replace("``", "`")
    paragraphs = [" ".join(part.split()) for part in text.split("\n\n")]
    return _cell("<br>".join(p for p in paragraphs if p))


def _fields_cell(schema: Schema) -> str:
    root, defs = split(schema)
    lines = _fields(root, defs)
    root_name = ref_name(schema)
    for name in sorted(defs):
        if name == root_name:
            continue
        nested = defs[name]
        if "properties" in nested:
            lines.append(f"*{name}*: " + ", ".join(_fields(nested, defs)))
        else:
            lines.append(f"*{name}*: `{describe(nested, defs, named=False)}`")
    return _cell("<br>".join(lines))


def render_markdown(catalogue: dict[str, Any]) -> str:
    """Render the catalogue as a markdown page: one table row per event version, then the rules."""
    lines = [
        "# Event catalogue",
        "",
        f"Generated from the registered event schemas; do not edit by hand, {WRITE_HINT}.",
        "The JSON Schemas live in [catalogue.json](catalogue.json).",
        "",
        "| Event | Schema version | Aggregate | Topic | Key | Producer | Consumers | Meaning | Fields |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    events: dict[str, Any] = catalogue.get("events", {})
    for event_type in sorted(events):
        entry = events[event_type]
        about = " | ".join(
            [
                f"`{entry.get('aggregate', '')}`",
                f"`{entry.get('topic', '')}`",
                f"`{entry['key']}`" if entry.get("key") else "",
                _names(entry.get("producers", [])),
                _names(entry.get("consumers", [])),
            ]
        )
        readers = entry.get("min_reader_versions", {})
        for version, schema in sorted(versions(catalogue, event_type).items()):
            meaning, fields = _meaning_cell(schema), _fields_cell(schema)
            needs = f"<br>readers of v{readers[str(version)]}+" if str(version) in readers else ""
            lines.append(f"| `{event_type}` | {version}{needs} | {about} | {meaning} | {fields} |")
    if not events:
        lines.append("| *(no events registered)* | | | | | | | | |")
    lines += [
        "",
        ROUTING_NOTE,
        "",
        "Key: the payload field that holds the record's Kafka key (the aggregate id the producer writes),",
        "so one key's events are in one partition, in order. Producer: the service whose code builds the",
        "type's newest version and writes it to its outbox. Consumers: this project's consumer groups with a",
        'handler for the type (both read from the code: outbox/catalogue/contracts.py). "readers of vN+"',
        "under a schema version: its records carry `min_reader_version` N, and a consumer that knows no",
        "version from N up dead-letters them instead of reading them as an older version (Versioning rules).",
        "",
        "Fields marked **required** have no default. `string(decimal)` is an exact decimal (money)",
        "carried as a JSON string; `string(uuid)` is a UUID; `string(datetime)` an ISO 8601 date and time.",
        "",
        "Headers: every record carries `id` (the event id: the consumers' inbox key), `event_type`,",
        "`event_version` (per aggregate), `schema_version`, `aggregate_type` and `min_reader_version`, and",
        "`correlation_id`: a UUID, the X-Request-ID of the request that started the work, or the",
        "`correlation_id` of the event whose handler wrote this one, so one order's events share its placing",
        "request's id (outbox/correlation.py); without a value for what a sweeper or a job starts, and for",
        "events written before session 34. `just logs | grep <id>` follows it (README, Reliability).",
        "",
        "",
    ]
    return "\n".join(lines) + VERSIONING_RULES
