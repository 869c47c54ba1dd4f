"""The seed's ConnMaxIdleTime on a real PostgreSQL: a checkout replaces a pooled connection left idle, the
server closes one left idle twice as long, and neither is ever noticed by the caller, not even a checkout
at the very moment the idle time runs out."""

from __future__ import annotations

import asyncio
import random

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
            assert await conn.scalar(text("SELECT current_setting('idle_session_timeout')")) == "2s"
            first = await conn.scalar(text("SELECT pg_backend_pid()"))
        await asyncio.sleep(2.5)  # idle in the pool past the server's timeout: the server ends that session
        async with engine.connect() as conn:
            second = await conn.scalar(text("SELECT pg_backend_pid()"))
        assert second != first, "the idle connection was closed by the server and replaced"
    finally:
        await engine.dispose()


async def test_checkouts_at_the_edge_of_the_idle_time_never_fail() -> None:
    """Regression: with only the server's timeout, a checkout as it expired failed 10 times in 40 (CI's 503)."""
    idle_s = 0.3
    pool = PoolSettings(size=1, max_overflow=0, idle_timeout_s=idle_s)
    config = alchemy_config(BY_NAME["catalog"], pool)
    engine = config.get_engine()
    pids = set()
    try:
        for _ in range(25):
            async with engine.connect() as conn:
                pids.add(await conn.scalar(text("SELECT pg_backend_pid()")))
            await asyncio.sleep(idle_s + random.uniform(-0.01, 0.01))
    finally:
        await engine.dispose()
    assert len(pids) > 1, "connections idle for the idle time were replaced by the pool"
