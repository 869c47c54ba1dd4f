"""The seed's ConnMaxIdleTime on a real PostgreSQL: the server closes a pooled connection left idle, and the
next checkout sees it closed and replaces it without the caller noticing."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import text

from apps.common.db import PoolSettings, alchemy_config
from apps.common.topology import BY_NAME

pytestmark = pytest.mark.usefixtures("stack")


async def test_an_idle_pooled_connection_is_closed_by_the_server_and_replaced_on_next_use() -> None:
    config = alchemy_config(BY_NAME["catalog"], PoolSettings(size=1, max_overflow=0, idle_timeout_s=1))
    engine = config.get_engine()
    try:
        async with engine.connect() as conn:
            assert await conn.scalar(text("SELECT current_setting('idle_session_timeout')")) == "1s"
            first = await conn.scalar(text("SELECT pg_backend_pid()"))
        await asyncio.sleep(2.5)  # idle in the pool past the timeout: the server ends that session
        async with engine.connect() as conn:
            second = await conn.scalar(text("SELECT pg_backend_pid()"))
        assert second != first, "the idle connection was closed by the server and replaced"
    finally:
        await engine.dispose()
