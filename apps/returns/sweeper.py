"""The returns sweeper: expires requests nobody approved or shipped back in time (python -m apps.returns.sweeper).

Expiry is a row, not a timer: return_requests.expires_at is set when a return is requested (cleared when a
refund_only return is approved, when nothing is left to ship). Each round claims due requests (requested or
approved, FOR UPDATE SKIP LOCKED, so an agent approving one right now is never waited on and several
sweepers share the work) and expires each with its return.expired event in the same transaction. The API
also expires a due request it is asked to move, so nothing depends on the sweeper's timing.

GET /health, /ready and /metrics on --port (8207), with ``returns_by_status{status}``.
"""

from __future__ import annotations

import logging

from prometheus_client import Counter, Gauge
from sqlalchemy import text
from sqlalchemy.ext.asyncio import async_sessionmaker

from apps.common.models import utc_now
from apps.common.poller import DueCheck, Poller, Sessions, poller_engine, poller_main, serve_poller
from apps.common.table_writes import TableWrites
from apps.returns.progress import expire_due
from apps.returns.rules import STATUSES
from apps.returns.settings import settings

log = logging.getLogger("apps.returns.sweeper")

EXPIRED = Counter("returns_expired_total", "Return requests the sweeper expired")
ROUNDS_FAILED = Counter("returns_sweeper_rounds_failed_total", "Sweeper rounds that failed (database errors)")
BY_STATUS = Gauge("returns_by_status", "Return requests in each status", ["status"])
_PER_STATUS = text("SELECT status, count(*) FROM return_requests GROUP BY status")
# Seconds until expire_due finds a row (the first expiry of a requested or approved return, unlocked), on its
# clock (this process's: it passes utc_now()), through the partial index ix_return_requests_expiring.
DUE = "SELECT extract(epoch FROM min(expires_at) - $1) FROM return_requests WHERE status IN ('requested', 'approved')"


BATCH = 50  # due rows per round (one transaction)


class Sweeper(Poller):
    def __init__(self, sessions: Sessions, *, poll_s: float = 1.0, due: DueCheck | None = None) -> None:
        super().__init__(sessions, batch=BATCH, poll_s=poll_s, rounds_failed=ROUNDS_FAILED, log=log, due=due)
        self.writes = TableWrites("return_requests")

    async def work(self) -> int:
        """Expire one batch of due requests in one transaction; how many."""
        async with self.sessions() as session, session.begin():
            done = await expire_due(session, utc_now(), self.batch)
        if done:
            EXPIRED.inc(done)
            log.info("expired %d return requests", done)
        return done

    async def gauge(self) -> None:
        """Requests per status, counted again only once return_requests was written."""
        async with self.sessions() as session:
            if not await self.writes.changed(session):
                return
            counts = dict((await session.execute(_PER_STATUS)).tuples().all())
        for status in STATUSES:
            BY_STATUS.labels(status).set(counts.get(status, 0))


async def serve(port: int | None) -> None:
    engine = poller_engine("returns", "returns-sweeper", pool_size=2, max_overflow=2)
    sweeper = Sweeper(
        async_sessionmaker(engine, expire_on_commit=False),
        poll_s=settings().sweeper_poll_s,
        due=DueCheck(engine, "returns-sweeper", DUE, lambda: (utc_now(),)),
    )
    await serve_poller(sweeper, engine, port)


def main() -> None:
    poller_main(__doc__, settings().sweeper_port or None, serve)


if __name__ == "__main__":
    main()
