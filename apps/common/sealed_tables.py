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
import sys
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Final

from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

from apps.common.crypto import RELOAD_INTERVAL_S, CryptoError, KeyringFile
from apps.common.sealed_rows import (
    SealedTable,
    assignments,
    opened_row,
    resealed_row,
    sealed_condition,
    stale_condition,
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
    "service_keys",
]

DEFAULT_BATCH: Final = 500
# Services with sealed columns: each module has SEALED_TABLES and keyring() (and SERVICE).
SERVICES: Final = {
    "customer": "apps.customer.keys",
    "order": "apps.order.sealed",
    "checkout": "apps.checkout.sealed",
}


class ServiceKeys:
    """One service's key file and sealed tables: rotate, reseal, status, retire."""

    def __init__(self, service: str, keyring: Callable[[], KeyringFile], tables: Sequence[SealedTable]) -> None:
        self.service = service
        self.keyring = keyring
        self.tables = {spec.table: spec for spec in tables}

    def reseal_batch(
        self, conn: Connection, table: str, after: object | None, batch: int, *, skip_locked: bool = False
    ) -> tuple[int, object | None]:
        """Re-seal one batch of stale rows past ``after`` (key order): (rows re-sealed, last key seen)."""
        ring, spec = self.keyring().ring(), self.tables[table]
        rows = self._locked_batch(conn, spec, stale_condition(spec), after, batch, skip_locked, f"v1:{ring.current}:%")
        if not rows:
            return 0, None
        updates = [resealed_row(ring, self.service, spec, row) for row in rows]
        conn.execute(text(f"UPDATE {table} SET {assignments(spec)} WHERE {spec.key} = :row_key"), updates)
        return len(rows), rows[-1][0]

    def reseal_table(
        self, conn: Connection, table: str, *, batch: int = DEFAULT_BATCH, commit: Callable[[], None] | None = None
    ) -> int:
        """Every stale row of ``table``, batch by batch; ``commit`` ends each batch's transaction (rotation,
        migrations). With ``commit``, rows a writer holds are skipped and taken by a later pass, so the walk
        never waits on a writer holding a lock: nothing it holds outlives a batch, and no deadlock forms."""
        spec = self.tables[table]
        prefix = f"v1:{self.keyring().ring().current}:%"
        return self._batches(conn, table, stale_condition(spec), {"prefix": prefix}, self.reseal_batch, batch, commit)

    def unseal_batch(
        self, conn: Connection, table: str, after: object | None, batch: int, *, skip_locked: bool = False
    ) -> tuple[int, object | None]:
        """Write one batch of sealed rows past ``after`` back in clear (a downgrade): (rows, last key seen)."""
        ring, spec = self.keyring(), self.tables[table]
        rows = self._locked_batch(conn, spec, sealed_condition(spec), after, batch, skip_locked, None)
        if not rows:
            return 0, None
        updates = [opened_row(ring, self.service, spec, row) for row in rows]
        assignments = ", ".join(
            f"{c} = CAST(:{c} AS jsonb)" if spec.json_fields else f"{c} = :{c}" for c in spec.columns
        )
        conn.execute(text(f"UPDATE {table} SET {assignments} WHERE {spec.key} = :row_key"), updates)
        return len(rows), rows[-1][0]

    def unseal_table(
        self, conn: Connection, table: str, *, batch: int = DEFAULT_BATCH, commit: Callable[[], None] | None = None
    ) -> int:
        """Write every sealed value of ``table`` back in clear (a migration's downgrade): rows changed."""
        return self._batches(conn, table, sealed_condition(self.tables[table]), {}, self.unseal_batch, batch, commit)

    @staticmethod
    def _locked_batch(
        conn: Connection,
        spec: SealedTable,
        pending: str,
        after: object | None,
        batch: int,
        skip: bool,
        prefix: str | None,
    ) -> Sequence[Sequence[object]]:
        # Key order: writers that lock the same rows in key order cannot deadlock a batch.
        keyset = "" if after is None else f"{spec.key} > :after AND "
        lock = "FOR UPDATE SKIP LOCKED" if skip else "FOR UPDATE"
        return conn.execute(
            text(
                f"SELECT {spec.key}, {', '.join(spec.columns)} FROM {spec.table} WHERE {keyset}({pending}) "
                f"ORDER BY {spec.key} LIMIT :batch {lock}"
            ),
            {"after": after, "batch": batch, "prefix": prefix},
        ).all()

    @staticmethod
    def _batches(
        conn: Connection,
        table: str,
        pending: str,
        params: dict[str, object],
        one_batch: Callable[..., tuple[int, object | None]],
        batch: int,
        commit: Callable[[], None] | None,
    ) -> int:
        skip = commit is not None  # in one transaction a skipped row could be held by a writer waiting on us
        total, after = 0, None
        while True:
            count, after = one_batch(conn, table, after, batch, skip_locked=skip)
            if commit is not None:
                commit()
            total += count
            if count:
                continue
            left = conn.execute(text(f"SELECT 1 FROM {table} WHERE {pending} LIMIT 1"), params).first()
            if commit is not None:
                commit()
            if not skip or left is None:
                return total
            time.sleep(0.05)  # only rows writers hold are left: let them commit, then walk again from the start

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
    with the service's key file. The migration names its tables itself: they are what its revision sealed.

    It runs on a connection of its own, one transaction per batch, skipping rows a request holds: in the
    migration's single transaction it held a lock on every row until the end and deadlocked against the saga.
    """
    module = importlib.import_module(SERVICES[service])
    keys = ServiceKeys(service, module.keyring, tables)
    with conn.engine.connect() as own:
        for table in keys.tables:
            if seal:
                keys.reseal_table(own, table, commit=own.commit)
            else:
                keys.unseal_table(own, table, commit=own.commit)


def service_keys(service: str) -> ServiceKeys:
    module = importlib.import_module(SERVICES[service])
    return ServiceKeys(service, module.keyring, module.SEALED_TABLES)


COMMANDS = ("status", "rotate", "reseal", "retire")


def main(argv: Sequence[str] | None = None) -> int:
    """``just keys SERVICE COMMAND ...`` (SERVICE defaults to customer, as before other services sealed)."""
    args = list(sys.argv[1:] if argv is None else argv)
    if args and args[0] not in SERVICES and args[0] not in COMMANDS and not args[0].startswith("-"):
        # Else a misspelt service reads as "just keys customer: invalid choice" (the default swallowed it).
        print(
            f"just keys: {args[0]!r} is neither a service ({', '.join(SERVICES)}) nor a command "
            f"({', '.join(COMMANDS)}): just keys [SERVICE] status|rotate|reseal|retire KID",
            file=sys.stderr,
        )
        return 2
    service = args.pop(0) if args and args[0] in SERVICES else "customer"
    return service_keys(service).main(args)


if __name__ == "__main__":
    sys.exit(main())
