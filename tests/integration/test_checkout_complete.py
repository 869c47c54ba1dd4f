"""Completing a checkout through the running checkout service: 20 concurrent calls, one order, one
checkout.completed on Kafka (through the outbox and Debezium)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from apps.common.topology import topic_for
from tests.support.checkout import checkout_body, completed_events
from tests.support.http import api_client, create_product, service_url
from tests.support.kafka import Received, TopicTail

pytestmark = pytest.mark.usefixtures("stack")


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with api_client(base_url=service_url("checkout"), timeout=30) as client:
        yield client


async def started_checkout(http: httpx.AsyncClient) -> tuple[dict[str, Any], dict[str, str]]:
    cart = (await http.post("/api/carts")).json()
    headers = {"X-Guest-Token": cart["guest_token"]}
    product = await create_product("11.00")
    added = await http.post(
        f"/api/carts/{cart['id']}/items", json={"product_id": product["id"], "quantity": 2}, headers=headers
    )
    assert added.status_code == 200, added.text
    session = await http.post("/api/checkout", json=checkout_body(cart["id"]), headers=headers)
    assert session.status_code == 201, session.text
    return session.json(), headers


def about(records: list[Received], checkout_id: str) -> list[Received]:
    return [r for r in records if r.key == checkout_id]


async def test_twenty_concurrent_completes_publish_one_checkout_completed(http: httpx.AsyncClient) -> None:
    session, headers = await started_checkout(http)
    marker, marker_headers = await started_checkout(http)
    tail = TopicTail(topic_for("checkout"))
    try:
        url = f"/api/checkout/{session['id']}/complete"
        answers = await asyncio.gather(
            *(http.post(url, headers={**headers, "Idempotency-Key": f"key-{n % 3}"}) for n in range(20))
        )
        assert [a.status_code for a in answers] == [202] * 20, [a.text for a in answers if a.status_code != 202]
        assert len({a.json()["order_id"] for a in answers}) == 1
        assert sum("Idempotent-Replayed" not in a.headers for a in answers) == 1
        assert await completed_events(session["id"]) == 1

        # A later commit, seen on the topic, means everything committed before it has been streamed too.
        done = await http.post(
            f"/api/checkout/{marker['id']}/complete", headers={**marker_headers, "Idempotency-Key": "m"}
        )
        assert done.status_code == 202
        seen = await asyncio.to_thread(tail.read_until, lambda records: bool(about(records, marker["id"])), 90)
    finally:
        tail.close()
    published = about(seen, session["id"])
    assert len(published) == 1, f"{len(published)} checkout.completed records for one checkout"
    record = published[0]
    assert record.headers["event_type"] == "checkout.completed"
    payload = json.loads(record.value)
    assert payload["order_id"] == answers[0].json()["order_id"] and payload["total_amount"] == session["total_amount"]
