"""Event schemas as JSON Schema: the catalogue's canonical form, and the helpers that read it.

A catalogue is ``{"events": {type: {"aggregate": ..., "topic": ..., "key": ..., "producers": [...],
"consumers": [...], "versions": {"1": schema, ...}}}}`` (the topic as the project routes it: [tool.outbox]
topic_prefix and streams, outbox.routing; the key as the payload field that holds it); schemas are
canonicalised (keys sorted, struct properties in declaration order) so the committed file is stable.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import msgspec

from outbox.config import settings
from outbox.events import EventRegistry, default_registry
from outbox.routing import stream_of

Schema = dict[str, Any]

# Keywords that document a schema without changing what is accepted on the wire; a docstring edit
# or a class rename must not count as a schema change.
_ANNOTATION_KEYWORDS = frozenset({"title", "description", "examples", "$comment"})


def build_catalogue(
    registry: EventRegistry = default_registry,
    *,
    producers: Mapping[str, list[str]] | None = None,
    consumers: Mapping[str, list[str]] | None = None,
) -> dict[str, Any]:
    """Return every registered event version's JSON Schema, keyed by event type and version, with each type's
    aggregate, topic, key field, the versions that need a reader of their own (min_reader_versions) and, when
    given (outbox.catalogue.contracts), its producers and consumers."""
    events: dict[str, Any] = {}
    # The project's own routing, not the environment's overrides: the committed file says what a deploy does.
    project = settings()
    for event_type, version, cls in registry:
        entry = events.get(event_type)
        if entry is None:
            entry = events[event_type] = {
                "aggregate": cls.aggregate_type,
                "topic": f"{project.topic_prefix}.{stream_of(event_type, project.streams)}",
                "key": registry.key_of(event_type),
            }
            if producers is not None:
                entry["producers"] = producers.get(event_type, [])
            if consumers is not None:
                entry["consumers"] = consumers.get(event_type, [])
            entry["versions"] = {}
        # A JSON round trip makes the in-memory schema equal to the committed file (tuples become lists).
        schema = json.loads(json.dumps(msgspec.json.schema(cls)))
        _name_bare_strings(msgspec.inspect.type_info(cls), schema, schema.get("$defs", {}), set())
        entry["versions"][str(version)] = _canonical(schema)
        if cls.min_reader_version > 1:
            # Only where a version says so: the oldest version a consumer must know to read it (its records'
            # min_reader_version header); every other version is readable by any reader of the type.
            entry.setdefault("min_reader_versions", {})[str(version)] = cls.min_reader_version
    # The registry iterates sorted by type then numeric version, so "10" correctly follows "9".
    return {"events": events}


# msgspec writes a datetime or time that may be naive as a bare {"type": "string"}, the schema of a str: a
# published `created_at: datetime` retyped to `str` (or back) changed no snapshot and passed every check.
# These formats (ours; JSON Schema tools ignore formats they do not know) keep each one distinct. An aware-only
# datetime or time keeps msgspec's own "date-time"/"time", a naive-only time its "partial-time".
_BARE_FORMATS = {
    (msgspec.inspect.DateTimeType, None): "datetime",
    (msgspec.inspect.DateTimeType, False): "naive-datetime",
    (msgspec.inspect.TimeType, None): "time-of-day",
}
_TIMES = (msgspec.inspect.DateTimeType, msgspec.inspect.TimeType)
# Containers whose schema is {"type": "array", "items": ...}.
_ARRAYS = (
    msgspec.inspect.ListType,
    msgspec.inspect.SetType,
    msgspec.inspect.FrozenSetType,
    msgspec.inspect.VarTupleType,
)


def _name_bare_strings(info: msgspec.inspect.Type, node: Schema, defs: dict[str, Schema], seen: set[str]) -> None:
    """Give each datetime or time that msgspec left as a bare string its format (_BARE_FORMATS), in place:
    walks the type and its schema side by side, through structs, containers and unions."""
    name = ref_name(node)
    if name is not None:
        if name in seen:
            return
        seen.add(name)
        node = defs.get(name, {})
    if isinstance(info, _TIMES):
        format_name = _BARE_FORMATS.get((type(info), info.tz))
        if format_name is not None and "format" not in node:
            node["format"] = format_name
    elif isinstance(info, msgspec.inspect.StructType):
        properties = node.get("properties", {})
        for field in info.fields:
            if field.encode_name in properties:
                _name_bare_strings(field.type, properties[field.encode_name], defs, seen)
    elif isinstance(info, _ARRAYS):
        _name_bare_strings(info.item_type, node.get("items", {}), defs, seen)
    elif isinstance(info, msgspec.inspect.TupleType):
        for item_type, item in zip(info.item_types, node.get("prefixItems", []), strict=False):
            _name_bare_strings(item_type, item, defs, seen)
    elif isinstance(info, msgspec.inspect.DictType):
        values = node.get("additionalProperties")
        if isinstance(values, dict):
            _name_bare_strings(info.value_type, values, defs, seen)
    elif isinstance(info, msgspec.inspect.UnionType):
        for member in info.types:
            branch = _union_branch(member, node.get("anyOf", []), defs)
            if branch is not None:
                _name_bare_strings(member, branch, defs, seen)


def _union_branch(member: msgspec.inspect.Type, branches: list[Schema], defs: dict[str, Schema]) -> Schema | None:
    """The anyOf branch msgspec wrote for one member of a union: a union holds at most one str-like, one
    array-like and one dict-like type, so the kind finds it; a struct is found by its name."""
    for branch in branches:
        if isinstance(member, _TIMES):
            found = branch.get("type") == "string" and "format" not in branch
        elif isinstance(member, msgspec.inspect.StructType):
            found = deref(branch, defs).get("title") == member.cls.__name__
        elif isinstance(member, msgspec.inspect.DictType):
            found = branch.get("type") == "object" and ref_name(branch) is None
        else:
            found = isinstance(member, (*_ARRAYS, msgspec.inspect.TupleType)) and branch.get("type") == "array"
        if found:
            return branch
    return None


def dump_catalogue(catalogue: dict[str, Any]) -> str:
    """Serialise a catalogue exactly as it is committed (indent 2, trailing newline)."""
    # No sort_keys: build_catalogue already orders keys, except that versions are numeric and struct
    # properties keep declaration order, which the docs page shows.
    return json.dumps(catalogue, indent=2, ensure_ascii=False) + "\n"


def _canonical(schema: Any, *, is_name_map: bool = False) -> Any:
    """Sort mapping keys recursively, keeping struct properties in declaration order."""
    if isinstance(schema, dict):
        if is_name_map:
            return {name: _canonical(sub) for name, sub in schema.items()}
        return {key: _canonical(schema[key], is_name_map=key == "properties") for key in sorted(schema)}
    if isinstance(schema, list):
        return [_canonical(item) for item in schema]
    return schema


def split(schema: Schema) -> tuple[Schema, dict[str, Schema]]:
    """Return (root object schema, $defs) of one version's self-contained schema."""
    defs: dict[str, Schema] = schema.get("$defs", {})
    return deref(schema, defs), defs


def ref_name(schema: Schema) -> str | None:
    ref = schema.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/$defs/"):
        return ref.removeprefix("#/$defs/")
    return None


def deref(schema: Schema, defs: dict[str, Schema]) -> Schema:
    name = ref_name(schema)
    return defs.get(name, {}) if name is not None else schema


def wire_shape(schema: Any, defs: dict[str, Schema], stack: frozenset[str] = frozenset()) -> Any:
    """Inline local $refs and drop annotations, leaving only what decoding depends on."""
    if isinstance(schema, list):
        return [wire_shape(item, defs, stack) for item in schema]
    if not isinstance(schema, dict):
        return schema
    name = ref_name(schema)
    if name is not None:
        if name in stack:  # recursive type: the first expansion already describes it
            return {"$ref": "(recursive)"}
        return wire_shape(defs.get(name, {}), defs, stack | {name})
    shape: Schema = {}
    for key, value in schema.items():
        if key in _ANNOTATION_KEYWORDS or key == "$defs":
            continue
        if key == "properties":
            shape[key] = {field: wire_shape(sub, defs, stack) for field, sub in value.items()}
        elif key == "required":
            shape[key] = sorted(value)
        elif key in {"default", "enum", "const"}:
            shape[key] = value  # literal values, not sub-schemas
        else:
            shape[key] = wire_shape(value, defs, stack)
    return shape


def describe(schema: Schema, defs: dict[str, Schema], *, named: bool) -> str:
    """Short type notation, e.g. ``string(uuid)`` or ``array<Line>``; unnamed structs are ``object``."""
    name = ref_name(schema)
    if name is not None:
        return name if named else describe(defs.get(name, {}), defs, named=False)
    for union_key in ("anyOf", "oneOf"):
        if union_key in schema:
            parts = [describe(sub, defs, named=named) for sub in schema[union_key]]
            return " | ".join(parts if named else sorted(set(parts)))
    if "enum" in schema:
        values = [json.dumps(value) for value in schema["enum"]]
        return f"enum({', '.join(values if named else sorted(values))})"
    if "const" in schema:
        return f"const({json.dumps(schema['const'])})"
    json_type = schema.get("type")
    if isinstance(json_type, list):
        return " | ".join(str(t) for t in json_type)
    if json_type == "array":
        if "prefixItems" in schema:
            return f"tuple[{', '.join(describe(s, defs, named=named) for s in schema['prefixItems'])}]"
        return f"array<{describe(schema.get('items', {}), defs, named=named)}>"
    if json_type == "object":
        value_schema = schema.get("additionalProperties")
        if "properties" not in schema and isinstance(value_schema, dict):
            return f"object<{describe(value_schema, defs, named=named)}>"
        return "object"
    if json_type == "string" and "format" in schema:
        return f"string({schema['format']})"
    return str(json_type) if json_type is not None else "any"


def struct_within(schema: Schema, defs: dict[str, Schema]) -> tuple[Schema, str] | None:
    """Find the struct inside a field type (directly, as array items, or optional), with a path suffix."""
    schema = deref(schema, defs)
    if "properties" in schema:
        return schema, ""
    if schema.get("type") == "array" and isinstance(schema.get("items"), dict):
        found = struct_within(schema["items"], defs)
        return (found[0], "[]" + found[1]) if found else None
    members = [m for m in schema.get("anyOf", []) if deref(m, defs).get("type") != "null"]
    if len(members) == 1 and len(schema["anyOf"]) == 2:
        return struct_within(members[0], defs)
    return None


def versions(catalogue: dict[str, Any], event_type: str) -> dict[int, Schema]:
    raw = catalogue.get("events", {}).get(event_type, {}).get("versions", {})
    return {int(version): schema for version, schema in raw.items()}
