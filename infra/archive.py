"""Move old rows of a table, and the rows that reference them, to archive tables, in bounded batches.

The seed's archival strategy (orders older than two years to ``orders_archive``), done so that it can run
beside live traffic and beside another run of itself:

- each batch is one transaction that claims at most ``batch`` parent rows with ``FOR UPDATE SKIP
  LOCKED`` (a row a request is changing right now, or another archiver has claimed, is left for later);
- every table with a foreign key to the parent is handled first, for the claimed parents only: copied to
  ``<table>_archive`` and deleted, or only deleted when listed in ``drop_children`` (idempotency keys);
  a referencing table with neither is an error, so a new child table is never silently lost;
- columns are named, never ``SELECT *``: the archive must have every column of the live table (a column
  added to the live table and not to its archive stops the job with the column's name).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Collection
from dataclasses import dataclass

from sqlalchemy import TextClause, bindparam, text
from sqlalchemy.dialects.postgresql import ARRAY, UUID
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

SUFFIX = "_archive"

_COLUMNS = text(
    "SELECT column_name FROM information_schema.columns "
    "WHERE table_schema = current_schema() AND table_name = :table ORDER BY ordinal_position"
)
_CHILDREN = text(
    "SELECT c.conrelid::regclass::text AS child, a.attname AS column_name "
    "FROM pg_constraint c JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = c.conkey[1] "
    "WHERE c.contype = 'f' AND c.confrelid = to_regclass(:table) ORDER BY child"
)


class ArchiveError(RuntimeError):
    """The archive cannot take the live rows as they are (a missing table or column)."""


@dataclass(frozen=True)
class Plan:
    parent: str
    parent_columns: list[str]
    children: list[tuple[str, str, list[str] | None]]  # table, foreign key column, columns (None: delete only)


async def plan(conn: AsyncConnection, parent: str, drop_children: Collection[str]) -> Plan:
    """What one batch moves, read from the catalog: refuses an archive that lacks a table or a column."""
    children: list[tuple[str, str, list[str] | None]] = []
    for child, column in (await conn.execute(_CHILDREN, {"table": parent})).tuples():
        if child in drop_children:
            children.append((child, column, None))
        else:
            children.append((child, column, await _archivable_columns(conn, child)))
    return Plan(parent, await _archivable_columns(conn, parent), children)


async def _archivable_columns(conn: AsyncConnection, table: str) -> list[str]:
    live = list((await conn.execute(_COLUMNS, {"table": table})).scalars())
    archived = set((await conn.execute(_COLUMNS, {"table": table + SUFFIX})).scalars())
    if not archived:
        raise ArchiveError(f"{table} references the archived rows but has no {table}{SUFFIX} table")
    missing = [column for column in live if column not in archived]
    if missing:
        raise ArchiveError(f"{table}{SUFFIX} lacks the columns {', '.join(missing)} of {table}")
    return live


def _quoted(columns: list[str]) -> str:
    return ", ".join(f'"{column}"' for column in columns)


async def move_batch(conn: AsyncConnection, steps: Plan, cutoff: dt.datetime, batch: int) -> dict[str, int]:
    """Claim up to ``batch`` parents older than ``cutoff`` and move them with their children; rows per table."""
    claim = text(
        f"SELECT id FROM {steps.parent} WHERE created_at < :cutoff "
        "ORDER BY created_at LIMIT :batch FOR UPDATE SKIP LOCKED"
    )
    ids = list((await conn.execute(claim, {"cutoff": cutoff, "batch": batch})).scalars())
    moved: dict[str, int] = {steps.parent: len(ids)}
    if not ids:
        return moved
    for child, column, columns in steps.children:
        where = f'WHERE "{column}" = ANY(:ids)'
        if columns is not None:
            copy = f"INSERT INTO {child}{SUFFIX} ({_quoted(columns)}) SELECT {_quoted(columns)} FROM {child} {where}"
            await conn.execute(_bind(copy), {"ids": ids})
        moved[child] = (await conn.execute(_bind(f"DELETE FROM {child} {where}"), {"ids": ids})).rowcount
    named = _quoted(steps.parent_columns)
    copy = f"INSERT INTO {steps.parent}{SUFFIX} ({named}) SELECT {named} FROM {steps.parent} WHERE id = ANY(:ids)"
    await conn.execute(_bind(copy), {"ids": ids})
    await conn.execute(_bind(f"DELETE FROM {steps.parent} WHERE id = ANY(:ids)"), {"ids": ids})
    return moved


def _bind(sql: str) -> TextClause:
    return text(sql).bindparams(bindparam("ids", type_=ARRAY(UUID(as_uuid=True))))


async def archive(
    engine: AsyncEngine,
    parent: str,
    *,
    cutoff: dt.datetime,
    batch: int = 500,
    drop_children: Collection[str] = (),
    max_batches: int | None = None,
) -> dict[str, int]:
    """Move every parent older than ``cutoff`` (and its children), ``batch`` parents per transaction."""
    totals: dict[str, int] = {}
    done = 0
    while max_batches is None or done < max_batches:
        async with engine.begin() as conn:
            moved = await move_batch(conn, await plan(conn, parent, drop_children), cutoff, batch)
        for table, count in moved.items():
            totals[table] = totals.get(table, 0) + count
        done += 1
        if moved[parent] < batch:
            break
    return totals
