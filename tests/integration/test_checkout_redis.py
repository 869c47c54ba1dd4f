"""Redis as the checkout's cache and guest-session store, with PostgreSQL as the truth: flushed, stopped,
back again. Nothing else in the stack uses Redis, so flushing and stopping it disturbs no other test."""

from __future__ import annotations

import asyncio
import datetime as dt
import re
import subprocess
import uuid
from collections.abc import AsyncIterator
from decimal import Decimal

import pytest
from litestar.testing import AsyncTestClient

from apps.checkout.app import create_app
from apps.checkout.cache import CachedCart, CartCache, cart_key, guest_key
from apps.checkout.rules import hash_token
from apps.checkout.schemas import CartOut
from apps.common.redis_store import RedisStore, create_redis_client
from tests.support.checkout import Client, add, checkout_body, execute, guest_cart
from tests.support.http import authorized, create_product

pytestmark = pytest.mark.usefixtures("stack")


@pytest.fixture
async def client() -> AsyncIterator[Client]:
    async with authorized(AsyncTestClient(app=create_app())) as test_client:
        yield test_client


@pytest.fixture
async def guest() -> AsyncIterator[Client]:
    """A caller without a bearer token: staff and admin read a guest's cart without its token."""
    async with AsyncTestClient(app=create_app()) as test_client:
        yield test_client


@pytest.fixture
async def redis() -> AsyncIterator[RedisStore]:
    store = RedisStore(create_redis_client(timeout_s=2.0), cooldown_s=0)
    yield store
    await store.close()


async def cache_reads(client: Client) -> dict[str, float]:
    text = (await client.get("/metrics")).text
    found = re.findall(r'^checkout_cart_cache_total\{outcome="(\w+)"\} ([0-9.e+]+)$', text, re.MULTILINE)
    return {outcome: float(value) for outcome, value in found}


def cart_out(cart_id: uuid.UUID) -> CartOut:
    at = dt.datetime.now(dt.UTC)
    return CartOut(
        id=cart_id,
        session_id="cs_x",
        customer_id=None,
        status="active",
        items=[],
        subtotal=Decimal("0.00"),
        currency=None,
        expires_at=None,
        created_at=at,
        updated_at=at,
    )


async def reconnected(store: RedisStore) -> None:
    """A store's pooled connection died with a restarted Redis: a new one, as its next request makes."""
    for _ in range(40):
        if await store.ping() is None:
            return
        await asyncio.sleep(0.25)
    raise AssertionError(f"Redis did not come back: {store.last_error}")


def stack_command(*args: str) -> None:
    subprocess.run(["just", *args], check=True, capture_output=True, timeout=120)


async def test_a_change_invalidates_the_cached_view(client: Client) -> None:
    cart, headers = await guest_cart(client)
    product = await create_product("3.00")
    await add(client, cart, headers, product, 1)
    url = f"/api/carts/{cart['id']}"
    before = await cache_reads(client)
    first, second = (await client.get(url, headers=headers)).json(), (await client.get(url, headers=headers)).json()
    after = await cache_reads(client)
    assert first == second
    assert after.get("miss", 0) - before.get("miss", 0) == 1 and after.get("hit", 0) - before.get("hit", 0) == 1
    await add(client, cart, headers, product, 4)
    assert [i["quantity"] for i in (await client.get(url, headers=headers)).json()["items"]] == [5]


async def test_a_guest_session_slides_in_redis(client: Client, redis: RedisStore) -> None:
    cart, headers = await guest_cart(client)
    key = guest_key(hash_token(headers["X-Guest-Token"]))
    assert await redis.client.get(key) == cart["id"].encode()
    await redis.client.expire(key, 60)
    assert (await client.get(f"/api/carts/{cart['id']}", headers=headers)).status_code == 200
    assert await redis.client.ttl(key) > 6 * 24 * 3600, "every use pushes the session's expiry out"
    await redis.client.expire(key, 60)
    async with authorized(AsyncTestClient(app=create_app()), "staff") as support:
        assert (await support.get(f"/api/carts/{cart['id']}")).status_code == 200
    assert await redis.client.ttl(key) <= 60, "support's read (no token) is not the guest's use"


async def test_flushall_mid_session_loses_nothing(client: Client, guest: Client, redis: RedisStore) -> None:
    cart, headers = await guest_cart(client)
    shirt, mug = await create_product("9.00"), await create_product("2.00")
    await add(client, cart, headers, shirt, 2)
    url = f"/api/carts/{cart['id']}"
    before = (await client.get(url, headers=headers)).json()
    await redis.client.flushall()
    assert (await client.get(url, headers=headers)).json() == before
    assert await redis.client.exists(guest_key(hash_token(headers["X-Guest-Token"]))), "the session is relearnt"
    await redis.client.flushall()
    await add(client, cart, headers, mug, 1)
    session = await client.post("/api/checkout", json=checkout_body(cart["id"]), headers=headers)
    assert session.status_code == 201 and session.json()["subtotal"] == "20.00"
    assert (await guest.get(url)).status_code == 403, "a flushed cache opens no guest cart"


async def test_with_redis_stopped_carts_work_from_postgres_and_ready_says_degraded(
    client: Client, guest: Client
) -> None:
    product = await create_product("6.00")
    stack_command("stop", "redis")
    try:
        ready = await client.get("/ready")
        assert ready.status_code == 200, ready.text
        assert ready.json()["status"] == "degraded" and ready.json()["database"] == "ok"
        assert ready.json()["redis"] != "ok"
        cart, headers = await guest_cart(client)
        await add(client, cart, headers, product, 2)
        url = f"/api/carts/{cart['id']}"
        view = await client.get(url, headers=headers)
        assert view.status_code == 200 and view.json()["subtotal"] == "12.00"
        assert (await guest.get(url)).status_code == 403, "the token is still checked, against PostgreSQL"
        session = await client.post("/api/checkout", json=checkout_body(cart["id"]), headers=headers)
        assert session.status_code == 201, session.text
    finally:
        stack_command("start", "redis")
    ready = await client.get("/ready")
    assert ready.json() == {"status": "ready", "database": "ok", "redis": "ok", "replica": "ok"}
    before = await cache_reads(client)
    for _ in range(3):
        assert (await client.get(url, headers=headers)).status_code == 200
    after = await cache_reads(client)
    assert after["hit"] - before.get("hit", 0) == 2, "Redis back: the cache is used again"


async def test_a_reader_that_raced_a_writer_cannot_store_a_stale_view(redis: RedisStore) -> None:
    cache = CartCache(redis, view_ttl=dt.timedelta(minutes=5), guest_ttl=dt.timedelta(days=7))
    cart_id = uuid.uuid4()
    old = cart_out(cart_id)
    read = await cache.read(cart_id, None)  # a reader misses and goes to the database ...
    await cache.invalidate(cart_id)  # ... a writer commits and invalidates ...
    await cache.fill(cart_id, read.generation, CachedCart(view=old, guest_token_hash=None, guest_expires_at=None))
    assert (await cache.read(cart_id, None)).cached is None, "the stale view was refused"
    fresh = await cache.read(cart_id, None)
    await cache.fill(cart_id, fresh.generation, CachedCart(view=old, guest_token_hash=None, guest_expires_at=None))
    assert (await cache.read(cart_id, None)).cached is not None
    assert await redis.client.ttl(cart_key(cart_id)) > 0


async def test_a_fill_read_before_a_redis_restart_is_refused(redis: RedisStore) -> None:
    """A slow reader's fill after Redis restarted (empty: it keeps nothing on disk) stores nothing: the
    generation it read died with Redis, and the change it missed was invalidated before the restart."""
    view_ttl, guest_ttl = dt.timedelta(minutes=5), dt.timedelta(days=7)
    reader_store = RedisStore(create_redis_client(timeout_s=2.0), cooldown_s=0)
    reader, writer = CartCache(reader_store, view_ttl, guest_ttl), CartCache(redis, view_ttl, guest_ttl)
    cart_id = uuid.uuid4()
    try:
        read = await reader.read(cart_id, None)  # a reader misses and goes to the database ...
        await writer.invalidate(cart_id)  # ... a writer commits and invalidates ...
        stack_command("restart", "redis")  # ... Redis restarts ...
        await reconnected(reader_store)
        stale = CachedCart(view=cart_out(cart_id), guest_token_hash=None, guest_expires_at=None)
        await reader.fill(cart_id, read.generation, stale)  # ... and the reader fills late
        assert reader_store.last_error is None, "the fill reached the new Redis"
        await reconnected(redis)
        assert not await redis.client.hexists(cart_key(cart_id), "view"), "the view from before the change was refused"
    finally:
        await reader_store.close()


async def test_an_expired_guest_session_opens_nothing_and_a_live_one_in_redis_still_does(
    client: Client, redis: RedisStore
) -> None:
    cart, headers = await guest_cart(client)
    product = await create_product("1.00")
    await execute(
        "UPDATE cart_sessions SET expires_at = now() - interval '1 minute' WHERE id = $1", uuid.UUID(cart["id"])
    )
    # Redis still has the session (reads slid it): a change is allowed, and slides PostgreSQL's expiry too.
    await add(client, cart, headers, product, 1)
    await execute(
        "UPDATE cart_sessions SET expires_at = now() - interval '1 minute' WHERE id = $1", uuid.UUID(cart["id"])
    )
    await redis.client.flushall()
    url = f"/api/carts/{cart['id']}"
    for response in (
        await client.get(url, headers=headers),
        await client.post(f"{url}/items", json={"product_id": product["id"], "quantity": 1}, headers=headers),
    ):
        assert response.status_code == 403 and "expired" in response.text, response.text
