"""One id from the edge through every hop (outbox/correlation.py): POST /api/orders with X-Request-ID R, and
order.created, the warehouse's inventory.reserved and the order's order.confirmed all carry R as their
correlation_id header on the wire (through Debezium), and R is on the order API's and the warehouse
consumer's log lines about that order."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest

from tests.support import log_files
from tests.support.http import api_client, create_customer, create_product, service_url, set_stock
from tests.support.kafka import Received, TopicTail
from tests.support.orders import order_created, order_engine, write_events

pytestmark = pytest.mark.usefixtures("stack")

ORDERS = f"{service_url('order')}/api/orders"


def _of(order_id: str, event_type: str) -> Any:
    def found(seen: list[Received]) -> bool:
        return any(r.key == order_id and r.headers.get("event_type") == event_type for r in seen)

    return found


async def test_a_request_id_is_on_every_event_and_log_line_of_the_order_it_placed() -> None:
    request_id = str(uuid.uuid4())
    customer = (await create_customer())["id"]
    product = await create_product()
    await set_stock(product["id"], 5)
    orders, inventory = TopicTail("commerce.order"), TopicTail("commerce.inventory")
    before = log_files.sizes()
    try:
        body = {"customer_id": customer, "items": [{"product_id": product["id"], "quantity": 1}]}
        async with api_client("customer", customer_id=customer) as http:
            answer = await http.post(ORDERS, json=body, headers={"X-Request-ID": request_id.upper()})
        assert answer.status_code == 201, answer.text
        assert answer.headers["x-request-id"] == request_id  # kept, in lower case
        order_id = answer.json()["id"]

        reserved = inventory.read_until(_of(order_id, "inventory.reserved"), timeout=90)
        placed = orders.read_until(
            lambda seen: _of(order_id, "order.created")(seen) and _of(order_id, "order.confirmed")(seen), timeout=90
        )
    finally:
        orders.close()
        inventory.close()

    mine = [r for r in [*placed, *reserved] if r.key == order_id]
    carried = {r.headers["event_type"]: r.headers.get("correlation_id") for r in mine}
    assert carried == {
        "order.created": request_id,
        "inventory.reserved": request_id,
        "order.confirmed": request_id,
    }

    written = log_files.written_since(before)
    api_lines = [json.loads(line) for line in written[log_files.LOGS / "order-api.log"].splitlines() if line]
    ours = [
        (line["method"], line["route"], line["status"]) for line in api_lines if line.get("request_id") == request_id
    ]
    assert ours == [("POST", "/api/orders", 201)]  # its access log line, the only one it wrote
    warehouse = written[log_files.LOGS / "warehouse-consumer.log"].decode()
    assert f"order {order_id}: inventory.reserved request_id={request_id}" in warehouse


async def test_an_event_written_outside_any_request_carries_no_id() -> None:
    """A sweeper's or a job's event: NULL in the column, no value on the wire, and no id a consumer would set."""
    created = order_created(f"no-request-{uuid.uuid4().hex[:8]}", "1.00")
    orders = TopicTail("commerce.order")
    try:
        await write_events(order_engine(), [created])
        seen = orders.read_until(_of(str(created.order_id), "order.created"), timeout=60)
    finally:
        orders.close()
    (record,) = [r for r in seen if r.key == str(created.order_id)]
    assert record.headers["correlation_id"] == ""  # sent with a null value (tests.support.kafka reads it as "")
