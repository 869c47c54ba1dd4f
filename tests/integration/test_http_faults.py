"""HTTP answers at the edges: limits, the database refusing or restarting, and what the document promises.

Never a 500: a value past a limit is a 4xx naming the field, a database that cannot be reached a 503 with
``Retry-After`` naming it, and the first request after PostgreSQL is back succeeds (a pooled connection the
server closed is replaced at checkout).
"""

from __future__ import annotations

import asyncio
import collections
import threading
import time
import uuid
from collections.abc import AsyncIterator, Coroutine
from typing import Any

import httpx
import pytest
from litestar.testing import AsyncTestClient

from apps.catalog.app import create_app as create_catalog_app
from apps.common.topology import BY_NAME
from apps.order.app import create_app as create_order_app
from infra.stack import start_component, stop_component
from tests.support.http import api_client, authorized, create_customer, create_product, service_url
from tests.support.pg_fault import PgFaultProxy

pytestmark = pytest.mark.usefixtures("stack")


def field_keys(response: httpx.Response) -> list[str]:
    return [entry.get("key") for entry in response.json().get("extra", [])]


# --- money limits ---------------------------------------------------------------------------------


@pytest.fixture
async def order_client() -> AsyncIterator[AsyncTestClient[Any]]:
    async with authorized(AsyncTestClient(app=create_order_app())) as client:
        yield client


async def test_an_order_line_over_the_amount_limit_is_422_naming_its_quantity(
    order_client: AsyncTestClient[Any],
) -> None:
    """Regression: 2 x 99999999.99 overflowed NUMERIC(10,2) in the database and answered 500."""
    customer, product = await create_customer(), await create_product(price="99999999.99")
    body = {"customer_id": customer["id"], "items": [{"product_id": product["id"], "quantity": 2}]}

    response = await order_client.post("/api/orders", json=body)

    assert response.status_code == 422, response.text
    assert field_keys(response) == ["items[0].quantity"]


async def test_an_order_total_over_the_amount_limit_is_422_naming_the_items(
    order_client: AsyncTestClient[Any],
) -> None:
    customer = await create_customer()
    products = [await create_product(price="60000000.00") for _ in range(2)]
    body = {"customer_id": customer["id"], "items": [{"product_id": p["id"], "quantity": 1} for p in products]}

    response = await order_client.post("/api/orders", json=body)

    assert response.status_code == 422, response.text
    assert field_keys(response) == ["items"]


@pytest.mark.parametrize(
    ("price", "status"), [(99999999.99, 201), (99999999.994, 400), ("99999999.99", 201), ("100000000", 400)]
)
async def test_a_price_is_checked_against_the_limit_the_document_states(price: Any, status: int) -> None:
    body = {"sku": f"T-{uuid.uuid4().hex[:16]}", "name": "Limit", "price": price}
    async with api_client(base_url=service_url("catalog")) as http:
        response = await http.post("/api/products", json=body)
    assert response.status_code == status, response.text
    if status == 400:
        assert field_keys(response) == ["price"]


# --- the database refusing connections ------------------------------------------------------------


class ProxyThread:
    """PgFaultProxy on an event loop of its own: the test client runs the app synchronously on the test's
    loop, which could not serve the proxy meanwhile."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.proxy = PgFaultProxy()

    def __enter__(self) -> ProxyThread:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._call(self.proxy.__aexit__(None, None, None))
        self._call(self._drop())  # and wait until every pipe has closed its sockets
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=5)
        self.loop.close()

    def set_mode(self, mode: Any) -> None:
        self._call(self.proxy.set_mode(mode))

    def drop_connections(self) -> None:
        """Close every connection through the proxy, as a PostgreSQL restart does to a pool."""
        self._call(self._drop())

    async def _drop(self) -> None:
        pipes = list(self.proxy._pipes)
        for task in pipes:
            task.cancel()
        await asyncio.gather(*pipes, return_exceptions=True)

    def _call(self, coroutine: Coroutine[Any, Any, None]) -> None:
        asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout=10)


def catalog_app_through(proxied: ProxyThread) -> Any:
    spec = BY_NAME["catalog"]
    url = f"postgresql+asyncpg://{spec.role}:{spec.password()}@127.0.0.1:{proxied.proxy.port}/{spec.database}"
    with pytest.MonkeyPatch.context() as env:
        env.setenv("CATALOG_DATABASE_URL", url)
        return create_catalog_app()


@pytest.mark.parametrize("mode", ["refuse", "starting_up", "too_many"])
async def test_a_database_refusing_connections_is_a_503_with_retry_after(mode: Any) -> None:
    """asyncpg's CannotConnectNowError (57P03), TooManyConnectionsError (53300) and a refused connection
    were 500s; each is an outage the client should retry."""
    with ProxyThread() as proxied:
        proxied.set_mode(mode)
        async with authorized(AsyncTestClient(app=catalog_app_through(proxied))) as client:
            started = time.monotonic()
            down = await client.get(f"/api/products/{uuid.uuid4()}")
            answered_in = time.monotonic() - started
            proxied.set_mode("forward")
            back = await client.get(f"/api/products/{uuid.uuid4()}")

    assert down.status_code == 503, down.text
    assert answered_in < 5  # refused at once, not a timeout
    assert int(down.headers["retry-after"]) > 0
    assert down.json()["extra"] == [{"dependency": "database"}]
    assert back.status_code == 404, back.text


async def test_pooled_connections_a_restart_dropped_are_replaced_on_first_use() -> None:
    """Regression: after a PostgreSQL restart each stale pooled connection failed its next request with a
    503; the pool now replaces a connection the server closed before handing it out."""
    with ProxyThread() as proxied:
        proxied.set_mode("forward")
        async with authorized(AsyncTestClient(app=catalog_app_through(proxied))) as client:
            before = [await client.get(f"/api/products/{uuid.uuid4()}") for _ in range(3)]
            proxied.drop_connections()
            after = await client.get(f"/api/products/{uuid.uuid4()}")

    assert [r.status_code for r in before] == [404, 404, 404]
    assert after.status_code == 404, after.text


# --- what the document promises ---------------------------------------------------------------------


async def test_options_lists_every_method_of_the_path() -> None:
    async with api_client(base_url=service_url("catalog")) as http:
        collection = await http.options("/api/products")
        item = await http.options(f"/api/products/{uuid.uuid4()}")
    assert collection.headers["allow"] == "GET, OPTIONS, POST"
    assert item.headers["allow"] == "DELETE, GET, OPTIONS, PATCH"


async def test_every_operation_documents_its_errors_and_strict_bodies_refuse_unknown_fields() -> None:
    async with api_client(base_url=service_url("catalog")) as http:
        document = (await http.get("/schema/openapi.json")).json()
    schemas = document["components"]["schemas"]
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            documented = set(operation["responses"])
            assert {"400", "503"} <= documented, (method, path)
            assert ("404" in documented) == ("{" in path), (method, path)
            if method in {"post", "patch", "put"}:
                assert {"409", "413", "422"} <= documented, (method, path)
            error = operation["responses"]["503"]["content"]["application/json"]["schema"]
            assert error == {"$ref": "#/components/schemas/ErrorBody"}
    for name in ("ProductCreate", "ProductUpdate", "ValidateProducts"):
        assert schemas[name]["additionalProperties"] is False, name


# --- PostgreSQL restarted under load ----------------------------------------------------------------


class Load:
    """Reads and writes on catalog and order in a loop; every answer is counted by (operation, status)."""

    def __init__(self, customer: dict[str, Any], product: dict[str, Any]) -> None:
        self.customer, self.product = customer, product
        self.statuses: collections.Counter[tuple[str, int]] = collections.Counter()
        self.missing_retry_after = 0
        self.last_failure_at = 0.0
        self.stop = asyncio.Event()

    async def run(self, operation: str) -> None:
        async with api_client(timeout=15) as http:
            while not self.stop.is_set():
                try:
                    response = await self.call(http, operation)
                except httpx.TransportError:
                    self.statuses[(operation, 0)] += 1
                    self.last_failure_at = time.monotonic()
                    continue
                self.statuses[(operation, response.status_code)] += 1
                if response.status_code >= 500:
                    self.last_failure_at = time.monotonic()
                    if response.status_code == 503 and not response.headers.get("retry-after"):
                        self.missing_retry_after += 1
                    await asyncio.sleep(0.05)

    async def call(self, http: httpx.AsyncClient, operation: str) -> httpx.Response:
        catalog, order = service_url("catalog"), service_url("order")
        if operation == "catalog read":
            return await http.get(f"{catalog}/api/products/{self.product['id']}")
        if operation == "catalog write":
            return await http.patch(f"{catalog}/api/products/{self.product['id']}", json={"name": uuid.uuid4().hex})
        if operation == "order write":
            items = [{"product_id": self.product["id"], "quantity": 1}]
            return await http.post(f"{order}/api/orders", json={"customer_id": self.customer["id"], "items": items})
        return await http.get(f"{order}/api/orders", params={"customer_id": self.customer["id"], "limit": 1})


@pytest.mark.slow
async def test_postgres_restart_under_load_never_answers_500() -> None:
    load = Load(await create_customer(), await create_product())
    operations = ["catalog read", "catalog write", "order write", "order read"]
    workers = [asyncio.create_task(load.run(op)) for op in operations]
    try:
        await asyncio.sleep(2)
        down_at = time.monotonic()
        await asyncio.to_thread(stop_component, "postgres")
        stopped_at = time.monotonic()
        await asyncio.sleep(3)
        await asyncio.to_thread(start_component, "postgres")
        ready_at = time.monotonic()
        first = await _first_requests_after_ready(load)
        await _until_every_operation_succeeds(load, since=ready_at, within=15)
        await asyncio.sleep(1)
    finally:
        load.stop.set()
        await asyncio.gather(*workers)

    recovered_s = max(load.last_failure_at - ready_at, 0.0)
    print(
        f"\nPostgreSQL stop {stopped_at - down_at:.1f}s, start {ready_at - stopped_at - 3:.1f}s, "
        f"down {ready_at - down_at:.1f}s; answers {dict(sorted(load.statuses.items()))}; "
        f"first requests after ready {first}; last failure {recovered_s:.2f}s after ready"
    )
    assert not [key for key in load.statuses if (key[1] >= 500 and key[1] != 503) or key[1] == 0], load.statuses
    assert load.missing_retry_after == 0
    assert any(status == 503 for _, status in load.statuses), "the restart was not seen by any request"
    assert all(200 <= status < 300 for status in first.values()), first


async def _first_requests_after_ready(load: Load) -> dict[str, int]:
    """One request per operation on a fresh client the moment PostgreSQL is ready: pooled connections
    are dead, and the checkout must replace them rather than answer 503."""
    async with api_client(timeout=15) as http:
        return {op: (await load.call(http, op)).status_code for op in ("catalog read", "order read")}


async def _until_every_operation_succeeds(load: Load, *, since: float, within: float) -> None:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if time.monotonic() - max(load.last_failure_at, since) > 2:
            return
        await asyncio.sleep(0.2)
    raise AssertionError(f"requests still failing {within}s after PostgreSQL was ready: {load.statuses}")
