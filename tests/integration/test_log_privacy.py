"""Nothing that identifies a person reaches a log (issue 14): requests carrying a unique email, name, phone
and street go through the customer, order, checkout and returns APIs, good ones and bad ones that echo
input (a taken email, values of the wrong type, query strings, unknown references); then every file in
.stack/logs (services, consumers, PostgreSQL, Kafka, Connect, ...) is searched for those values."""

from __future__ import annotations

import asyncio
import random
import uuid
from urllib.parse import quote, quote_plus

import pytest

from tests.support.http import api_client, create_product, service_url
from tests.support.log_files import sizes, written_since

pytestmark = pytest.mark.usefixtures("stack")


def _person() -> dict[str, str]:
    tag = uuid.uuid4().hex[:10]
    return {
        "email": f"privacy-{tag}@example.com",
        "first_name": f"Zelda{tag}",
        "last_name": f"Quist{tag}",
        "phone": f"+4915{random.randrange(10**8, 10**9)}",
        "street": f"{tag} Hidden Lane",
    }


async def _exercise(person: dict[str, str]) -> None:
    address = {
        "first_name": person["first_name"],
        "last_name": person["last_name"],
        "address_line1": person["street"],
        "city": "Berlin",
        "country": "DE",
        "phone": person["phone"],
    }
    registration = {k: person[k] for k in ("email", "first_name", "last_name", "phone")}
    product = await create_product()
    async with api_client() as http:
        customers = f"{service_url('customer')}/api/customers"
        created = await http.post(customers, json=registration)
        assert created.status_code == 201, created.text
        customer_id = created.json()["id"]
        answers = [
            await http.post(customers, json=registration),  # taken email: 409
            await http.post(customers, json={**registration, "first_name": 5}),  # wrong type
            await http.post(customers, json={**registration, "email": person["email"] + " x"}),  # not an email
            await http.post(customers, content=f'{{"email": "{person["email"]}", '.encode()),  # malformed JSON
            await http.patch(f"{customers}/{customer_id}", json={"phone": person["phone"] + "x"}),
            await http.get(f"{customers}/{customer_id}", params={"email": person["email"]}),
            await http.get(f"{service_url('order')}/api/orders", params={"customer_id": person["email"]}),
            await http.post(f"{customers}/{customer_id}/addresses", json={**address, "type": "shipping"}),
            await http.post(f"{customers}/{customer_id}/addresses", json={**address, "type": person["last_name"]}),
            await http.post(
                f"{service_url('order')}/api/orders",
                json={
                    "customer_id": customer_id,
                    "items": [{"product_id": product["id"], "quantity": 1}],
                    "shipping_address": address,
                    "notes": f"call {person['phone']}",
                },
            ),
            await http.post(
                f"{service_url('checkout')}/api/checkout",
                json={
                    "cart_id": str(uuid.uuid4()),
                    "shipping_address": address,
                    "shipping_method_id": "standard",
                    "payment_method": {"type": "card", "token": "tok_visa"},
                },
            ),
            await http.post(
                f"{service_url('returns')}/api/returns",
                json={
                    "order_id": str(uuid.uuid4()),
                    "items": [{"order_item_id": 1, "quantity": 1, "reason": "defective"}],
                    "description": f"{person['first_name']} {person['last_name']} {person['email']}",
                },
            ),
        ]
    statuses = [a.status_code for a in answers]
    assert all(s < 500 for s in statuses), statuses
    assert any(400 <= s < 500 for s in statuses), statuses  # the bad requests were refused and logged


async def test_no_log_file_holds_an_email_name_phone_or_address() -> None:
    person = _person()
    before = sizes()
    await _exercise(person)
    await asyncio.sleep(1.5)  # queue handlers and the consumers write a moment later
    written = written_since(before)
    found: dict[str, list[str]] = {}
    for label, value in person.items():
        needles = {value.encode(), quote(value).encode(), quote_plus(value).encode()}  # as sent in a URL too
        hits = [path.name for path, text in written.items() if any(n in text for n in needles)]
        if hits:
            found[label] = hits
    assert not found, f"personal data in logs: {found}"
    assert any(written.values()), "the requests wrote no log lines at all"
