"""The address copies on orders and checkout sessions, sealed at rest (apps/common/sealed_addresses.py) in
the real databases: raw SQL shows envelopes, the APIs show the address, a value moved to another row does
not open, and a rotation (apps/common/sealed_tables.py, `just keys SERVICE rotate`) re-seals every row,
an address left in clear included, while the running APIs keep reading them."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import pytest

from apps.common.crypto import CryptoError, key_id
from apps.common.personal import ADDRESS_FIELDS
from apps.common.sealed_tables import service_keys
from apps.order.sealed import ADDRESSES as ORDER_ADDRESSES
from tests.support.db import fetch
from tests.support.http import service_url
from tests.support.personal import guest_checkout, wait_for_order

pytestmark = pytest.mark.asyncio

ADDRESS = {
    "first_name": "Katherine",
    "last_name": "Johnson",
    "company": "NACA",
    "address_line1": "1 Langley Blvd",
    "city": "Hampton",
    "postal_code": "23681",
    "country": "US",
}


async def _checkout_and_order() -> tuple[str, str, dict[str, str]]:
    checkout, order_id, headers = await guest_checkout(ADDRESS)
    await wait_for_order(order_id)
    return checkout["id"], order_id, headers


async def _read_checkout(checkout_id: str, headers: dict[str, str]) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=service_url("checkout")) as http:
        response = await http.get(f"/api/checkout/{checkout_id}", headers=headers)
    assert response.status_code == 200, response.text
    return dict(response.json())


def _clear(address: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in address.items() if v is not None}


async def _stored(service: str, table: str, row_id: str) -> list[dict[str, Any]]:
    [row] = await fetch(service, f"SELECT shipping_address, billing_address FROM {table} WHERE id = $1::uuid", row_id)
    return [json.loads(row["shipping_address"]), json.loads(row["billing_address"])]


async def test_sql_shows_ciphertext_the_apis_show_the_address_and_a_moved_value_does_not_open() -> None:
    checkout_id, order_id, guest = await _checkout_and_order()
    for service, table, row_id in [("order", "orders", order_id), ("checkout", "checkout_sessions", checkout_id)]:
        for stored in await _stored(service, table, row_id):
            text = json.dumps(stored)
            assert "Johnson" not in text and "Hampton" not in text and "Langley" not in text, (table, text)
            assert stored["country"] == "US"  # clear: it names nobody
            assert all(key_id(stored[f]) for f in ADDRESS_FIELDS if stored.get(f) is not None)
    order, checkout = await wait_for_order(order_id), await _read_checkout(checkout_id, guest)
    assert _clear(order["shipping_address"]) == _clear(order["billing_address"]) == ADDRESS
    assert _clear(checkout["shipping_address"]) == ADDRESS
    # Bound to its row and field: the same envelope under another order (or as another line) is refused.
    shipping = (await _stored("order", "orders", order_id))[0]
    other = "00000000-0000-0000-0000-000000000001"
    with pytest.raises(CryptoError):
        ORDER_ADDRESSES.open("orders", "shipping_address", other, shipping)
    with pytest.raises(CryptoError):
        ORDER_ADDRESSES.open("orders", "shipping_address", order_id, {**shipping, "city": shipping["last_name"]})


async def test_rotation_reseals_every_address_row_and_the_running_apis_still_read_them() -> None:
    checkout_id, order_id, guest = await _checkout_and_order()
    # An address written in clear (before order_0010): the rotation seals it as well.
    legacy = {**ADDRESS, "city": "Old Point Comfort"}
    await fetch(
        "order", "UPDATE orders SET billing_address = $2::jsonb WHERE id = $1::uuid", order_id, json.dumps(legacy)
    )

    for service in ("order", "checkout"):
        keys = service_keys(service)
        old_kid = keys.keyring().ring().current
        new_kid, resealed = await asyncio.to_thread(keys.rotate, 2000)
        assert new_kid != old_kid and sum(resealed.values()) > 0, resealed
        counts = await asyncio.to_thread(keys.status)
        for table, per_key in counts.items():
            assert set(per_key) <= {new_kid}, (table, per_key)  # not one row under the old key, or in clear
        assert old_kid in keys.keyring().ring().keys  # kept: backups taken before still need it

    order = await wait_for_order(order_id)
    assert _clear(order["shipping_address"]) == ADDRESS and _clear(order["billing_address"]) == legacy
    assert _clear((await _read_checkout(checkout_id, guest))["shipping_address"]) == ADDRESS
    stored = await _stored("order", "orders", order_id)
    assert "Old Point" not in json.dumps(stored)
