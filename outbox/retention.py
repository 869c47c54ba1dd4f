"""Retention: delete outbox rows past their keeping time, and inbox rows past the replay window.

    python -m outbox.retention --database-url postgresql+asyncpg://... [--outbox-days 365] [--inbox-days 400]

The outbox (the seed's event_store) doubles as the audit log and is kept one year. Its publication
publishes inserts only, so these deletes never reach Kafka. Per-aggregate versions are never deleted:
a new event of an old aggregate continues its numbering.

An inbox row must outlive the event in Kafka: if it went first, a replay without --rebuild would apply
the event again. Keep inbox rows longer than the event topics' retention (365 days), hence 400.
Deletes run in bounded batches, each its own transaction, so a large backlog never holds long locks.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import sys

from sqlalchemy import TextClause, text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from outbox.models import INBOX_TABLE, OUTBOX_TABLE

BATCH = 10_000

_PURGE_OUTBOX = text(
    f"DELETE FROM {OUTBOX_TABLE} WHERE id IN "
    f"(SELECT id FROM {OUTBOX_TABLE} WHERE created_at < :cutoff ORDER BY created_at LIMIT :batch)"
)
_PURGE_INBOX = text(
    f"DELETE FROM {INBOX_TABLE} WHERE (consumer_group, event_id) IN "
    f"(SELECT consumer_group, event_id FROM {INBOX_TABLE} WHERE processed_at < :cutoff LIMIT :batch)"
)
_HAS_INBOX = text("SELECT to_regclass(:name) IS NOT NULL")


async def in_batches(engine: AsyncEngine, statement: TextClause, cutoff: dt.datetime, batch: int = BATCH) -> int:
    """Run ``statement`` (bound to :cutoff and :batch) until a batch touches fewer than ``batch`` rows.

    Each batch commits on its own, so a large backlog never holds long locks; returns the rows touched.
    """
    total = 0
    while True:
        async with engine.begin() as conn:
            touched = int((await conn.execute(statement, {"cutoff": cutoff, "batch": batch})).rowcount)
        total += touched
        if touched < batch:
            return total


async def purge(engine: AsyncEngine, *, outbox_days: int = 365, inbox_days: int = 400) -> dict[str, int]:
    """Delete what is past its keeping time; return how many rows went from each table."""
    now = dt.datetime.now(dt.UTC)
    result = {OUTBOX_TABLE: await in_batches(engine, _PURGE_OUTBOX, now - dt.timedelta(days=outbox_days))}
    async with engine.connect() as conn:
        has_inbox = bool(await conn.scalar(_HAS_INBOX, {"name": INBOX_TABLE}))
    if has_inbox:
        result[INBOX_TABLE] = await in_batches(engine, _PURGE_INBOX, now - dt.timedelta(days=inbox_days))
    return result


async def _main(urls: list[str], outbox_days: int, inbox_days: int) -> None:
    for url in urls:
        engine = create_async_engine(url)
        try:
            counts = await purge(engine, outbox_days=outbox_days, inbox_days=inbox_days)
        finally:
            await engine.dispose()
        database = url.rsplit("/", 1)[-1]
        print(f"{database}: " + ", ".join(f"{table} -{count}" for table, count in counts.items()))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database-url", action="append", required=True, help="repeat for several databases")
    parser.add_argument("--outbox-days", type=int, default=365)
    parser.add_argument("--inbox-days", type=int, default=400)
    args = parser.parse_args(argv)
    if args.inbox_days <= 365:
        parser.error("--inbox-days must exceed the event topics' 365-day retention (see the module docstring)")
    asyncio.run(_main(args.database_url, args.outbox_days, args.inbox_days))
    return 0


if __name__ == "__main__":
    sys.exit(main())
