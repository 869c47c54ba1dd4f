"""The order placement's statements on asyncpg's own connection (apps/order/driver.py): the same rows, the
same errors as through the session, and the session's own path inside a transaction."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest
from sqlalchemy import exc, text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from apps.common.db import litestar_alchemy_config, use_autocommit
from apps.common.error_handlers import classify_database_error
from apps.common.topology import BY_NAME
from apps.order.driver import DriverStatement

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
