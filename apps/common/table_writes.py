"""Whether a few tables were written since the last look, from PostgreSQL's cumulative statistics.

The sweepers' dashboard gauges count whole tables (every saga by step, every return by status). Each count
is a scan that grows with the table: at ~90k orders the order sweeper's three counts cost PostgreSQL ~80 ms
of CPU every 5 s, on a stack doing nothing. The counts can only move when a row is inserted, updated or
deleted, and ``pg_stat_user_tables`` counts those per table: one catalog read tells whether to count again.

Statistics reach the view when a backend flushes them: at most a second after a busy backend's commit,
within ~10 s of an idle one's (PostgreSQL 15). So a gauge may lag a write by that much, and every
``recount_every_s`` it counts anyway, whatever the statistics say (a reset, a flush still pending).

While the tables are written all the time (an order load), it counts at most every ``min_interval_s``
(10 s: under the shortest saga step timeout, payment's 15 s, so a saga waiting on a step is still counted
while it waits). The order sweeper's three counts were 350-900 ms of a PostgreSQL backend's time every
5 s at 150k orders, one burst on a core each time, and the slowest HTTP requests of the fixed-rate
benchmark lined up with those bursts (docs/benchmarks.md, session 21).
"""

from __future__ import annotations

import time
from collections.abc import Callable

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

__all__ = ["TableWrites"]

_WRITES = text(
    "SELECT coalesce(sum(n_tup_ins + n_tup_upd + n_tup_del), 0) FROM pg_stat_user_tables "
    "WHERE schemaname = current_schema() AND relname = ANY(:tables)"
)


class TableWrites:
    """``changed()`` is true at the first look, then after any write to ``tables`` once ``min_interval_s``
    passed since it was last true, and every ``recount_every_s`` whatever was written."""

    def __init__(
        self,
        *tables: str,
        recount_every_s: float = 60.0,
        min_interval_s: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.tables = list(tables)
        self.recount_every_s = recount_every_s
        self.min_interval_s = min_interval_s
        self.clock = clock
        self._seen: int | None = None
        self._looked_at = 0.0

    async def changed(self, session: AsyncSession) -> bool:
        now = self.clock()
        if self._seen is not None and now - self._looked_at < self.min_interval_s:
            return False  # too soon to count again: not even the statistics are read
        writes = int(await session.scalar(_WRITES, {"tables": self.tables}) or 0)
        if writes == self._seen and now - self._looked_at < self.recount_every_s:
            return False
        self._seen, self._looked_at = writes, now
        return True
