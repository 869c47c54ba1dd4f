"""Key rotation for the customer service's sealed columns: `python -m apps.customer.keys rotate`.

``rotate`` writes a new key as current into the key file (running services pick it up within a second,
apps/common/crypto.py), then walks customers and customer_addresses by primary key in batches, each
batch its own short transaction (rows locked FOR UPDATE, so a concurrent API write to the same row waits
for the batch rather than being overwritten), re-sealing every value not yet under the current key,
until a count finds none left. A value stored in clear (written by code older than customer_0005) is
sealed too, so the same walk finishes that migration's data step. Old keys stay in the file: they still
open values in backups taken before the rotation. ``reseal`` runs the same walk without a new key (an
interrupted rotation, a straggler). ``retire KID`` removes a key once no row uses it (and backups older
than the key's last use have expired: docs/decisions.md). ``status`` counts rows per key.

The walk is written against a synchronous Connection, so the customer_0005 migration runs it as well.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Final

from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

from apps.common.crypto import (
    RELOAD_INTERVAL_S,
    CryptoError,
    Keyring,
    associated_data,
    blind_index,
    key_id,
    open_envelope,
    seal,
)
from apps.common.topology import BY_NAME, database_url
from apps.customer.sealed import ADDRESS_COLUMNS, CUSTOMER_COLUMNS, SERVICE, keyring

if TYPE_CHECKING:
    from collections.abc import Callable

    from sqlalchemy.engine import Connection

__all__ = ["TABLES", "main", "reseal_table", "rows_per_key"]

TABLES: Final = {"customers": CUSTOMER_COLUMNS, "customer_addresses": ADDRESS_COLUMNS}
DEFAULT_BATCH: Final = 500


def _stale(columns: Sequence[str]) -> str:
    """SQL: some value of the row is not sealed under the current key (``:prefix`` = 'v1:<kid>:%')."""
    return " OR ".join(f"({c} IS NOT NULL AND {c} NOT LIKE :prefix)" for c in columns)


def _opened(ring: Keyring, table: str, column: str, row_id: object, value: str | None) -> str | None:
    if value is None or key_id(value) is None:
        return value  # NULL, or a value stored before sealing
    return open_envelope(ring, value, associated_data(SERVICE, table, column, row_id))


def _resealed_row(ring: Keyring, table: str, columns: Sequence[str], row: Sequence[object]) -> dict[str, object]:
    row_id, values = row[0], row[1:]
    params: dict[str, object] = {"id": row_id}
    for column, value in zip(columns, values, strict=True):
        clear = _opened(ring, table, column, row_id, None if value is None else str(value))
        params[column] = None if clear is None else seal(ring, clear, associated_data(SERVICE, table, column, row_id))
        if table == "customers" and column == "email" and clear is not None:
            params["email_index"] = blind_index(ring, clear)
    return params


def reseal_batch(conn: Connection, table: str, after: object | None, batch: int) -> tuple[int, object | None]:
    """Re-seal one batch of stale rows past ``after`` (primary-key order): (rows re-sealed, last id seen)."""
    ring = keyring().ring()
    columns = TABLES[table]
    keyset = "" if after is None else "id > :after AND "
    rows = conn.execute(
        text(
            f"SELECT id, {', '.join(columns)} FROM {table} WHERE {keyset}({_stale(columns)}) "
            "ORDER BY id LIMIT :batch FOR UPDATE"
        ),
        {"after": after, "batch": batch, "prefix": f"v1:{ring.current}:%"},
    ).all()
    if not rows:
        return 0, None
    updates = [_resealed_row(ring, table, columns, row) for row in rows]
    assignments = [f"{c} = :{c}" for c in columns]
    if table == "customers":
        assignments.append("email_index = :email_index")
    conn.execute(text(f"UPDATE {table} SET {', '.join(assignments)} WHERE id = :id"), updates)
    return len(rows), rows[-1][0]


def reseal_table(
    conn: Connection, table: str, *, batch: int = DEFAULT_BATCH, commit: Callable[[], None] | None = None
) -> int:
    """Every stale row of ``table``, batch by batch; ``commit`` ends each batch's transaction (rotation)."""
    total, after = 0, None
    while True:
        count, after = reseal_batch(conn, table, after, batch)
        if commit is not None:
            commit()
        if count == 0:
            return total
        total += count


def rows_per_key(conn: Connection) -> dict[str, dict[str, int]]:
    """table -> key id (or 'clear') -> rows with at least one value under it."""
    counts: dict[str, dict[str, int]] = {}
    for table, columns in TABLES.items():
        kids = " UNION ".join(
            f"SELECT id, coalesce(nullif(split_part({c}, ':', 2), ''), 'clear') AS kid FROM {table} "
            f"WHERE {c} IS NOT NULL"
            for c in columns
        )
        result = conn.execute(text(f"SELECT kid, count(DISTINCT id) FROM ({kids}) AS k GROUP BY kid"))
        counts[table] = {str(kid): int(n) for kid, n in result.all()}
    return counts


def _rotate(conn: Connection, batch: int) -> dict[str, int]:
    started = time.monotonic()
    resealed = {table: 0 for table in TABLES}
    while True:
        found = 0
        for table in TABLES:
            count = reseal_table(conn, table, batch=batch, commit=conn.commit)
            resealed[table] += count
            found += count
        # A service that sealed with the old key just before it re-read the key file may commit after
        # the walk passed its row: walk again until a pass that began after every reader switched
        # (one reload interval, plus a write's duration) finds nothing left.
        if found == 0 and time.monotonic() - started > 2 * RELOAD_INTERVAL_S:
            return resealed
        if found == 0:
            time.sleep(RELOAD_INTERVAL_S / 2)


async def _with_connection(work: Callable[[Connection], object]) -> object:
    engine = create_async_engine(database_url(BY_NAME[SERVICE]), poolclass=NullPool)
    try:
        async with engine.connect() as conn:
            return await conn.run_sync(work)
    finally:
        await engine.dispose()


def rotate(batch: int = DEFAULT_BATCH, *, new_key: bool = True) -> tuple[str, dict[str, int]]:
    """A new current key (unless ``new_key`` is false: finish an interrupted rotation, or seal values left
    in clear), then every row re-sealed under the current key: (its id, rows re-sealed per table)."""
    source = keyring()
    if new_key:
        source.write(source.ring().with_new_current())
    resealed = asyncio.run(_with_connection(lambda conn: _rotate(conn, batch)))
    assert isinstance(resealed, dict)
    return source.ring().current, resealed


def retire(kid: str) -> None:
    counts = asyncio.run(_with_connection(rows_per_key))
    assert isinstance(counts, dict)
    in_use = {table: n[kid] for table, n in counts.items() if kid in n}
    if in_use:
        raise CryptoError(f"key {kid} still seals rows: {in_use}; run rotate first")
    source = keyring()
    source.write(source.ring().without(kid))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m apps.customer.keys", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    rotate_cmd = commands.add_parser("rotate", help="new current key, then re-seal every row in batches")
    rotate_cmd.add_argument("--batch", type=int, default=DEFAULT_BATCH)
    reseal_cmd = commands.add_parser("reseal", help="re-seal rows not under the current key (no new key)")
    reseal_cmd.add_argument("--batch", type=int, default=DEFAULT_BATCH)
    commands.add_parser("status", help="rows per key id")
    retire_cmd = commands.add_parser("retire", help="remove a key no row uses")
    retire_cmd.add_argument("kid")
    args = parser.parse_args(argv)
    try:
        if args.command in {"rotate", "reseal"}:
            kid, resealed = rotate(max(1, args.batch), new_key=args.command == "rotate")
            print(f"current key {kid}; re-sealed {resealed}")
        elif args.command == "retire":
            retire(args.kid)
            print(f"retired {args.kid}")
        print(f"rows per key: {asyncio.run(_with_connection(rows_per_key))}")
    except CryptoError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
