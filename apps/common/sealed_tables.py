"""Key rotation for any service's sealed columns (apps/common/crypto.py): the walk, and its command line.

A service names its sealed places (``SealedTable``: a table, its key column, its sealed text columns, or
JSONB columns whose listed fields are sealed, e.g. an order's shipping_address lines) and its key file;
``ServiceKeys`` then rotates (a new key becomes current, running services pick it up within a second),
re-seals in batches, counts rows per key and retires unused keys. Each batch is its own short
transaction (rows locked FOR UPDATE, so a concurrent write to the same row waits for the batch rather
than being overwritten); the walk repeats until a pass that began after every reader switched finds
nothing stale. A value stored in clear (written before its column was sealed) is sealed by the same
walk, so a migration that seals existing rows runs it too (it is written against a synchronous
Connection for that reason). Run: ``just keys SERVICE status|rotate|reseal|retire KID``.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import json
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

from apps.common.crypto import (
    RELOAD_INTERVAL_S,
    CryptoError,
    Keyring,
    KeyringFile,
    associated_data,
    blind_index,
    key_id,
    open_envelope,
    seal,
)
from apps.common.topology import BY_NAME, database_url

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection

__all__ = [
    "DEFAULT_BATCH",
    "SERVICES",
    "SealedTable",
    "ServiceKeys",
    "main",
    "migration_data_step",
    "open_json_fields",
    "seal_json_fields",
    "service_keys",
]

DEFAULT_BATCH: Final = 500
# Services with sealed columns: each module has SEALED_TABLES and keyring() (and SERVICE).
SERVICES: Final = {
    "customer": "apps.customer.keys",
    "order": "apps.order.sealed",
    "checkout": "apps.checkout.sealed",
}


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


def _stale(spec: SealedTable) -> str:
    """SQL: some value of the row is not sealed under the current key (``:prefix`` = 'v1:<kid>:%')."""
    if not spec.json_fields:
        return " OR ".join(f"({c} IS NOT NULL AND {c} NOT LIKE :prefix)" for c in spec.columns)
    names = ", ".join(f"'{f}'" for f in spec.json_fields)
    return " OR ".join(
        f"(jsonb_typeof({c}) = 'object' AND EXISTS (SELECT 1 FROM jsonb_each_text({c}) AS f "
        f"WHERE f.key IN ({names}) AND f.value IS NOT NULL AND f.value NOT LIKE :prefix))"
        for c in spec.columns
    )


def _resealed_row(ring: Keyring, service: str, spec: SealedTable, row: Sequence[object]) -> dict[str, object]:
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


def _assignments(spec: SealedTable) -> str:
    cast = "CAST(:{c} AS jsonb)" if spec.json_fields else ":{c}"
    assignments = [f"{c} = {cast.format(c=c)}" for c in spec.columns]
    if spec.index:
        assignments.append(f"{spec.index[1]} = :{spec.index[1]}")
    return ", ".join(assignments)


class ServiceKeys:
    """One service's key file and sealed tables: rotate, reseal, status, retire."""

    def __init__(self, service: str, keyring: Callable[[], KeyringFile], tables: Sequence[SealedTable]) -> None:
        self.service = service
        self.keyring = keyring
        self.tables = {spec.table: spec for spec in tables}

    def reseal_batch(self, conn: Connection, table: str, after: object | None, batch: int) -> tuple[int, object | None]:
        """Re-seal one batch of stale rows past ``after`` (key order): (rows re-sealed, last key seen)."""
        ring, spec = self.keyring().ring(), self.tables[table]
        keyset = "" if after is None else f"{spec.key} > :after AND "
        rows = conn.execute(
            text(
                f"SELECT {spec.key}, {', '.join(spec.columns)} FROM {table} WHERE {keyset}({_stale(spec)}) "
                f"ORDER BY {spec.key} LIMIT :batch FOR UPDATE"
            ),
            {"after": after, "batch": batch, "prefix": f"v1:{ring.current}:%"},
        ).all()
        if not rows:
            return 0, None
        updates = [_resealed_row(ring, self.service, spec, row) for row in rows]
        conn.execute(text(f"UPDATE {table} SET {_assignments(spec)} WHERE {spec.key} = :row_key"), updates)
        return len(rows), rows[-1][0]

    def reseal_table(
        self, conn: Connection, table: str, *, batch: int = DEFAULT_BATCH, commit: Callable[[], None] | None = None
    ) -> int:
        """Every stale row of ``table``, batch by batch; ``commit`` ends each batch's transaction (rotation)."""
        total, after = 0, None
        while True:
            count, after = self.reseal_batch(conn, table, after, batch)
            if commit is not None:
                commit()
            if count == 0:
                return total
            total += count

    def unseal_table(self, conn: Connection, table: str) -> int:
        """Write every sealed value of ``table`` back in clear (a migration's downgrade): rows changed."""
        ring, spec = self.keyring(), self.tables[table]
        # Key order, like the rotation's batches: writers that lock the same rows in key order cannot deadlock it.
        columns = ", ".join(spec.columns)
        rows = conn.execute(text(f"SELECT {spec.key}, {columns} FROM {table} ORDER BY {spec.key}")).all()
        updates = []
        for row in rows:
            params: dict[str, object] = {"row_key": row[0]}
            for column, value in zip(spec.columns, row[1:], strict=True):
                if spec.json_fields:
                    opened = open_json_fields(ring, self.service, spec.place, column, row[0], value, spec.json_fields)
                    params[column] = None if opened is None else json.dumps(opened)
                else:
                    sealed = value is not None and key_id(str(value)) is not None
                    aad = associated_data(self.service, spec.place, column, row[0])
                    params[column] = ring.open(str(value), aad) if sealed else value
            updates.append(params)
        if updates:
            assignments = ", ".join(
                f"{c} = CAST(:{c} AS jsonb)" if spec.json_fields else f"{c} = :{c}" for c in spec.columns
            )
            conn.execute(text(f"UPDATE {table} SET {assignments} WHERE {spec.key} = :row_key"), updates)
        return len(updates)

    def rows_per_key(self, conn: Connection) -> dict[str, dict[str, int]]:
        """table -> key id (or 'clear') -> rows with at least one value under it."""
        counts: dict[str, dict[str, int]] = {}
        for table, spec in self.tables.items():
            if spec.json_fields:
                names = ", ".join(f"'{f}'" for f in spec.json_fields)
                values = " UNION ".join(
                    f"SELECT {spec.key} AS id, f.value AS v FROM {table}, jsonb_each_text("
                    f"CASE WHEN jsonb_typeof({c}) = 'object' THEN {c} ELSE '{{}}'::jsonb END) AS f "
                    f"WHERE f.key IN ({names}) AND f.value IS NOT NULL"
                    for c in spec.columns
                )
            else:
                values = " UNION ".join(
                    f"SELECT {spec.key} AS id, {c}::text AS v FROM {table} WHERE {c} IS NOT NULL" for c in spec.columns
                )
            kid = "CASE WHEN v LIKE 'v1:%' THEN split_part(v, ':', 2) ELSE 'clear' END"
            kids = f"SELECT id, {kid} AS kid FROM ({values}) AS s"
            result = conn.execute(text(f"SELECT kid, count(DISTINCT id) FROM ({kids}) AS k GROUP BY kid"))
            counts[table] = {str(kid): int(n) for kid, n in result.all()}
        return counts

    def _walk(self, conn: Connection, batch: int) -> dict[str, int]:
        started = time.monotonic()
        resealed = dict.fromkeys(self.tables, 0)
        while True:
            found = 0
            for table in self.tables:
                count = self.reseal_table(conn, table, batch=batch, commit=conn.commit)
                resealed[table] += count
                found += count
            # A service that sealed with the old key just before it re-read the key file may commit after
            # the walk passed its row: walk again until a pass that began after every reader switched
            # (one reload interval, plus a write's duration) finds nothing left.
            if found == 0 and time.monotonic() - started > 2 * RELOAD_INTERVAL_S:
                return resealed
            if found == 0:
                time.sleep(RELOAD_INTERVAL_S / 2)

    def with_connection(self, work: Callable[[Connection], object]) -> object:
        async def run() -> object:
            engine = create_async_engine(database_url(BY_NAME[self.service]), poolclass=NullPool)
            try:
                async with engine.connect() as conn:
                    return await conn.run_sync(work)
            finally:
                await engine.dispose()

        return asyncio.run(run())

    def rotate(self, batch: int = DEFAULT_BATCH, *, new_key: bool = True) -> tuple[str, dict[str, int]]:
        """A new current key (unless ``new_key`` is false: finish an interrupted rotation, or seal values
        left in clear), then every row re-sealed under the current key: (its id, rows re-sealed per table)."""
        source = self.keyring()
        if new_key:
            source.write(source.ring().with_new_current())
        resealed = self.with_connection(lambda conn: self._walk(conn, batch))
        assert isinstance(resealed, dict)
        return source.ring().current, resealed

    def status(self) -> dict[str, dict[str, int]]:
        counts = self.with_connection(self.rows_per_key)
        assert isinstance(counts, dict)
        return counts

    def retire(self, kid: str) -> None:
        in_use = {table: n[kid] for table, n in self.status().items() if kid in n}
        if in_use:
            raise CryptoError(f"key {kid} still seals rows: {in_use}; run rotate first")
        source = self.keyring()
        source.write(source.ring().without(kid))

    def main(self, argv: Sequence[str] | None = None) -> int:
        parser = argparse.ArgumentParser(prog=f"just keys {self.service}", description=__doc__.split("\n")[0])
        commands = parser.add_subparsers(dest="command", required=True)
        for name, help_ in [("rotate", "new current key, then re-seal every row"), ("reseal", "re-seal stale rows")]:
            commands.add_parser(name, help=help_).add_argument("--batch", type=int, default=DEFAULT_BATCH)
        commands.add_parser("status", help="rows per key id")
        commands.add_parser("retire", help="remove a key no row uses").add_argument("kid")
        args = parser.parse_args(argv)
        try:
            if args.command in {"rotate", "reseal"}:
                kid, resealed = self.rotate(max(1, args.batch), new_key=args.command == "rotate")
                print(f"{self.service}: current key {kid}; re-sealed {resealed}")
            elif args.command == "retire":
                self.retire(args.kid)
                print(f"{self.service}: retired {args.kid}")
            print(f"{self.service}: rows per key: {self.status()}")
        except CryptoError as error:
            print(f"error: {error}", file=sys.stderr)
            return 1
        return 0


def migration_data_step(conn: Connection, service: str, tables: Sequence[SealedTable], *, seal: bool) -> None:
    """A migration's data step: seal every row of ``tables`` (upgrade) or open them again (downgrade),
    with the service's key file. The migration names its tables itself: they are what its revision sealed."""
    module = importlib.import_module(SERVICES[service])
    keys = ServiceKeys(service, module.keyring, tables)
    for table in keys.tables:
        if seal:
            keys.reseal_table(conn, table)
        else:
            keys.unseal_table(conn, table)


def service_keys(service: str) -> ServiceKeys:
    module = importlib.import_module(SERVICES[service])
    return ServiceKeys(service, module.keyring, module.SEALED_TABLES)


def main(argv: Sequence[str] | None = None) -> int:
    """``just keys SERVICE COMMAND ...`` (SERVICE defaults to customer, as before other services sealed)."""
    args = list(sys.argv[1:] if argv is None else argv)
    service = args.pop(0) if args and args[0] in SERVICES else "customer"
    return service_keys(service).main(args)


if __name__ == "__main__":
    sys.exit(main())
