"""The catalog's events leave only through the outbox: what commits reaches Kafka, what fails does not exist."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator

import asyncpg
import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from apps.catalog.app import create_app
from apps.common.topology import topic_for
from tests.support.db import connect, outbox_fails_at_commit
from tests.support.http import authorized
from tests.support.kafka import Received, TopicTail

pytestmark = pytest.mark.usefixtures("stack")

Client = AsyncTestClient[Litestar]


@pytest.fixture(scope="module")
async def client(stack: None) -> AsyncIterator[Client]:
    async with authorized(AsyncTestClient(app=create_app())) as test_client:
        yield test_client


async def test_product_created_reaches_kafka_keyed_by_product_id(client: Client) -> None:
    tail = TopicTail(topic_for("product"))  # at the topic's end before we write: only new records
    try:
        sku = f"T-{uuid.uuid4()}"
        response = await client.post("/api/products", json={"sku": sku, "name": "Kafka mug", "price": "7.5"})
        assert response.status_code == 201, response.text
        product_id = response.json()["id"]

        def arrived(seen: list[Received]) -> bool:
            return any(record.key == product_id for record in seen)

        seen = await asyncio.to_thread(tail.read_until, arrived, 90.0)
    finally:
        tail.close()

    [record] = [r for r in seen if r.key == product_id]
    assert record.topic == "commerce.product"
    assert record.headers["event_type"] == "product.created"
    assert record.headers["event_version"] == "1"
    assert record.headers["schema_version"] == "1"
    assert record.headers["aggregate_type"] == "product"
    payload = json.loads(record.value)
    assert (payload["id"], payload["sku"], payload["price"], payload["currency"]) == (product_id, sku, "7.50", "USD")


async def test_a_failed_commit_answers_an_error_and_leaves_no_product(client: Client) -> None:
    """The style guide's test: the outbox insert fails AT COMMIT, after the handler has done its work."""
    sku = f"T-{uuid.uuid4()}"
    conn = await connect("catalog")
    try:
        async with outbox_fails_at_commit(conn, "sku", sku):
            response = await client.post("/api/products", json={"sku": sku, "name": "Never sold", "price": "1.00"})

        assert response.status_code >= 500, response.text
        assert "outbox refused" not in response.text  # database text stays in the server's log
        await check_nothing_committed(conn, sku)
    finally:
        await conn.close()


async def check_nothing_committed(conn: asyncpg.Connection, sku: str) -> None:
    assert await conn.fetchval("SELECT count(*) FROM products WHERE sku = $1", sku) == 0
    assert await conn.fetchval("SELECT count(*) FROM event_store WHERE event_data->>'sku' = $1", sku) == 0
