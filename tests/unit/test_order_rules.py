"""The order's pure pricing rules: what a placement refuses, and with which error of the vocabulary."""

from __future__ import annotations

import uuid
from decimal import Decimal

import pytest

from apps.common.errors import InconsistentFields, UnknownReference
from apps.common.pricing import CatalogPrice
from apps.order.rules import RequestedLine, price_order


def product(price: str, currency: str = "USD") -> CatalogPrice:
    pid = uuid.uuid4()
    return CatalogPrice(pid, f"SKU-{pid.hex[:6]}", "Thing", Decimal(price), currency)


def test_an_order_in_one_currency_is_priced() -> None:
    mug, tea = product("12.50"), product("4.00")
    lines = [RequestedLine(mug.product_id, 2), RequestedLine(tea.product_id, 1)]
    quote = price_order(lines, {p.product_id: p for p in (mug, tea)})
    assert quote.subtotal == Decimal("29.00")


def test_two_currencies_in_one_order_are_inconsistent_fields_naming_the_second_line() -> None:
    """Each line is schema-valid alone, so the contradiction is a 422 (as a cart's is), not a 400."""
    dollars, euros = product("5.00"), product("9.99", "EUR")
    with pytest.raises(InconsistentFields) as mixed:
        lines = [RequestedLine(dollars.product_id, 1), RequestedLine(euros.product_id, 1)]
        price_order(lines, {p.product_id: p for p in (dollars, euros)})
    assert mixed.value.field == "items[1].product_id"
    assert mixed.value.status_code == 422
    assert "EUR" in mixed.value.message and "USD" in mixed.value.message


def test_an_unknown_product_is_an_unknown_reference() -> None:
    with pytest.raises(UnknownReference) as unknown:
        price_order([RequestedLine(uuid.uuid4(), 1)], {})
    assert unknown.value.field == "items[0].product_id"
