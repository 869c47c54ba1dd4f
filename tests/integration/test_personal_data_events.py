"""Personal data in events, sealed per person (apps/common/personal.py), seen on the real Kafka topics:
customer.* and checkout.completed carry envelopes that open only with the person's data key (the
customer service's service-only route); once the key is destroyed (erasure) they no longer open, and the
order consumer turns such a checkout into an order with its lines erased rather than dead-lettering it."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import uuid
from decimal import Decimal
from typing import Any

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine
from sqlalchemy.pool import NullPool

from apps.checkout.events import CheckoutAddress, CheckoutCompleted, CheckoutLine, personal_address
from apps.common.personal import ADDRESS_FIELDS, ERASED, envelope_subject, open_personal
from apps.common.topology import BY_NAME, database_url, topic_for
from apps.customer.data_keys import destroy_data_key
from apps.customer.events import PERSONAL_FIELDS
from outbox.writer import add_event
from tests.support.http import api_client, auth_headers, create_product, service_url
from tests.support.kafka import Received, TopicTail
from tests.support.personal import DATA_KEY_SCOPE, data_key, guest_checkout, opened, wait_for_order

pytestmark = pytest.mark.asyncio

ADDRESS = {
    "first_name": "Grace",
    "last_name": "Hopper",
    "address_line1": "1 Navy Yard Rd",
    "city": "Arlington",
    "postal_code": "22202",
    "phone": "+15550100",
    "country": "US",
}


async def _tail(topic: str, key: str, tail: TopicTail) -> Received:
    def arrived(seen: list[Received]) -> bool:
        return any(record.key == key for record in seen)

    seen = await asyncio.to_thread(tail.read_until, arrived, 90.0)
    return next(record for record in seen if record.key == key)


async def test_customer_events_on_kafka_carry_only_envelopes_that_open_with_the_customers_key() -> None:
    tail = TopicTail(topic_for("customer"))
    email = f"pd-{uuid.uuid4().hex}@example.com"
    try:
        async with api_client(base_url=service_url("customer")) as http:
            created = await http.post(
                "/api/customers", json={"email": email, "first_name": "Ada", "last_name": "Byron"}
            )
            assert created.status_code == 201, created.text
            customer = created.json()
        record = await _tail(topic_for("customer"), customer["id"], tail)
    finally:
        tail.close()
    assert record.headers["schema_version"] == "2"
    assert email.encode() not in record.value and b"Byron" not in record.value  # nothing in clear on the topic
    payload = json.loads(record.value)
    assert all(envelope_subject(payload[f]) == (customer["id"], payload[f].split(":")[2]) for f in PERSONAL_FIELDS)
    clear = await opened(payload, PERSONAL_FIELDS, customer["id"])
    assert (clear["email"], clear["first_name"], clear["last_name"]) == (email, "Ada", "Byron")


async def test_checkout_completed_on_kafka_seals_the_addresses_and_the_order_opens_them() -> None:
    tail = TopicTail(topic_for("checkout"))
    try:
        checkout, order_id, _ = await guest_checkout(ADDRESS)
        assert checkout["shipping_address"]["last_name"] == "Hopper"  # the API opens what it sealed
        record = await _tail(topic_for("checkout"), checkout["id"], tail)
    finally:
        tail.close()
    assert record.headers["schema_version"] == "2"
    assert not any(ADDRESS[f].encode() in record.value for f in ADDRESS if f != "country")
    event = json.loads(record.value)
    subject = event["customer_id"]
    assert subject.startswith("cs_") and event["shipping_address"]["country"] == "US"
    for column in ("shipping_address", "billing_address"):
        clear = await opened(event[column], ADDRESS_FIELDS, subject, f"{column}.")
        assert {k: v for k, v in clear.items() if v is not None} == ADDRESS
    # The order consumer opened them with the same key (and sealed them again under its own keyring).
    order = await wait_for_order(order_id)
    assert {k: v for k, v in order["shipping_address"].items() if v is not None} == ADDRESS


async def test_a_destroyed_key_leaves_envelopes_unopenable_and_the_order_consumer_erases_them() -> None:
    subject = "cs_" + uuid.uuid4().hex
    key = await _ensured_key(subject)
    event = await _sealed_checkout_event(subject, key)
    sealed_city = event.shipping_address.city
    assert open_personal(key, "shipping_address.city", sealed_city) == ADDRESS["city"]

    engine = create_async_engine(database_url(BY_NAME["customer"]), poolclass=NullPool)
    try:
        async with AsyncSession(engine) as session:
            assert await destroy_data_key(session, subject) is True
            await session.commit()
            assert await destroy_data_key(session, subject) is False  # once
            await session.commit()
    finally:
        await engine.dispose()

    assert await data_key(subject) is None  # GET answers 410 now, for every service
    async with api_client("service", scopes=[DATA_KEY_SCOPE], base_url=service_url("customer")) as http:
        assert (await http.get(f"/api/internal/data-keys/{subject}")).status_code == 410
        assert (await http.post(f"/api/internal/data-keys/{subject}")).status_code == 410  # never made again
        assert (await http.get(f"/api/internal/data-keys/cs_{uuid.uuid4().hex}")).status_code == 404
        assert (await http.get("/api/internal/data-keys/not:a:subject")).status_code == 400
    url = f"{service_url('customer')}/api/internal/data-keys/{subject}"
    async with httpx.AsyncClient() as http:  # nobody else: no token 401, a customer, staff or another scope 403
        assert (await http.get(url)).status_code == 401
        for headers in (
            auth_headers("customer", customer_id=uuid.uuid4()),
            auth_headers("staff"),
            auth_headers("service", scopes=["customer:read"]),
        ):
            assert (await http.get(url, headers=headers)).status_code == 403

    # A checkout.completed sealed under the destroyed key reaches the order consumer: the order is made,
    # its personal lines read as erased, the country stays; nothing is dead-lettered.
    engine = create_async_engine(database_url(BY_NAME["checkout"]), poolclass=NullPool)
    try:
        async with AsyncSession(engine) as session:
            await add_event(session, event.checkout_id, event)
            await session.commit()
    finally:
        await engine.dispose()
    order = await wait_for_order(str(event.order_id))
    assert order["shipping_address"]["city"] == ERASED and order["shipping_address"]["country"] == "US"
    assert order["billing_address"]["last_name"] == ERASED


async def _ensured_key(subject: str) -> Any:
    async with api_client("service", scopes=[DATA_KEY_SCOPE], base_url=service_url("customer")) as http:
        response = await http.post(f"/api/internal/data-keys/{subject}")
    assert response.status_code == 200, response.text
    assert response.headers["cache-control"] == "no-store"
    key = await data_key(subject)
    assert key is not None and key.kid == response.json()["kid"]
    return key


async def _sealed_checkout_event(subject: str, key: Any) -> CheckoutCompleted:
    product = await create_product("3.00")
    line = CheckoutLine(
        product_id=uuid.UUID(product["id"]),
        sku=product["sku"],
        name=product["name"],
        quantity=1,
        unit_price=Decimal("3.00"),
        total_price=Decimal("3.00"),
    )
    address = CheckoutAddress(**ADDRESS)
    money = {"subtotal": Decimal("3.00"), "tax_amount": Decimal(0), "shipping_amount": Decimal(0)}
    return CheckoutCompleted(
        checkout_id=uuid.uuid4(),
        order_id=uuid.uuid4(),
        cart_id=uuid.uuid4(),
        customer_id=subject,
        is_guest=True,
        currency="USD",
        lines=[line],
        shipping_address=personal_address(address, key, "shipping_address.", seal=True),
        billing_address=personal_address(address, key, "billing_address.", seal=True),
        shipping_method_id="standard",
        shipping_method_name="Standard",
        payment_method_type="card",
        payment_method_id="tok_visa_4242",
        discount_amount=Decimal(0),
        total_amount=Decimal("3.00"),
        completed_at=dt.datetime.now(dt.UTC),
        **money,
    )
