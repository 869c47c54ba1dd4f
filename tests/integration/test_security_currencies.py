"""Prices in currencies the precision table did not know (S, session 32).

The catalog app in-process (the tree's code) against the running stack's catalog database. ISO 4217 lists
seventeen currencies without a minor unit; apps/common/pricing.py knew eight, so the other nine took two
decimals like any unknown code: the catalog priced 100.50 of them, and the payment sent every amount in
hundredths (50,000 PYG as 5,000,000 minor units: a provider charges a hundred times the price).
tests/unit/test_security_money_units.py checks the minor units.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from litestar.testing import AsyncTestClient

from apps.catalog.app import create_app
from tests.support.http import authorized

pytestmark = pytest.mark.usefixtures("stack")

Client = AsyncTestClient[Any]
# ISO 4217 currencies without a minor unit that the table did not list before.
UNLISTED = ("BIF", "DJF", "GNF", "KMF", "PYG", "RWF", "UYI", "VUV", "XPF")


@pytest.fixture(scope="module")
async def client(stack: None) -> AsyncIterator[Client]:
    async with authorized(AsyncTestClient(app=create_app())) as test_client:
        yield test_client


def product(price: str, currency: str) -> dict[str, str]:
    sku = f"S32-{uuid.uuid4().hex[:16].upper()}"
    return {"sku": sku, "name": "S32 currency probe", "price": price, "currency": currency}


@pytest.mark.parametrize("currency", UNLISTED)
async def test_a_price_finer_than_a_currency_without_minor_unit_is_refused(client: Client, currency: str) -> None:
    refused = await client.post("/api/products", json=product("100.50", currency))
    assert refused.status_code == 422, refused.text
    assert [p["key"] for p in refused.json()["extra"]] == ["price"], refused.text
    whole = await client.post("/api/products", json=product("50000", currency))
    assert whole.status_code == 201, whole.text
