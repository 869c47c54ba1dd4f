"""Whether a few tables were written since the last look, from PostgreSQL's cumulative statistics.

The sweepers' dashboard gauges count whole tables (every saga by step, every return by status). Each count
is a scan that grows with the table: at ~90k orders the order sweeper's three counts cost PostgreSQL ~80 ms
of CPU every 5 s, on a stack doing nothing. The counts can only move when a row is inserted, updated or
deleted, and ``pg_stat_user_tables`` counts those per table: one catalog read tells whether to count again.

Statistics reach the view when a backend flushes them: at most a second after a busy backend's commit,
within ~10 s of an idle one's (PostgreSQL 15). So a gauge may lag a write by that much, and every
``recount_every_s`` it counts anyway, whatever the statistics say (a reset, a flush still pending).
"""

from __future__ import annotations

import time

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

__all__ = ["TableWrites"]

_WRITES = text(
    "SELECT coalesce(sum(n_tup_ins + n_tup_upd + n_tup_del), 0) FROM pg_stat_user_tables "
    "WHERE schemaname = current_schema() AND relname = ANY(:tables)"
)


class TableWrites:
    """``changed()`` is true at the first look, after any write to ``tables``, and every ``recount_every_s``."""

    def __init__(self, *tables: str, recount_every_s: float = 60.0) -> None:
        self.tables = list(tables)
        self.recount_every_s = recount_every_s
        self._seen: int | None = None
        self._looked_at = 0.0

    async def changed(self, session: AsyncSession) -> bool:
        writes = int(await session.scalar(_WRITES, {"tables": self.tables}) or 0)
        now = time.monotonic()
        if writes == self._seen and now - self._looked_at < self.recount_every_s:
            return False
        self._seen, self._looked_at = writes, now
        return True
