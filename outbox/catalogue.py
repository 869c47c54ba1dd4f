"""Event catalogue: every registered schema as JSON Schema, its docs page, and compatibility rules."""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import itertools
import json
import pkgutil
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import msgspec

from outbox.events import EventRegistry, default_registry

if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = [
    "build_catalogue",
    "check_compatibility",
    "discover_event_modules",
    "dump_catalogue",
    "main",
    "render_markdown",
]

Schema = dict[str, Any]

CATALOGUE_JSON = Path("docs/events/catalogue.json")
CATALOGUE_MD = Path("docs/events/README.md")
_REPO_ROOT = Path(__file__).resolve().parent.parent
_WRITE_HINT = "run `python -m outbox.catalogue write`"

# Keywords that document a schema without changing what is accepted on the wire; a docstring edit
# or a class rename must not count as a schema change.
_ANNOTATION_KEYWORDS = frozenset({"title", "description", "examples", "$comment"})

VERSIONING_RULES = """\
## Versioning rules

Published event versions are permanent: a version in this catalogue may never change or disappear,
because messages of that version sit in Kafka and in consumers' dead-letter topics. To change a
payload, register a new schema version of the same event type, which must stay readable by consumers
of the previous version (they decode it with their newest class and ignore unknown fields): every
field required in the previous version must still exist with the same JSON type, no field may change
its type, and fields added (or made required) must have a default. A change that cannot meet these
rules is a new event type with a new name. `python -m outbox.catalogue check` enforces this in CI.
"""


def build_catalogue(registry: EventRegistry = default_registry) -> dict[str, Any]:
    """Return every registered event version's JSON Schema, keyed by event type and version."""
    events: dict[str, Any] = {}
    for event_type, version, cls in registry:
        entry = events.setdefault(event_type, {"aggregate": cls.aggregate_type, "versions": {}})
        # A JSON round trip makes the in-memory schema equal to the committed file (tuples become lists).
        entry["versions"][str(version)] = _canonical(json.loads(json.dumps(msgspec.json.schema(cls))))
    # The registry iterates sorted by type then numeric version, so "10" correctly follows "9".
    return {"events": events}


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


# --- JSON-schema helpers -------------------------------------------------------------------------


def _split(schema: Schema) -> tuple[Schema, dict[str, Schema]]:
    """Return (root object schema, $defs) of one version's self-contained schema."""
    defs: dict[str, Schema] = schema.get("$defs", {})
    return _deref(schema, defs), defs


def _ref_name(schema: Schema) -> str | None:
    ref = schema.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/$defs/"):
        return ref.removeprefix("#/$defs/")
    return None


def _deref(schema: Schema, defs: dict[str, Schema]) -> Schema:
    name = _ref_name(schema)
    return defs.get(name, {}) if name is not None else schema


def _wire_shape(schema: Any, defs: dict[str, Schema], stack: frozenset[str] = frozenset()) -> Any:
    """Inline local $refs and drop annotations, leaving only what decoding depends on."""
    if isinstance(schema, list):
        return [_wire_shape(item, defs, stack) for item in schema]
    if not isinstance(schema, dict):
        return schema
    name = _ref_name(schema)
    if name is not None:
        if name in stack:  # recursive type: the first expansion already describes it
            return {"$ref": "(recursive)"}
        return _wire_shape(defs.get(name, {}), defs, stack | {name})
    shape: Schema = {}
    for key, value in schema.items():
        if key in _ANNOTATION_KEYWORDS or key == "$defs":
            continue
        if key == "properties":
            shape[key] = {field: _wire_shape(sub, defs, stack) for field, sub in value.items()}
        elif key == "required":
            shape[key] = sorted(value)
        elif key in {"default", "enum", "const"}:
            shape[key] = value  # literal values, not sub-schemas
        else:
            shape[key] = _wire_shape(value, defs, stack)
    return shape


def _describe(schema: Schema, defs: dict[str, Schema], *, named: bool) -> str:
    """Short type notation, e.g. ``string(uuid)`` or ``array<Line>``; unnamed structs are ``object``."""
    name = _ref_name(schema)
    if name is not None:
        return name if named else _describe(defs.get(name, {}), defs, named=False)
    for union_key in ("anyOf", "oneOf"):
        if union_key in schema:
            parts = [_describe(sub, defs, named=named) for sub in schema[union_key]]
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
            return f"tuple[{', '.join(_describe(s, defs, named=named) for s in schema['prefixItems'])}]"
        return f"array<{_describe(schema.get('items', {}), defs, named=named)}>"
    if json_type == "object":
        value_schema = schema.get("additionalProperties")
        if "properties" not in schema and isinstance(value_schema, dict):
            return f"object<{_describe(value_schema, defs, named=named)}>"
        return "object"
    if json_type == "string" and "format" in schema:
        return f"string({schema['format']})"
    return str(json_type) if json_type is not None else "any"


def _struct_within(schema: Schema, defs: dict[str, Schema]) -> tuple[Schema, str] | None:
    """Find the struct inside a field type (directly, as array items, or optional), with a path suffix."""
    schema = _deref(schema, defs)
    if "properties" in schema:
        return schema, ""
    if schema.get("type") == "array" and isinstance(schema.get("items"), dict):
        found = _struct_within(schema["items"], defs)
        return (found[0], "[]" + found[1]) if found else None
    members = [m for m in schema.get("anyOf", []) if _deref(m, defs).get("type") != "null"]
    if len(members) == 1 and len(schema["anyOf"]) == 2:
        return _struct_within(members[0], defs)
    return None


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
        old_type = _describe(prev_props[field], prev_defs, named=False)
        new_type = _describe(cur_props[field], cur_defs, named=False)
        if old_type != new_type:
            problems.append(f"field '{where}' changed type from {old_type} to {new_type}")
            continue
        old_struct = _struct_within(prev_props[field], prev_defs)
        new_struct = _struct_within(cur_props[field], cur_defs)
        if old_struct and new_struct:
            nested_path = f"{where}{old_struct[1]}."
            problems += _backward_problems(old_struct[0], prev_defs, new_struct[0], cur_defs, nested_path, seen)
    for field in cur_props:
        if field in cur_required and field not in prev_required:
            state = "became required" if field in prev_props else "was added as required"
            problems.append(f"field '{path}{field}' {state}; it needs a default")
    return problems


# --- compatibility -------------------------------------------------------------------------------


def _versions(catalogue: dict[str, Any], event_type: str) -> dict[int, Schema]:
    raw = catalogue.get("events", {}).get(event_type, {}).get("versions", {})
    return {int(version): schema for version, schema in raw.items()}


def check_compatibility(committed: dict[str, Any], current: dict[str, Any]) -> list[str]:
    """List human-readable rule violations between the committed and current catalogues."""
    problems: list[str] = []
    committed_events: dict[str, Any] = committed.get("events", {})
    current_events: dict[str, Any] = current.get("events", {})

    for event_type in sorted(committed_events):
        old_versions = _versions(committed, event_type)
        new_versions = _versions(current, event_type)
        old_aggregate = committed_events[event_type].get("aggregate")
        new_aggregate = current_events.get(event_type, {}).get("aggregate", old_aggregate)
        if old_aggregate != new_aggregate:
            problems.append(
                f"{event_type} moved from aggregate {old_aggregate!r} to {new_aggregate!r}; "
                "published events keep their aggregate"
            )
        for version in sorted(old_versions):
            if version not in new_versions:
                problems.append(f"{event_type} v{version} was removed; published versions are permanent")
                continue
            old_shape = _wire_shape(old_versions[version], old_versions[version].get("$defs", {}))
            new_shape = _wire_shape(new_versions[version], new_versions[version].get("$defs", {}))
            if old_shape != new_shape:
                problems.append(f"{event_type} v{version} changed without a version bump")

    for event_type in sorted(current_events):
        versions = _versions(current, event_type)
        ordered = sorted(versions)
        for older, newer in itertools.pairwise(ordered):
            prev, prev_defs = _split(versions[older])
            cur, cur_defs = _split(versions[newer])
            for reason in _backward_problems(prev, prev_defs, cur, cur_defs):
                problems.append(f"{event_type} v{newer} is not backward compatible with v{older}: {reason}")
    return problems


# --- discovery -----------------------------------------------------------------------------------


def discover_event_modules(package: str = "apps") -> list[str]:
    """Import every ``<package>.<service>.events`` module so the default registry is complete."""
    try:
        root = importlib.import_module(package)
    except ModuleNotFoundError as exc:
        if exc.name != package:
            raise  # the package exists but one of its own imports is broken: surface that
        return []
    imported: list[str] = []
    for info in sorted(pkgutil.iter_modules(getattr(root, "__path__", [])), key=lambda i: i.name):
        if not info.ispkg:
            continue
        name = f"{package}.{info.name}.events"
        if importlib.util.find_spec(name) is None:
            continue
        importlib.import_module(name)
        imported.append(name)
    return imported


# --- markdown ------------------------------------------------------------------------------------


def _cell(text: str) -> str:
    # GFM splits table cells on "|" even inside code spans unless it is escaped.
    return text.replace("|", "\\|")


def _fields(obj: Schema, defs: dict[str, Schema]) -> list[str]:
    required = set(obj.get("required", []))
    lines = []
    for field, sub in obj.get("properties", {}).items():
        text = f"`{field}`: `{_describe(sub, defs, named=True)}`"
        if field in required:
            text += " **required**"
        elif "default" in sub:
            text += f", default `{json.dumps(sub['default'])}`"
        lines.append(text)
    return lines


def _fields_cell(schema: Schema) -> str:
    root, defs = _split(schema)
    lines = _fields(root, defs)
    root_name = _ref_name(schema)
    for name in sorted(defs):
        if name == root_name:
            continue
        nested = defs[name]
        if "properties" in nested:
            lines.append(f"*{name}*: " + ", ".join(_fields(nested, defs)))
        else:
            lines.append(f"*{name}*: `{_describe(nested, defs, named=False)}`")
    return _cell("<br>".join(lines))


def render_markdown(catalogue: dict[str, Any]) -> str:
    """Render the catalogue as a markdown page: one table row per event version, then the rules."""
    lines = [
        "# Event catalogue",
        "",
        f"Generated from the registered event schemas; do not edit by hand, {_WRITE_HINT}.",
        "The JSON Schemas live in [catalogue.json](catalogue.json).",
        "",
        "| Event | Schema version | Aggregate | Fields |",
        "| --- | --- | --- | --- |",
    ]
    events: dict[str, Any] = catalogue.get("events", {})
    for event_type in sorted(events):
        aggregate = events[event_type].get("aggregate", "")
        for version, schema in sorted(_versions(catalogue, event_type).items()):
            lines.append(f"| `{event_type}` | {version} | `{aggregate}` | {_fields_cell(schema)} |")
    if not events:
        lines.append("| *(no events registered)* | | | |")
    lines += [
        "",
        "Fields marked **required** have no default. `string(decimal)` is an exact decimal (money)",
        "carried as a JSON string; `string(uuid)` is a UUID; datetimes are ISO 8601 strings.",
        "",
        "",
    ]
    return "\n".join(lines) + VERSIONING_RULES


# --- CLI -----------------------------------------------------------------------------------------


def _read(path: Path) -> str | None:
    return path.read_text(encoding="utf-8") if path.exists() else None


def _load_committed(text: str | None, label: str, problems: list[str]) -> dict[str, Any]:
    if text is None:
        return {"events": {}}
    try:
        loaded = json.loads(text)
    except json.JSONDecodeError as exc:
        problems.append(f"{label} is not valid JSON ({exc}); {_WRITE_HINT}")
        return {"events": {}}
    if not isinstance(loaded, dict):
        problems.append(f"{label} is not a JSON object; {_WRITE_HINT}")
        return {"events": {}}
    return loaded


def _write(root: Path, registry: EventRegistry, *, force: bool) -> int:
    json_path, md_path = root / CATALOGUE_JSON, root / CATALOGUE_MD
    current = build_catalogue(registry)
    problems: list[str] = []
    committed = _load_committed(_read(json_path), str(CATALOGUE_JSON), problems)
    problems += check_compatibility(committed, current)
    if problems and not force:
        # Refusing here is what gives the rules teeth: rewriting the committed catalogue to match a
        # changed schema would otherwise make `check` pass.
        for problem in problems:
            print(problem, file=sys.stderr)
        print("not written; use --force only for versions that were never published", file=sys.stderr)
        return 1
    json_path.parent.mkdir(parents=True, exist_ok=True)
    json_path.write_text(dump_catalogue(current), encoding="utf-8")
    md_path.write_text(render_markdown(current), encoding="utf-8")
    print(f"wrote {json_path} and {md_path}")
    return 0


def _check(root: Path, registry: EventRegistry) -> int:
    json_path, md_path = root / CATALOGUE_JSON, root / CATALOGUE_MD
    current = build_catalogue(registry)
    problems: list[str] = []
    committed_text = _read(json_path)
    committed = _load_committed(committed_text, str(CATALOGUE_JSON), problems)
    problems += check_compatibility(committed, current)
    if committed_text is None:
        problems.append(f"{CATALOGUE_JSON} is missing; {_WRITE_HINT}")
    elif committed_text != dump_catalogue(current):
        problems.append(f"{CATALOGUE_JSON} is out of date; {_WRITE_HINT}")
    markdown = _read(md_path)
    if markdown is None:
        problems.append(f"{CATALOGUE_MD} is missing; {_WRITE_HINT}")
    elif markdown != render_markdown(current):
        problems.append(f"{CATALOGUE_MD} is out of date; {_WRITE_HINT}")
    for problem in problems:
        print(problem, file=sys.stderr)
    if problems:
        return 1
    print(f"{CATALOGUE_JSON} is up to date ({len(registry)} event versions)")
    return 0


def main(argv: Sequence[str] | None = None, *, registry: EventRegistry | None = None) -> int:
    """Run the ``write`` or ``check`` command; returns the process exit status."""
    parser = argparse.ArgumentParser(prog="python -m outbox.catalogue", description=__doc__)
    parser.add_argument("command", choices=["write", "check"])
    parser.add_argument("--root", type=Path, default=_REPO_ROOT, help="repository root (default: this repo)")
    parser.add_argument("--force", action="store_true", help="write even if published versions changed (write only)")
    args = parser.parse_args(argv)
    if registry is None:
        discover_event_modules()
        registry = default_registry
    if args.command == "write":
        return _write(args.root, registry, force=args.force)
    return _check(args.root, registry)


if __name__ == "__main__":
    sys.exit(main())
