"""TableWrites on a real PostgreSQL: the sweepers' gauges count their tables again only after a write (or
once the recount interval passed), which is what keeps an idle stack from scanning its biggest tables."""

from __future__ import annotations

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine
from sqlalchemy.pool import NullPool

from apps.common.table_writes import TableWrites
from apps.common.topology import BY_NAME, database_url

pytestmark = pytest.mark.usefixtures("stack")


async def _write(session: AsyncSession, statement: str) -> None:
    await session.execute(text(statement))
    # Flush this backend's statistics as it goes idle, not up to 10 s later.
    await session.execute(text("SELECT pg_stat_force_next_flush()"))
    await session.commit()


async def _changed(writes: TableWrites, session: AsyncSession) -> bool:
    changed = await writes.changed(session)
    await session.commit()  # the next look takes a fresh snapshot of the statistics
    return changed


async def test_a_table_counts_as_changed_after_each_kind_of_write_and_not_in_between() -> None:
    engine = create_async_engine(database_url(BY_NAME["order"]), poolclass=NullPool)
    try:
        async with engine.connect() as conn:  # one connection: the temporary table lives with it
            session = AsyncSession(bind=conn)
            await session.execute(text("SET search_path = pg_temp, public"))
            await session.execute(text("CREATE TEMP TABLE table_writes_probe (id int, n int)"))
            await session.commit()
            writes = TableWrites("table_writes_probe", recount_every_s=3600, min_interval_s=0)
            assert await _changed(writes, session), "the first look counts"
            assert not await _changed(writes, session), "nothing was written since"
            for statement in (
                "INSERT INTO table_writes_probe VALUES (1, 0)",
                "UPDATE table_writes_probe SET n = n + 1",
                "DELETE FROM table_writes_probe",
            ):
                await _write(session, statement)
                assert await _changed(writes, session), statement
                assert not await _changed(writes, session), f"nothing since {statement}"
            await session.close()
    finally:
        await engine.dispose()


async def test_an_unwritten_table_is_counted_again_once_the_recount_interval_passed() -> None:
    # A clock only the test moves: with a 0.2-s interval and the real one, two looks more than 0.2 s apart (a
    # busy database or machine) counted again where the test said nothing had changed.
    now = [1000.0]
    engine = create_async_engine(database_url(BY_NAME["order"]), poolclass=NullPool)
    try:
        async with engine.connect() as conn:
            session = AsyncSession(bind=conn)
            await session.execute(text("SET search_path = pg_temp, public"))
            await session.execute(text("CREATE TEMP TABLE table_writes_probe (id int)"))
            await session.commit()
            writes = TableWrites("table_writes_probe", recount_every_s=60, min_interval_s=0, clock=lambda: now[0])
            assert await _changed(writes, session)
            assert not await _changed(writes, session)
            now[0] += 59
            assert not await _changed(writes, session), "not counted again before the interval"
            now[0] += 1
            assert await _changed(writes, session), "counted again after the interval, written or not"
            await session.close()
    finally:
        await engine.dispose()
