"""Checkout's pure rules: guest tokens, pricing, tax and shipping, payment tokens, session states."""

from __future__ import annotations

import datetime as dt
import uuid
from decimal import Decimal

import pytest

from apps.checkout import rules
from apps.checkout.rules import CartLine, ShippingOption
from apps.common.errors import InconsistentFields, InvalidField, StateConflict, UnknownReference
from apps.common.pricing import CatalogPrice

NOW = dt.datetime(2026, 11, 26, 12, 0, tzinfo=dt.UTC)
STANDARD = ShippingOption("standard", "Standard", Decimal("5.00"))


def product(price: str, currency: str = "USD") -> CatalogPrice:
    pid = uuid.uuid4()
    return CatalogPrice(pid, f"SKU-{pid.hex[:6]}", "Thing", Decimal(price), currency)


def test_guest_tokens_are_random_and_only_their_hash_is_kept() -> None:
    first, second = rules.new_guest_token(), rules.new_guest_token()
    assert first != second and len(first) >= 43
    assert rules.hash_token(first) != first and len(rules.hash_token(first)) == 64


def test_a_guest_session_id_fits_the_orders_customer_id_and_is_not_a_uuid() -> None:
    session_id = rules.new_session_id()
    assert len(session_id) <= 36 and session_id.startswith("cs_")
    with pytest.raises(ValueError):
        uuid.UUID(session_id)


def test_a_guest_cart_opens_only_with_its_own_token() -> None:
    token = rules.new_guest_token()
    stored = rules.hash_token(token)
    rules.check_guest_access(stored, token)
    rules.check_guest_access(None, None)  # a customer's cart
    for wrong in (None, "", rules.new_guest_token()):
        with pytest.raises(rules.GuestAccessDenied) as refused:
            rules.check_guest_access(stored, wrong)
        assert refused.value.status_code == 403 and refused.value.field == "X-Guest-Token"


def test_only_an_active_cart_changes() -> None:
    rules.check_cart_open("active")
    for status in ("converted", "abandoned"):
        with pytest.raises(StateConflict):
            rules.check_cart_open(status)


def test_repricing_uses_todays_catalog_price_and_names_a_withdrawn_product() -> None:
    shirt, mug = product("19.90"), product("5.05")
    lines = [CartLine(shirt.product_id, 2), CartLine(mug.product_id, 3)]
    priced = rules.reprice(lines, {shirt.product_id: shirt, mug.product_id: mug}, "USD")
    assert [(p.quantity, p.unit_price, p.total_price) for p in priced] == [
        (2, Decimal("19.90"), Decimal("39.80")),
        (3, Decimal("5.05"), Decimal("15.15")),
    ]
    with pytest.raises(UnknownReference) as missing:
        rules.reprice(lines, {shirt.product_id: shirt}, "USD")
    # POST /api/checkout's body names only the cart: the key is a field of that body, the message the line.
    assert missing.value.field == "cart_id"
    assert f"items[1] (product {mug.product_id})" in missing.value.message


def test_repricing_names_a_line_whose_product_changed_currency_on_the_cart() -> None:
    shirt = product("19.90")
    now_in_euros = product("18.00", "EUR")
    lines = [CartLine(shirt.product_id, 1), CartLine(now_in_euros.product_id, 1)]
    with pytest.raises(InconsistentFields) as mixed:
        rules.reprice(lines, {shirt.product_id: shirt, now_in_euros.product_id: now_in_euros}, "USD")
    assert mixed.value.field == "cart_id"
    assert "items[1]" in mixed.value.message and "EUR" in mixed.value.message


def test_a_cart_holds_one_currency() -> None:
    euro = product("1.00", "EUR")
    assert rules.check_line_currency(euro, None, "product_id") == "EUR"
    with pytest.raises(InconsistentFields) as mixed:
        rules.check_line_currency(euro, "USD", "product_id")
    assert mixed.value.field == "product_id"


def test_a_quote_adds_tax_on_the_goods_and_the_shipping_cost() -> None:
    shirt = product("19.99")
    priced = rules.reprice([CartLine(shirt.product_id, 3)], {shirt.product_id: shirt}, "USD")
    q = rules.quote(priced, "USD", STANDARD, Decimal("0.0700"))
    assert q.subtotal == Decimal("59.97")
    assert q.tax_amount == Decimal("4.20")  # 4.1979 rounded half-up
    assert q.shipping_amount == Decimal("5.00") and q.discount_amount == Decimal("0.00")
    assert q.total_amount == Decimal("69.17")


def test_tax_rounds_half_up_to_the_cent() -> None:
    assert rules.tax_on(Decimal("0.50"), Decimal("0.0500"), "USD") == Decimal("0.03")
    assert rules.tax_on(Decimal("10.00"), Decimal("0"), "USD") == Decimal("0.00")


def test_an_empty_cart_cannot_be_checked_out() -> None:
    with pytest.raises(StateConflict) as empty:
        rules.quote([], "USD", STANDARD, Decimal("0.07"))
    assert empty.value.field == "cart_id"


@pytest.mark.parametrize("token", ["4111111111111111", "4111 1111 1111 1111", "5500-0000-0000-0004"])
def test_a_card_number_is_never_taken_as_a_payment_token(token: str) -> None:
    with pytest.raises(InvalidField) as refused:
        rules.check_payment_token(token)
    assert refused.value.field == "payment_method.token"
    assert token not in str(refused.value)


@pytest.mark.parametrize("token", ["tok_visa_4242", "pm_1Nv0e2", "4111111111111112", "123456"])
def test_provider_tokens_are_accepted(token: str) -> None:
    assert rules.check_payment_token(token) == token


def test_a_session_completes_once_and_before_it_expires() -> None:
    later = NOW + dt.timedelta(minutes=30)
    rules.check_session_open("initialized", later, NOW)
    with pytest.raises(StateConflict):
        rules.check_session_open("initialized", NOW, NOW)
    with pytest.raises(StateConflict):
        rules.check_session_open("completed", later, NOW)


def test_a_cart_changed_after_the_checkout_started_refuses_to_complete() -> None:
    rules.check_cart_unchanged("v1", "v1")
    with pytest.raises(StateConflict):
        rules.check_cart_unchanged("v1", "v2")


def test_an_idle_cart_expires_after_the_idle_time() -> None:
    assert rules.cart_expires_at(NOW, dt.timedelta(days=7)) == NOW + dt.timedelta(days=7)
    assert rules.guest_session_alive(NOW + dt.timedelta(seconds=1), NOW)
    assert not rules.guest_session_alive(NOW, NOW)
