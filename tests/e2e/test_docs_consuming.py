"""docs/events/consuming.md's example, run as written against the stack: a downstream team's consumer of
order.confirmed gets an order placed through the API once, with its total, and skips a repeat by the event id.

The example's own group and `earliest` would read a year of commerce.order; the test keeps its code and
settings but names a group of its own and starts it at the end of each partition (from now on).
"""

from __future__ import annotations

import re
import time
import uuid
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
from confluent_kafka import Consumer, TopicPartition

from tests.support.http import auth_headers, create_customer, create_product, service_url, set_stock

pytestmark = pytest.mark.usefixtures("stack")

PAGE = Path(__file__).resolve().parents[2] / "docs" / "events" / "consuming.md"


def _example() -> dict[str, Any]:
    """The page's Python block, run up to (not including) the lines that make its consumer."""
    blocks = re.findall(r"```python\n(.*?)```", PAGE.read_text(), re.DOTALL)
    assert len(blocks) == 1, "the page has one example"
    code = blocks[0].split("\nconsumer = Consumer(CONFIG)")[0]
    namespace: dict[str, Any] = {}
    exec(compile(code, str(PAGE), "exec"), namespace)  # the documentation's own example
    return namespace


def _consumer(config: dict[str, Any], group: str) -> tuple[Consumer, list[TopicPartition]]:
    """The page's consumer in a group of ours, starting from now: each partition's end, assigned (a new group
    subscribed with "latest" fixes its positions only at its first fetch, after an event may have passed)."""
    consumer = Consumer({**config, "group.id": group})
    partitions = consumer.list_topics("commerce.order", timeout=10).topics["commerce.order"].partitions
    start = [
        TopicPartition("commerce.order", p, consumer.get_watermark_offsets(TopicPartition("commerce.order", p))[1])
        for p in sorted(partitions)
    ]
    consumer.assign(start)
    return consumer, start


def _read(example: dict[str, Any], consumer: Consumer, applied: set[str], until: Any, within: float = 60) -> list[Any]:
    """Run the page's generator (5 polls a call: up to 5 s when the topic is quiet) until ``until(rows)``
    holds or ``within`` seconds pass."""
    rows: list[Any] = []
    deadline = time.monotonic() + within
    while time.monotonic() < deadline and not until(rows):
        rows += example["confirmed_orders"](consumer, applied, polls=5)
    return rows


async def _place_order() -> dict[str, Any]:
    customer = await create_customer()
    product = await create_product(price="7.25")
    await set_stock(product["id"], 5)
    me = auth_headers("customer", customer_id=customer["id"])
    body = {"customer_id": customer["id"], "items": [{"product_id": product["id"], "quantity": 2}]}
    async with httpx.AsyncClient(timeout=30) as http:
        response = await http.post(f"{service_url('order')}/api/orders", json=body, headers=me)
    assert response.status_code == 201, response.text
    return dict(response.json())


async def test_the_pages_consumer_reads_a_confirmed_order_once() -> None:
    example = _example()
    assert example["CONFIG"]["enable.auto.commit"] is False
    group = f"docs-consuming-{uuid.uuid4().hex[:8]}"
    consumer, start = _consumer(example["CONFIG"], group)
    applied: set[str] = set()
    try:
        order = await _place_order()

        def mine(rows: list[Any]) -> list[Any]:
            return [row for row in rows if row[0] == order["id"]]

        got = mine(_read(example, consumer, applied, until=mine))
        assert got == [(order["id"], Decimal("14.50"), "USD")]
        committed = {
            tp.partition: tp.offset for tp in consumer.committed(consumer.assignment(), timeout=10) if tp.offset >= 0
        }
    finally:
        consumer.close()
    assert committed, "the example commits what it applied"

    # The same records read again (a redelivery) from where the first consumer started: the event id in
    # `applied` skips the order, read again up to where it was committed.
    again = Consumer({**example["CONFIG"], "group.id": f"{group}-again"})
    try:
        again.assign(start)

        def past_committed(rows: list[Any]) -> bool:
            read = {tp.partition: tp.offset for tp in again.position(again.assignment())}
            return all(read.get(partition, -1) >= offset for partition, offset in committed.items())

        repeated = mine(_read(example, again, applied, until=past_committed))
        assert past_committed([]), "the records were not read again"
    finally:
        again.close()
    assert repeated == []
