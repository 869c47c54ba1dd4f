"""Checkout's lifecycle jobs on rows dated in the past: idle carts abandoned, abandoned carts deleted after
30 days, checkout sessions 7 days after expiry; recent rows kept; nothing of it published."""

from __future__ import annotations

import datetime as dt
import secrets
import subprocess
import uuid
from collections.abc import AsyncIterator

import asyncpg
import pytest
from sqlalchemy.ext.asyncio import create_async_engine

from apps.checkout import lifecycle
from apps.checkout.settings import CheckoutSettings
from apps.common.topology import BY_NAME, database_url
from outbox.retention import in_batches
from tests.support.db import connect

pytestmark = pytest.mark.usefixtures("stack")

NOW = dt.datetime.now(dt.UTC)
SETTINGS = CheckoutSettings()  # the defaults: idle 7 days, abandoned 30 days, sessions 7 days past expiry


@pytest.fixture
async def db() -> AsyncIterator[asyncpg.Connection]:
    conn = await connect("checkout")
    try:
        yield conn
    finally:
        await conn.close()


async def cart(db: asyncpg.Connection, status: str, days_ago: float) -> uuid.UUID:
    cart_id = uuid.uuid4()
    changed = NOW - dt.timedelta(days=days_ago)
    await db.execute(
        """INSERT INTO cart_sessions (id, session_id, guest_token, status, created_at, updated_at, currency)
           VALUES ($1, $2, $3, $4, $5, $5, 'USD')""",
        cart_id,
        f"cs_{secrets.token_hex(16)}",
        secrets.token_hex(32),
        status,
        changed,
    )
    await db.execute(
        """INSERT INTO cart_items (cart_session_id, product_id, product_sku, product_name, quantity, unit_price,
                                   total_price) VALUES ($1, $2, 'SKU', 'Thing', 1, 1.00, 1.00)""",
        cart_id,
        uuid.uuid4(),
    )
    return cart_id


async def session(db: asyncpg.Connection, expired_days_ago: float) -> uuid.UUID:
    session_id = uuid.uuid4()
    await db.execute(
        """INSERT INTO checkout_sessions (id, session_token, customer_id, subtotal, total_amount, expires_at, currency)
           VALUES ($1, $2, $3, 1.00, 1.00, $4, 'USD')""",
        session_id,
        secrets.token_urlsafe(32),
        str(uuid.uuid4()),
        NOW - dt.timedelta(days=expired_days_ago),
    )
    return session_id


async def status_of(db: asyncpg.Connection, cart_id: uuid.UUID) -> str | None:
    value = await db.fetchval("SELECT status FROM cart_sessions WHERE id = $1", cart_id)
    return None if value is None else str(value)


async def test_lifecycle_abandons_idle_carts_and_deletes_what_is_past_its_keeping_time(db: asyncpg.Connection) -> None:
    idle, busy = await cart(db, "active", 8), await cart(db, "active", 1)
    old_abandoned, recent_abandoned = await cart(db, "abandoned", 31), await cart(db, "abandoned", 29)
    converted = await cart(db, "converted", 400)
    long_expired, recently_expired = await session(db, 8), await session(db, 6)

    engine = create_async_engine(database_url(BY_NAME["checkout"]))
    try:
        counts = await lifecycle.run(engine, NOW, SETTINGS)
    finally:
        await engine.dispose()

    assert counts["carts abandoned"] >= 1 and counts["abandoned carts deleted"] >= 1
    assert counts["checkout sessions deleted"] >= 1
    assert await status_of(db, idle) == "abandoned"
    assert await status_of(db, busy) == "active"
    assert await status_of(db, old_abandoned) is None
    assert await db.fetchval("SELECT count(*) FROM cart_items WHERE cart_session_id = $1", old_abandoned) == 0
    assert await status_of(db, recent_abandoned) == "abandoned"
    assert await status_of(db, converted) == "converted", "converted carts are history, not deleted"
    remaining = await db.fetch("SELECT id FROM checkout_sessions WHERE id = ANY($1)", [long_expired, recently_expired])
    assert {r["id"] for r in remaining} == {recently_expired}


async def test_a_cart_abandoned_today_gets_its_30_days(db: asyncpg.Connection) -> None:
    very_idle = await cart(db, "active", 45)
    engine = create_async_engine(database_url(BY_NAME["checkout"]))
    try:
        await lifecycle.run(engine, NOW, SETTINGS)
    finally:
        await engine.dispose()
    assert await status_of(db, very_idle) == "abandoned"


async def test_batches_stop_when_a_batch_is_short(db: asyncpg.Connection) -> None:
    carts = [await cart(db, "abandoned", 60) for _ in range(5)]
    engine = create_async_engine(database_url(BY_NAME["checkout"]))
    try:
        deleted = await in_batches(engine, lifecycle._DELETE_ABANDONED_CARTS, NOW - dt.timedelta(days=30), batch=2)
    finally:
        await engine.dispose()
    assert deleted >= 5
    assert await db.fetchval("SELECT count(*) FROM cart_sessions WHERE id = ANY($1)", carts) == 0


async def test_only_the_outbox_is_published_so_lifecycle_changes_never_reach_kafka(db: asyncpg.Connection) -> None:
    published = await db.fetch("SELECT tablename FROM pg_publication_tables WHERE pubname = 'checkout_outbox'")
    assert {r["tablename"] for r in published} == {"event_store", "debezium_heartbeat"}


def test_just_retention_runs_the_checkout_lifecycle() -> None:
    done = subprocess.run(["just", "retention"], capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr
    assert "checkout_db: carts abandoned" in done.stdout
