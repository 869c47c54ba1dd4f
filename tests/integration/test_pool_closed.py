"""A pooled connection the server closed is replaced at checkout, and a server that also closes the
replacement (a shutdown under way) is an outage (503), not SQLAlchemy's "This connection is closed" (500)."""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg
import pytest
from sqlalchemy import event, exc, text
from sqlalchemy.util import await_only

from apps.common.db import PoolSettings, alchemy_config
from apps.common.error_handlers import classify_database_error
from apps.common.topology import BY_NAME
from tests.support.db import connect

pytestmark = pytest.mark.usefixtures("stack")


async def _closed_by_the_server(admin: asyncpg.Connection, driver: Any) -> None:
    await admin.execute("SELECT pg_terminate_backend($1)", driver.get_server_pid())
    for _ in range(200):  # until the loop has read the server's FATAL and the close
        if driver.is_closed():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the server did not close the connection")


async def test_a_replacement_the_server_closes_at_once_is_a_503_not_a_500() -> None:
    """Regression (CI, PostgreSQL restarted under load): the checkout checked the connection it had just made;
    the server closing it too exhausted SQLAlchemy's two checkout attempts, and a write answered 500."""
    engine = alchemy_config(BY_NAME["catalog"], PoolSettings(size=1, max_overflow=0)).get_engine()
    admin = await connect("catalog")
    try:
        async with engine.connect() as conn:
            stale = (await conn.get_raw_connection()).driver_connection
            assert await conn.scalar(text("SELECT 1")) == 1
        await _closed_by_the_server(admin, stale)

        @event.listens_for(engine.sync_engine, "connect")
        def shut_down_under_way(dbapi_connection: Any, record: Any) -> None:
            await_only(_closed_by_the_server(admin, dbapi_connection.driver_connection))

        with pytest.raises(exc.DBAPIError) as raised:
            async with engine.connect() as conn:
                await conn.execute(text("SELECT 1"))
        assert classify_database_error(raised.value)[0] == 503, repr(raised.value)

        event.remove(engine.sync_engine, "connect", shut_down_under_way)
        async with engine.connect() as conn:  # the server is back: the next checkout works
            assert await conn.scalar(text("SELECT 1")) == 1
    finally:
        await admin.close()
        await engine.dispose()
