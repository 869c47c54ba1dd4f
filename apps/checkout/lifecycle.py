"""Checkout's lifecycle jobs, run by ``just retention``: a cart nobody changed for the idle time becomes
abandoned, abandoned carts are deleted 30 days after they were abandoned, checkout sessions 7 days after
they expired (the seed's numbers).

Each statement works through at most ``BATCH`` rows per transaction, so a backlog never holds long
locks. None of these tables is in the CDC publication (only event_store is), so nothing here reaches
Kafka. Cached cart views expire on their own TTL; a write to an abandoned cart is refused by PostgreSQL's
status, never by the cache.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import sys
from dataclasses import dataclass
from typing import Final

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from apps.checkout.settings import CheckoutSettings, settings
from apps.common.topology import BY_NAME, database_url
from outbox.retention import in_batches

BATCH: Final = 5_000  # rows per transaction

# The outer conditions repeat the inner ones: a row changed by a request after the inner SELECT is
# re-checked by PostgreSQL before it is updated, so a cart touched a moment ago is not abandoned.
_ABANDON_IDLE_CARTS: Final = text(
    """
    UPDATE cart_sessions SET status = 'abandoned', updated_at = now()
    WHERE status = 'active' AND updated_at < :cutoff AND id IN (
        SELECT id FROM cart_sessions WHERE status = 'active' AND updated_at < :cutoff
        ORDER BY updated_at LIMIT :batch FOR UPDATE SKIP LOCKED)
    """
)
_DELETE_ABANDONED_CARTS: Final = text(
    """
    DELETE FROM cart_sessions
    WHERE status = 'abandoned' AND updated_at < :cutoff AND id IN (
        SELECT id FROM cart_sessions WHERE status = 'abandoned' AND updated_at < :cutoff
        ORDER BY updated_at LIMIT :batch FOR UPDATE SKIP LOCKED)
    """
)
_DELETE_EXPIRED_SESSIONS: Final = text(
    """
    DELETE FROM checkout_sessions
    WHERE expires_at < :cutoff AND id IN (
        SELECT id FROM checkout_sessions WHERE expires_at < :cutoff
        ORDER BY expires_at LIMIT :batch FOR UPDATE SKIP LOCKED)
    """
)


@dataclass(frozen=True, slots=True)
class Cutoffs:
    abandon_changed_before: dt.datetime
    delete_abandoned_before: dt.datetime
    delete_expired_before: dt.datetime


def cutoffs(now: dt.datetime, config: CheckoutSettings) -> Cutoffs:
    return Cutoffs(
        abandon_changed_before=now - config.cart_idle,
        delete_abandoned_before=now - config.abandoned_cart_retention,
        delete_expired_before=now - config.expired_session_retention,
    )


async def run(engine: AsyncEngine, now: dt.datetime, config: CheckoutSettings) -> dict[str, int]:
    """Abandon first, so a cart abandoned today is not deleted before its 30 days."""
    at = cutoffs(now, config)
    abandoned = await in_batches(engine, _ABANDON_IDLE_CARTS, at.abandon_changed_before, BATCH)
    deleted = await in_batches(engine, _DELETE_ABANDONED_CARTS, at.delete_abandoned_before, BATCH)
    sessions = await in_batches(engine, _DELETE_EXPIRED_SESSIONS, at.delete_expired_before, BATCH)
    return {"carts abandoned": abandoned, "abandoned carts deleted": deleted, "checkout sessions deleted": sessions}


async def _main() -> None:
    engine = create_async_engine(database_url(BY_NAME["checkout"]))
    try:
        counts = await run(engine, dt.datetime.now(dt.UTC), settings())
    finally:
        await engine.dispose()
    print("checkout_db: " + ", ".join(f"{what} {count}" for what, count in counts.items()))


def main() -> int:
    asyncio.run(_main())
    return 0


if __name__ == "__main__":
    sys.exit(main())
