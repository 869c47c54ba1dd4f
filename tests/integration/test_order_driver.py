"""The order placement's statements on asyncpg's own connection (apps/order/driver.py): the same rows, the
same errors as through the session, on the session's connection in autocommit or on one checked out of its
pool, and the session's own path inside a transaction."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest
from sqlalchemy import exc, text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from apps.common.db import PoolSettings, alchemy_config, litestar_alchemy_config, use_autocommit
from apps.common.error_handlers import classify_database_error
from apps.common.errors import UnknownReference
from apps.common.topology import BY_NAME
from apps.order.driver import DriverStatement, pooled_connection
from tests.support.db import fetch
from tests.support.orders import eventually

pytestmark = pytest.mark.usefixtures("stack")

REMEMBER = DriverStatement(
    text(
        "INSERT INTO order_known_customers (customer_id) VALUES (:customer_id) "
        "RETURNING customer_id, CAST(:n AS int) AS n"
    )
)
DIVIDE = DriverStatement(text("SELECT CAST(:n AS int) / 0 AS q"))
FORGET = text("DELETE FROM order_known_customers WHERE customer_id = :customer_id")


@pytest.fixture
async def engine() -> AsyncIterator[AsyncEngine]:
    engine = litestar_alchemy_config(BY_NAME["order"]).get_engine()
    yield engine
    await engine.dispose()


async def test_in_autocommit_rows_and_errors_are_the_sessions(engine: AsyncEngine) -> None:
    customer_id = str(uuid.uuid4())
    async with AsyncSession(engine) as session:
        await use_autocommit(session)
        try:
            rows = await REMEMBER.fetch(session, {"customer_id": customer_id, "n": 7})
            assert [(row["customer_id"], row["n"]) for row in rows] == [(customer_id, 7)]
            with pytest.raises(exc.IntegrityError) as duplicate:  # as the session raised it: a 409
                await REMEMBER.fetch(session, {"customer_id": customer_id, "n": 8})
            assert classify_database_error(duplicate.value)[0] == 409
            with pytest.raises(Exception) as refused:  # a value the database refused: a 400, never a 500
                await DIVIDE.fetch(session, {"n": 1})
            assert classify_database_error(refused.value)[0] == 400
        finally:
            await session.execute(FORGET, {"customer_id": customer_id})


async def test_in_a_transaction_the_session_sends_it_and_rolls_it_back(engine: AsyncEngine) -> None:
    customer_id = str(uuid.uuid4())
    async with AsyncSession(engine) as session:
        rows = await REMEMBER.fetch(session, {"customer_id": customer_id, "n": 1})
        assert [row["customer_id"] for row in rows] == [customer_id]
        await session.rollback()
        left = await session.execute(
            text("SELECT count(*) FROM order_known_customers WHERE customer_id = :c"), {"c": customer_id}
        )
        assert left.scalar_one() == 0


async def test_on_a_pooled_connection_the_session_never_connects_and_it_goes_back(engine: AsyncEngine) -> None:
    customer_id = str(uuid.uuid4())
    pool = engine.sync_engine.pool
    async with AsyncSession(engine) as session:
        try:
            async with pooled_connection(session):
                assert pool.checkedout() == 1  # type: ignore[attr-defined]
                rows = await REMEMBER.fetch(session, {"customer_id": customer_id, "n": 3})
                assert [(row["customer_id"], row["n"]) for row in rows] == [(customer_id, 3)]
                with pytest.raises(exc.IntegrityError) as duplicate:
                    await REMEMBER.fetch(session, {"customer_id": customer_id, "n": 4})
                assert classify_database_error(duplicate.value)[0] == 409
                with pytest.raises(Exception) as refused:
                    await DIVIDE.fetch(session, {"n": 1})
                assert classify_database_error(refused.value)[0] == 400
                assert not session.in_transaction()  # the session sent nothing
            assert pool.checkedout() == 0  # type: ignore[attr-defined]
            # Each statement committed on its own: another session sees the row.
            async with AsyncSession(engine) as other:
                seen = await other.execute(
                    text("SELECT count(*) FROM order_known_customers WHERE customer_id = :c"), {"c": customer_id}
                )
                assert seen.scalar_one() == 1
        finally:
            await session.execute(FORGET, {"customer_id": customer_id})
            await session.commit()


async def test_a_missing_table_on_a_pooled_connection_is_the_sessions_programming_error(engine: AsyncEngine) -> None:
    missing = DriverStatement(text("SELECT 1 FROM no_such_table_here WHERE 1 = :n"))
    async with AsyncSession(engine) as session, pooled_connection(session):
        with pytest.raises(exc.ProgrammingError) as gone:  # the read models' fallback catches this one
            await missing.fetch(session, {"n": 1})
        assert getattr(gone.value.orig, "sqlstate", None) == "42P01"


SLEEP = DriverStatement(text("SELECT pg_sleep(CAST(:s AS float)) IS NULL AS slept"))
PID = DriverStatement(text("SELECT pg_backend_pid() AS pid, CAST(:n AS int) AS n"))


async def _backend_pid(engine: AsyncEngine) -> int:
    async with AsyncSession(engine) as session, pooled_connection(session):
        return int((await PID.fetch(session, {"n": 1}))[0]["pid"])


async def test_a_connection_cut_off_mid_statement_is_discarded_and_the_next_checkout_works() -> None:
    """Regression (CI, PostgreSQL killed under load): a pooled connection given back mid-operation failed
    the next order with InternalClientError ("another operation is in progress"), a 500."""
    engine = alchemy_config(BY_NAME["order"], PoolSettings(size=1, max_overflow=0)).get_engine()
    try:
        first = await _backend_pid(engine)
        assert await _backend_pid(engine) == first  # one connection, reused

        async def slow() -> None:
            async with AsyncSession(engine) as session, pooled_connection(session):
                await SLEEP.fetch(session, {"s": 5})

        async def running() -> bool:
            # A fixed 0.3 s was assumed: cancelled before its statement reached the server (a busy machine),
            # the connection had nothing to discard.
            query = "SELECT 1 FROM pg_stat_activity WHERE pid = $1 AND wait_event = 'PgSleep'"
            return bool(await fetch("order", query, first))

        cut_off = asyncio.create_task(slow())
        await eventually(running, within=30, what="the statement running")
        cut_off.cancel()
        with pytest.raises(asyncio.CancelledError):
            await cut_off
        assert await _backend_pid(engine) != first  # discarded, a new connection answers at once

        # Our own refusal between statements leaves the connection as it was: it goes back and is reused.
        kept = await _backend_pid(engine)
        with pytest.raises(UnknownReference):
            async with AsyncSession(engine) as session, pooled_connection(session):
                await PID.fetch(session, {"n": 1})
                raise UnknownReference("customer_id", "unknown customer")
        assert await _backend_pid(engine) == kept
    finally:
        await engine.dispose()
