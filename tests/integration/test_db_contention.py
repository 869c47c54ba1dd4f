"""PostgreSQL's transient refusals, provoked for real, answer 503 with ``Retry-After`` and leave nothing written.

A deadlock (40P01), a serialization failure (40001), a lock timeout (55P03) and a write refused as read-only
(25006, a failover's standby) were 500s; an administrator's termination (57P01) and a role out of connection
slots (53300) were already 503s and are checked here the same way. Each test drives the catalog app in
process (its own engine on the real catalog database, with the session settings the case needs: a
lock_timeout, SERIALIZABLE, read-only) while a test connection of the catalog's own role holds the locks.
Only the test's own product's rows are locked; nothing else of the shared stack waits.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass
from functools import partial
from typing import Any

import asyncpg
import httpx
import pytest
from litestar.testing import TestClient
from sqlalchemy import event

from apps.catalog.app import create_app as create_catalog_app
from apps.common.db import SESSION_CONFIG
from apps.common.read_routing import replica_url
from apps.common.topology import BY_NAME, pg_host, pg_port
from infra.postgres import psql_admin
from tests.support.db import db_fixture
from tests.support.http import auth_headers, create_product

pytestmark = pytest.mark.usefixtures("stack")


@dataclass
class InProcess:
    """The app's test client, whose requests run in a thread: Litestar's test clients block the calling
    event loop until the app answers, and the test's own connection must act while a request waits."""

    client: TestClient[Any]
    application_name: str  # of each of its connections
    # A thread of its own: the loop's default executor may be taken by the session's fixtures.
    thread: ThreadPoolExecutor

    async def patch(self, path: str, **kwargs: Any) -> httpx.Response:
        return await self._call(partial(self.client.patch, path, **kwargs))

    async def post(self, path: str, **kwargs: Any) -> httpx.Response:
        return await self._call(partial(self.client.post, path, **kwargs))

    async def get(self, path: str, **kwargs: Any) -> httpx.Response:
        return await self._call(partial(self.client.get, path, **kwargs))

    async def _call(self, request: Callable[[], httpx.Response]) -> httpx.Response:
        return await asyncio.get_running_loop().run_in_executor(self.thread, request)


@asynccontextmanager
async def catalog(settings: dict[str, str] | None = None, url: str | None = None) -> AsyncIterator[InProcess]:
    """The catalog app in process, each of its connections opened with ``settings`` (PostgreSQL session
    settings) and an application_name of its own, so the test can find its backend."""
    application_name = f"contention-{uuid.uuid4().hex[:12]}"
    with pytest.MonkeyPatch.context() as env:
        if url is not None:
            env.setenv("CATALOG_DATABASE_URL", url)
        app = create_catalog_app()
    engine = app.state[SESSION_CONFIG].get_engine()

    @event.listens_for(engine.sync_engine, "do_connect")
    def with_settings(dialect: Any, record: Any, cargs: Any, cparams: dict[str, Any]) -> None:
        server_settings = {**cparams.get("server_settings", {}), **(settings or {})}
        cparams["server_settings"] = {**server_settings, "application_name": application_name}

    with TestClient(app=app) as client, ThreadPoolExecutor(1) as thread:
        client.headers.update(auth_headers("admin"))
        yield InProcess(client, application_name, thread)


async def backend_waiting_on_a_lock(conn: asyncpg.Connection, application_name: str, within: float = 10) -> int:
    """The pid of the app's backend once it waits on a lock the test holds."""
    deadline = asyncio.get_running_loop().time() + within
    while asyncio.get_running_loop().time() < deadline:
        # Inside a transaction the activity view is read once and cached: ask for a fresh snapshot each time.
        await conn.execute("SELECT pg_stat_clear_snapshot()")
        pid = await conn.fetchval(
            "SELECT pid FROM pg_stat_activity WHERE application_name = $1 AND wait_event_type = 'Lock'",
            application_name,
        )
        if pid is not None:
            return int(pid)
        await asyncio.sleep(0.01)

    raise AssertionError(f"the app's backend never waited on a lock within {within}s")


def assert_retry_later(response: httpx.Response, retry_after: str) -> None:
    assert response.status_code == 503, response.text
    assert response.headers["retry-after"] == retry_after
    assert response.json()["extra"] == [{"dependency": "database"}]
    assert "SELECT" not in response.text and "UPDATE" not in response.text  # no SQL in the answer


async def product_state(conn: asyncpg.Connection, product_id: uuid.UUID) -> tuple[Any, ...]:
    """What a PATCH would change: the row, its outbox counter and its events."""
    row = await conn.fetchrow("SELECT name, updated_at FROM products WHERE id = $1", product_id)
    version = await conn.fetchval("SELECT version FROM outbox_aggregate_version WHERE aggregate_id = $1", product_id)
    events = await conn.fetchval("SELECT count(*) FROM event_store WHERE aggregate_id = $1", product_id)
    return (tuple(row), version, events)


@pytest.fixture
async def product() -> uuid.UUID:
    return uuid.UUID((await create_product())["id"])


# The test's own connection (the catalog's role), whose open transaction holds the locks.
holder = db_fixture("catalog")


async def test_a_lock_timeout_is_a_503_and_nothing_is_written(holder: asyncpg.Connection, product: uuid.UUID) -> None:
    """A lock_timeout (an operator's, on the role) runs out while the test holds the product's row."""
    before = await product_state(holder, product)
    async with catalog({"lock_timeout": "300ms"}) as app:
        async with holder.transaction():
            await holder.execute("SELECT 1 FROM products WHERE id = $1 FOR UPDATE", product)
            response = await app.patch(f"/api/products/{product}", json={"name": "never written"})
            during = await product_state(holder, product)
        again = await app.patch(f"/api/products/{product}", json={"name": "written"})
    assert_retry_later(response, "1")
    assert during == before
    assert again.status_code == 200, again.text  # the same request passes once the lock is gone
    (name, _), version, events = await product_state(holder, product)
    assert (name, version, events) == ("written", before[1] + 1, before[2] + 1)  # one event, the retry's


async def test_a_deadlock_is_a_503_and_nothing_is_written(holder: asyncpg.Connection, product: uuid.UUID) -> None:
    """The PATCH locks the product, then its outbox counter (outbox/writer.py); the test holds the counter,
    then asks for the product. The app's backend waited first, so its deadlock_timeout (1 s) runs out first
    and PostgreSQL aborts it, not the test."""
    before = await product_state(holder, product)
    async with catalog() as app, holder.transaction():
        await holder.execute("SELECT 1 FROM outbox_aggregate_version WHERE aggregate_id = $1 FOR UPDATE", product)
        patch = asyncio.create_task(app.patch(f"/api/products/{product}", json={"name": "never written"}))
        await backend_waiting_on_a_lock(holder, app.application_name)
        await holder.execute("SELECT 1 FROM products WHERE id = $1 FOR UPDATE", product)  # closes the cycle
        response = await patch
    assert_retry_later(response, "1")
    assert await product_state(holder, product) == before


async def test_a_serialization_failure_is_a_503_and_nothing_is_written(
    holder: asyncpg.Connection, product: uuid.UUID
) -> None:
    """Under SERIALIZABLE (an operator's default_transaction_isolation), the PATCH's locking read waits for
    a concurrent update of the row, which then commits: PostgreSQL refuses the PATCH's transaction."""
    before = await product_state(holder, product)
    async with catalog({"default_transaction_isolation": "serializable"}) as app:
        async with holder.transaction():
            await holder.execute("UPDATE products SET name = name WHERE id = $1", product)
            patch = asyncio.create_task(app.patch(f"/api/products/{product}", json={"name": "never written"}))
            await backend_waiting_on_a_lock(holder, app.application_name)
        response = await patch
        during = await product_state(holder, product)
        again = await app.patch(f"/api/products/{product}", json={"name": "written"})
    assert_retry_later(response, "1")
    assert during == before
    assert again.status_code == 200, again.text
    (name, _), version, events = await product_state(holder, product)
    assert (name, version, events) == ("written", before[1] + 1, before[2] + 1)


async def test_a_write_refused_as_read_only_is_a_503_and_reads_go_on(
    holder: asyncpg.Connection, product: uuid.UUID
) -> None:
    """A server that takes no writes (default_transaction_read_only, as a standby before its promotion)."""
    sku = f"T-{uuid.uuid4().hex[:16].upper()}"
    before = await product_state(holder, product)
    async with catalog({"default_transaction_read_only": "on"}) as app:
        patched = await app.patch(f"/api/products/{product}", json={"name": "never written"})
        created = await app.post("/api/products", json={"sku": sku, "name": "never written", "price": "1.00"})
        read = await app.get(f"/api/products/{product}")
    assert_retry_later(patched, "5")
    assert_retry_later(created, "5")
    assert read.status_code == 200, read.text
    assert await product_state(holder, product) == before
    assert await holder.fetchval("SELECT count(*) FROM products WHERE sku = $1", sku) == 0


async def test_a_write_sent_to_a_standby_is_a_503(holder: asyncpg.Connection, product: uuid.UUID) -> None:
    """The failover case itself: the app pointed at the hot standby (the stack's read replica), as a primary
    address moved to a standby promoted late would point it; PostgreSQL refuses the write in recovery."""
    before = await product_state(holder, product)
    async with catalog(url=replica_url(BY_NAME["catalog"])) as app:
        read = await eventually_found(app, product)
        patched = await app.patch(f"/api/products/{product}", json={"name": "never written"})
    assert read.status_code == 200, read.text
    assert_retry_later(patched, "5")
    assert await product_state(holder, product) == before


async def eventually_found(app: InProcess, product: uuid.UUID, within: float = 10) -> httpx.Response:
    """The product as the standby reads it, once it has replayed its creation."""
    deadline = asyncio.get_running_loop().time() + within
    while (read := await app.get(f"/api/products/{product}")).status_code == 404:
        if asyncio.get_running_loop().time() > deadline:
            break
        await asyncio.sleep(0.1)
    return read


async def test_an_administrators_termination_is_a_503_and_the_next_request_passes(
    holder: asyncpg.Connection, product: uuid.UUID
) -> None:
    """57P01 (pg_terminate_backend) mid-statement: already a 503 (class 57), checked for real."""
    before = await product_state(holder, product)
    async with catalog() as app:
        async with holder.transaction():
            await holder.execute("SELECT 1 FROM products WHERE id = $1 FOR UPDATE", product)
            patch = asyncio.create_task(app.patch(f"/api/products/{product}", json={"name": "never written"}))
            pid = await backend_waiting_on_a_lock(holder, app.application_name)
            assert await holder.fetchval("SELECT pg_terminate_backend($1)", pid)
            response = await patch
        assert await product_state(holder, product) == before
        after = await app.get(f"/api/products/{product}")
    assert_retry_later(response, "5")
    assert after.status_code == 200, after.text


async def test_a_role_out_of_connection_slots_is_a_503() -> None:
    """53300 ("too many connections for role"): a role of the test's with CONNECTION LIMIT 0."""
    role, password = f"contention_{uuid.uuid4().hex[:12]}", uuid.uuid4().hex
    await asyncio.to_thread(psql_admin, f"CREATE ROLE {role} LOGIN PASSWORD '{password}' CONNECTION LIMIT 0")
    try:
        url = f"postgresql+asyncpg://{role}:{password}@{pg_host()}:{pg_port()}/{BY_NAME['catalog'].database}"
        async with catalog(url=url) as app:
            response = await app.get(f"/api/products/{uuid.uuid4()}")
    finally:
        await asyncio.to_thread(psql_admin, f"DROP ROLE IF EXISTS {role}")
    assert_retry_later(response, "5")
