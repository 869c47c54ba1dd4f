"""GDPR erasure end to end (issue 14): a customer registers, saves an address, checks out with a card, gets
the order delivered and opens a return; then POST /api/customers/{id}/erase. Every consumer that holds a
copy applies customer.erased, and a scan of every service database (all text and JSON columns), every
Redis key and value, and every record Kafka received on the project's topics and dead letters since the
test began finds neither the email, the phone nor the names; what Kafka still holds of the person does
not open any more (their data key is destroyed). Orders, payments, analytics and the customer's stats
are unchanged. A second erase answers the same and publishes nothing.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine
from sqlalchemy.pool import NullPool

import apps.checkout.erasure
import apps.order.erasure
import apps.returns.erasure
from apps.common.personal import envelope_subject, open_personal, unwrap_data_key
from apps.common.topology import BY_NAME, database_url
from tests.support.db import fetch
from tests.support.http import api_client, auth_headers, service_url
from tests.support.orders import eventually
from tests.support.pii_scan import (
    KafkaScan,
    Person,
    database_findings,
    database_mark,
    kafka_marks,
    redis_findings,
    scan_kafka,
)
from tests.support.returns import delivered_order, line_id, order, payments, request_return, stocked

pytestmark = pytest.mark.usefixtures("stack")

WITHIN = 60.0
# (service database, consumer group) of every group that anonymises a copy on customer.erased.
ERASING_GROUPS = (("order", "order-references"), ("returns", "returns"), ("checkout", "checkout"))


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with api_client(timeout=30) as client:
        yield client


async def register(http: httpx.AsyncClient, person: Person) -> tuple[str, int]:
    """The customer and their saved (default shipping) address, which names and rings them too."""
    base = f"{service_url('customer')}/api/customers"
    body = {"email": person.email, "first_name": person.first_name, "last_name": person.last_name}
    created = await http.post(base, json={**body, "phone": person.phone})
    assert created.status_code == 201, created.text
    customer_id = created.json()["id"]
    address = {
        "type": "shipping",
        "first_name": person.first_name,
        "last_name": person.last_name,
        "address_line1": f"{person.last_name} Hof 7",
        "city": "Bremen",
        "postal_code": "28195",
        "country": "DE",
        "phone": person.phone,
        "is_default": True,
    }
    saved = await http.post(f"{base}/{customer_id}/addresses", json=address)
    assert saved.status_code == 201, saved.text
    return customer_id, int(saved.json()["id"])


async def totals(http: httpx.AsyncClient, customer_id: str, order_id: str, product_id: str) -> dict[str, Any]:
    """What the business keeps: the order's money, its payment, analytics for the product, the stats row."""
    placed = await order(http, order_id)
    assert placed is not None
    [payment] = await payments(http, order_id)
    sales = await http.get(f"{service_url('analytics')}/api/analytics/products/{product_id}")
    assert sales.status_code == 200, sales.text
    stats = await fetch(
        "customer",
        "SELECT currency, orders_count, spent FROM customer_stats WHERE customer_id = $1",
        customer_id,
    )
    return {
        "order": (placed["status"], placed["payment_status"], placed["total_amount"], len(placed["items"])),
        "payment": (payment["status"], payment["amount"], payment["captured_amount"], payment["refunded_amount"]),
        "analytics": [(r["units"], Decimal(r["revenue"])) for r in sales.json()],
        "stats": [tuple(row) for row in stats],
    }


async def erased_event(customer_id: str) -> list[uuid.UUID]:
    rows = await fetch(
        "customer",
        "SELECT id FROM event_store WHERE aggregate_id = $1 AND event_type = 'customer.erased'",
        uuid.UUID(customer_id),
    )
    return [row["id"] for row in rows]


async def applied_everywhere(event_id: uuid.UUID) -> bool:
    for service, group in ERASING_GROUPS:
        rows = await fetch(service, "SELECT 1 FROM inbox WHERE consumer_group = $1 AND event_id = $2", group, event_id)
        if not rows:
            return False
    return True


# The rows each group's erasure changes, by their updated_at: a second application must leave them alone.
TOUCHED = (
    ("order", "SELECT updated_at FROM orders WHERE customer_id = $1"),
    ("checkout", "SELECT updated_at FROM checkout_sessions WHERE customer_id = $1 ORDER BY id"),
    ("checkout", "SELECT updated_at FROM cart_sessions WHERE customer_id = $1 ORDER BY id"),
    ("returns", "SELECT updated_at FROM return_requests WHERE customer_id = $1 ORDER BY id"),
)


async def touched(customer_id: str) -> list[list[Any]]:
    return [[row[0] for row in await fetch(service, query, customer_id)] for service, query in TOUCHED]


async def apply_again(customer_id: str) -> None:
    """What a replay of each group does with customer.erased: its handler's erasure, once more."""
    for service, erase in (
        ("order", apps.order.erasure.erase_customer),
        ("checkout", apps.checkout.erasure.erase_customer),
        ("returns", apps.returns.erasure.erase_customer),
    ):
        engine = create_async_engine(database_url(BY_NAME[service]), poolclass=NullPool)
        try:
            async with AsyncSession(engine) as session, session.begin():
                await erase(session, customer_id)
        finally:
            await engine.dispose()


async def data_key(http: httpx.AsyncClient, subject: str) -> httpx.Response:
    """The person's data key as a consuming service asks for it (service token, scope customer:data-keys)."""
    return await http.get(
        f"{service_url('customer')}/api/internal/data-keys/{subject}",
        headers=auth_headers("service", scopes=["customer:data-keys"]),
    )


def registered_email(scan: KafkaScan, customer_id: str) -> str:
    """The email field of the customer.registered record Kafka holds for the customer (an envelope)."""
    [payload] = scan.events("customer.registered", customer_id)
    envelope = str(payload["email"])
    assert (envelope_subject(envelope) or ("", ""))[0] == customer_id
    return envelope


async def test_an_erased_customer_is_nowhere_readable_and_the_business_totals_stay(http: httpx.AsyncClient) -> None:
    person = Person.unique()
    marks, since = kafka_marks(), await database_mark()
    product = await stocked("12.50", 5)
    customer_id, address_id = await register(http, person)
    addressing = {"customer_shipping_address_id": address_id}  # the saved address, copied by checkout
    placed = await delivered_order(http, [(product, 2)], customer_id=customer_id, addressing=addressing)
    order_id = placed["id"]
    opened = await request_return(
        http,
        {
            "order_id": order_id,
            "items": [{"order_item_id": line_id(placed, product), "quantity": 1, "reason": "changed_mind"}],
            "description": f"call {person.first_name} {person.last_name} on {person.phone}",
        },
    )
    assert opened.status_code == 201, opened.text

    async def counted() -> bool:  # the projections saw the purchase before the totals are taken
        kept = await totals(http, customer_id, order_id, product["id"])
        bought = (placed["currency"], 1, Decimal(placed["total_amount"]))
        return bool(kept["analytics"] == [(2, Decimal("25.00"))] and kept["stats"] == [bought])

    await eventually(counted, within=WITHIN, what="analytics and customer stats counted the order")
    before = await totals(http, customer_id, order_id, product["id"])
    # The scan finds the person before erasure (so a scan that finds nothing afterwards means something):
    # the return's free text and the names on the customer row are in clear; Kafka holds envelopes only.
    assert {"customer_db.customers", "return_db.return_requests"} <= set(await database_findings(person.needles, since))
    published = scan_kafka(marks, person.needles)
    assert published.findings == []
    envelope = registered_email(published, customer_id)
    got = await data_key(http, customer_id)
    assert got.status_code == 200, got.text
    key = unwrap_data_key(customer_id, got.json()["kid"], got.json()["key"])
    assert open_personal(key, "email", envelope) == person.email.lower()

    erase = f"{service_url('customer')}/api/customers/{customer_id}/erase"
    async with api_client("customer", customer_id=uuid.uuid4()) as stranger:  # another customer: not theirs
        assert (await stranger.post(erase)).status_code == 404
    async with api_client("customer", customer_id=customer_id) as themselves:  # the person asks
        first = await themselves.post(erase)
    assert first.status_code == 202, first.text
    assert first.json()["status"] == "erased"
    async with api_client("staff") as support:  # and support repeats it: the same answer, nothing new
        again = await support.post(erase)
    assert (again.status_code, again.json()) == (202, first.json())
    [event_id] = await erased_event(customer_id)  # the repeat published nothing
    await eventually(lambda: applied_everywhere(event_id), within=WITHIN, what="every group applied customer.erased")
    erased_rows = await touched(customer_id)
    assert all(erased_rows), erased_rows  # an order, a session, a cart and a return were anonymised
    await apply_again(customer_id)  # a replay: no error, nothing changes
    assert await touched(customer_id) == erased_rows

    # Gone for the API and for new business; the kept records are unchanged.
    assert (await http.get(f"{service_url('customer')}/api/customers/{customer_id}")).status_code == 404
    cart = await http.post(f"{service_url('checkout')}/api/carts", json={"customer_id": customer_id})
    assert cart.status_code == 422, cart.text
    again_order = await http.post(
        f"{service_url('order')}/api/orders",
        json={"customer_id": customer_id, "items": [{"product_id": product["id"], "quantity": 1}]},
    )
    assert again_order.status_code == 422, again_order.text
    assert await totals(http, customer_id, order_id, product["id"]) == before

    assert await database_findings(person.needles, since) == []
    assert await redis_findings(person.needles) == []
    kafka = scan_kafka(marks, person.needles)
    assert len(kafka.records) > len(published.records) and kafka.findings == []
    # Crypto-shredding: the same envelope is still in Kafka, and its key is gone for every service.
    assert registered_email(kafka, customer_id) == envelope
    assert (await data_key(http, customer_id)).status_code == 410
    [wrapped] = await fetch("customer", "SELECT wrapped_key FROM personal_data_keys WHERE subject_id = $1", customer_id)
    assert wrapped["wrapped_key"] is None
