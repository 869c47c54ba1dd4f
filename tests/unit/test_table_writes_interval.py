"""TableWrites under a steady write load: the sweepers' gauges count at most once per minimum interval."""

from __future__ import annotations

from typing import Any, cast

from sqlalchemy.ext.asyncio import AsyncSession

from apps.common.table_writes import TableWrites


class _Statistics:
    """Stands in for the session: each read of the statistics sees one more write, and is counted."""

    def __init__(self) -> None:
        self.writes = 0
        self.reads = 0

    async def scalar(self, *_: Any) -> int:
        self.reads += 1
        self.writes += 1
        return self.writes


class _Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_tables_written_all_the_time_are_counted_once_per_minimum_interval() -> None:
    stats, clock = _Statistics(), _Clock()
    writes = TableWrites("orders", min_interval_s=10, clock=clock)
    session = cast(AsyncSession, stats)
    looks = []
    for _ in range(12):  # a minute of gauge rounds, every 5 s, with writes between every two
        looks.append(await writes.changed(session))
        clock.now += 5
    assert looks == [True, False] * 6
    assert stats.reads == 6, "a look too soon does not even read the statistics"


async def test_a_write_after_a_quiet_spell_is_counted_at_the_next_look() -> None:
    stats, clock = _Statistics(), _Clock()
    writes = TableWrites("orders", min_interval_s=15, clock=clock)
    session = cast(AsyncSession, stats)
    assert await writes.changed(session)
    clock.now += 60
    assert await writes.changed(session)
