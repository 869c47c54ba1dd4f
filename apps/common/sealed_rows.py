"""One sealed place's rows: which table and columns hold envelopes, the SQL that finds rows to (re)seal or
open, and the row values written back. apps/common/sealed_tables.py walks tables with these."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass

from apps.common.crypto import Keyring, KeyringFile, associated_data, blind_index, key_id, open_envelope, seal

__all__ = [
    "SealedTable",
    "assignments",
    "open_json_fields",
    "opened_row",
    "resealed_row",
    "seal_json_fields",
    "sealed_condition",
    "stale_condition",
]


@dataclass(frozen=True)
class SealedTable:
    table: str
    columns: tuple[str, ...]
    key: str = "id"
    # The table named in the associated data: an archive's rows keep their table's (they were sealed there).
    aad_table: str | None = None
    # When set, each column is a JSON object and these of its fields are sealed (the others stay clear).
    json_fields: tuple[str, ...] = ()
    # (sealed column, its blind-index column): the index is recomputed with the value.
    index: tuple[str, str] | None = None

    @property
    def place(self) -> str:
        return self.aad_table or self.table


def seal_json_fields(
    ring: Keyring, service: str, place: str, column: str, row_id: object, value: object, fields: Sequence[str]
) -> object:
    """A JSON object with each listed string field sealed (field ``<column>.<name>`` in the associated
    data); anything that is not an object (NULL) as it is. A field sealed already is left alone."""
    if not isinstance(value, dict):
        return value
    sealed = dict(value)
    for name in fields:
        field = sealed.get(name)
        if isinstance(field, str) and key_id(field) != ring.current:
            aad = associated_data(service, place, f"{column}.{name}", row_id)
            sealed[name] = seal(ring, _opened(ring, aad, field), aad)
    return sealed


def open_json_fields(
    ring: KeyringFile, service: str, place: str, column: str, row_id: object, value: object, fields: Sequence[str]
) -> dict[str, object] | None:
    """The reverse of seal_json_fields (a field in clear, from before sealing, reads as it is)."""
    if not isinstance(value, dict):
        return None
    opened = dict(value)
    for name in fields:
        field = opened.get(name)
        if isinstance(field, str) and key_id(field) is not None:
            opened[name] = ring.open(field, associated_data(service, place, f"{column}.{name}", row_id))
    return opened


def _opened(ring: Keyring, aad: bytes, value: str) -> str:
    if key_id(value) is None:
        return value  # stored before sealing
    return open_envelope(ring, value, aad)


def stale_condition(spec: SealedTable) -> str:
    """SQL: some value of the row is not sealed under the current key (``:prefix`` = 'v1:<kid>:%')."""
    return _some_value(spec, "NOT LIKE :prefix")


def sealed_condition(spec: SealedTable) -> str:
    """SQL: some value of the row is sealed (under any key)."""
    return _some_value(spec, "LIKE 'v1:%'")


def _some_value(spec: SealedTable, condition: str) -> str:
    if not spec.json_fields:
        return " OR ".join(f"({c} IS NOT NULL AND {c} {condition})" for c in spec.columns)
    names = ", ".join(f"'{f}'" for f in spec.json_fields)
    return " OR ".join(
        f"(jsonb_typeof({c}) = 'object' AND EXISTS (SELECT 1 FROM jsonb_each_text({c}) AS f "
        f"WHERE f.key IN ({names}) AND f.value IS NOT NULL AND f.value {condition}))"
        for c in spec.columns
    )


def resealed_row(ring: Keyring, service: str, spec: SealedTable, row: Sequence[object]) -> dict[str, object]:
    row_id, values = row[0], row[1:]
    params: dict[str, object] = {"row_key": row_id}
    for column, value in zip(spec.columns, values, strict=True):
        if spec.json_fields:
            resealed = seal_json_fields(ring, service, spec.place, column, row_id, value, spec.json_fields)
            params[column] = None if resealed is None else json.dumps(resealed)
            continue
        aad = associated_data(service, spec.place, column, row_id)
        clear = None if value is None else _opened(ring, aad, str(value))
        params[column] = None if clear is None else seal(ring, clear, aad)
        if spec.index and spec.index[0] == column and clear is not None:
            params[spec.index[1]] = blind_index(ring, clear)
    return params


def opened_row(ring: KeyringFile, service: str, spec: SealedTable, row: Sequence[object]) -> dict[str, object]:
    params: dict[str, object] = {"row_key": row[0]}
    for column, value in zip(spec.columns, row[1:], strict=True):
        if spec.json_fields:
            opened = open_json_fields(ring, service, spec.place, column, row[0], value, spec.json_fields)
            params[column] = None if opened is None else json.dumps(opened)
        else:
            sealed = value is not None and key_id(str(value)) is not None
            params[column] = (
                ring.open(str(value), associated_data(service, spec.place, column, row[0])) if sealed else value
            )
    return params


def assignments(spec: SealedTable) -> str:
    cast = "CAST(:{c} AS jsonb)" if spec.json_fields else ":{c}"
    assignments = [f"{c} = {cast.format(c=c)}" for c in spec.columns]
    if spec.index:
        assignments.append(f"{spec.index[1]} = :{spec.index[1]}")
    return ", ".join(assignments)
