"""Each currency's precision, one rule (apps/common/pricing.py) wherever money enters or is computed: an amount
with more decimals than its currency has is refused, never rounded where the provider would round it; a
payment's calls are sent in the minor unit its authorization was (payments.amount_minor, minor_exponent)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from decimal import Decimal

import pytest

from apps.checkout.rules import CartLine, ShippingOption, check_line_currency, quote, reprice
from apps.common.errors import FieldProblem, InconsistentFields
from apps.common.pricing import (
    CatalogPrice,
    PricedLine,
    check_places,
    decimals,
    minor_units,
    price_line,
    round_money,
)
from apps.order.rules import RequestedLine, price_order
from apps.payment.rules import check_authorization, sent_minor
from apps.returns.rules import OrderLine, OrderTerms, ReturnedLine, compute_refund

D = Decimal


def product(price: str, currency: str) -> CatalogPrice:
    pid = uuid.uuid4()
    return CatalogPrice(pid, f"SKU-{pid.hex[:6]}", "Thing", D(price), currency)


@pytest.mark.parametrize(
    ("currency", "places"), [("JPY", 0), ("krw", 0), ("USD", 2), ("EUR", 2), ("XYZ", 2), ("KWD", 2), ("BHD", 2)]
)
def test_decimals_an_amount_may_have(currency: str, places: int) -> None:
    """Three-decimal currencies hold two here: every amount column is NUMERIC(_, 2)."""
    assert decimals(currency) == places


@pytest.mark.parametrize(
    ("amount", "currency"), [("100.50", "JPY"), ("0.1", "KRW"), ("12.345", "EUR"), ("1.2345", "KWD"), ("1.999", "USD")]
)
def test_more_decimals_than_the_currency_has_is_a_422_naming_the_field(amount: str, currency: str) -> None:
    with pytest.raises(InconsistentFields) as refused:
        check_places("price", D(amount), currency)
    assert (refused.value.field, refused.value.status_code) == ("price", 422)
    assert currency.upper() in refused.value.message


@pytest.mark.parametrize(("amount", "currency"), [("100", "JPY"), ("100.00", "JPY"), ("12.34", "EUR"), ("1.2", "KWD")])
def test_amounts_within_the_currency_pass_unchanged(amount: str, currency: str) -> None:
    assert check_places("amount", D(amount), currency) == D(amount)


def test_a_computed_amount_rounds_at_the_currencys_precision() -> None:
    assert round_money(D("72.5"), "JPY") == D("73.00")  # 1000 JPY x 7.25 %: half up to the yen
    assert round_money(D("72.49"), "JPY") == D("72.00")
    assert round_money(D("33.339"), "JPY", "ROUND_DOWN") == D("33.00")
    assert round_money(D("0.125"), "USD") == D("0.13")
    assert str(round_money(D("72.5"), "JPY")) == "73.00"  # shown as every amount column holds it


def test_a_product_priced_below_its_currencys_unit_is_not_for_sale_in_an_order() -> None:
    """Priced before the catalog refused it: the order names the line, it never charges a rounded price."""
    fine, fractional = product("100", "JPY"), product("100.50", "JPY")
    lines = [RequestedLine(fine.product_id, 1), RequestedLine(fractional.product_id, 2)]
    with pytest.raises(InconsistentFields) as refused:
        price_order(lines, {p.product_id: p for p in (fine, fractional)})
    assert refused.value.field == "items[1].product_id"
    assert "100.50 JPY" in refused.value.message
    assert price_order(lines[:1], {fine.product_id: fine}).subtotal == D("100")


def test_nor_in_a_cart_nor_at_checkout() -> None:
    fractional = product("100.50", "JPY")
    with pytest.raises(InconsistentFields) as added:
        check_line_currency(fractional, None, "product_id")
    assert added.value.field == "product_id"
    with pytest.raises(InconsistentFields) as checked_out:
        reprice([CartLine(fractional.product_id, 1)], {fractional.product_id: fractional}, "JPY")
    assert checked_out.value.field == "cart_id"


def test_price_line_keeps_cents_where_the_currency_has_them() -> None:
    line = price_line(product("19.9", "USD"), 3, field="product_id")
    assert (str(line.unit_price), str(line.total_price)) == ("19.90", "59.70")


def test_an_authorization_with_more_decimals_than_its_currency_breaks_the_contract() -> None:
    with pytest.raises(FieldProblem) as refused:
        check_authorization(D("100.50"), "JPY", "tok_visa")
    assert refused.value.field == "amount"
    check_authorization(D("100"), "JPY", "tok_visa")


@dataclass
class Row:
    amount: Decimal
    currency: str
    amount_minor: int | None
    minor_exponent: int | None


def test_calls_are_sent_in_the_unit_the_authorization_was_sent_in() -> None:
    before_ff6ffb9 = Row(D("10.50"), "BHD", 1050, 2)
    assert sent_minor(D("10.50"), before_ff6ffb9) == 1050  # today's table would say 10500
    assert sent_minor(D("4.25"), before_ff6ffb9) == 425
    today = Row(D("10.50"), "BHD", 10500, 3)
    assert (sent_minor(D("10.50"), today), sent_minor(D("4.25"), today)) == (10500, 4250)


def test_a_row_written_without_them_is_sent_by_todays_table() -> None:
    """The release before payment_0005, still running while it is deployed, sent today's table."""
    assert sent_minor(D("10.50"), Row(D("10.50"), "KWD", None, None)) == 10500
    assert sent_minor(D("12.34"), Row(D("20.00"), "USD", None, None)) == 1234


def test_the_whole_amount_is_the_stored_integer() -> None:
    """A legacy authorization of a fraction (100.50 JPY sent as 101) is captured as what it holds."""
    assert sent_minor(D("100.50"), Row(D("100.50"), "JPY", 101, 0)) == 101
    assert minor_units(D("12.34"), 2) == 1234
    assert minor_units(D("12.34"), 3) == 12340


# --- amounts computed from others: at the currency's precision, never a fraction of a yen ---------------


def yen_lines() -> list[PricedLine]:
    return [price_line(product("1000", "JPY"), 1, field="product_id"), price_line(product("333", "JPY"), 1, field="x")]


def test_a_checkouts_tax_rounds_to_the_currencys_unit() -> None:
    """1,333 JPY at 7.25 %: 96.64 yen of tax was kept to the cent, a total no card provider can charge (the
    payment now refuses it, so the order would have been cancelled at its deadline)."""
    priced = quote(yen_lines(), "JPY", ShippingOption("standard", "Standard", D("500")), D("0.0725"))
    assert priced.tax_amount == D("97.00")
    assert priced.total_amount == D("1930.00")
    dollars = [price_line(product("13.33", "USD"), 1, field="product_id")]
    assert quote(dollars, "USD", ShippingOption("standard", "Standard", D("5")), D("0.0725")).tax_amount == D("0.97")


YEN_TERMS = OrderTerms("JPY", D("1333"), D("0"), D("97"), D("500"))
YEN_ORDER = {
    1: OrderLine(1, uuid.uuid4(), "A", "A", 1, D("1000")),
    2: OrderLine(2, uuid.uuid4(), "B", "B", 1, D("333")),
}


def test_a_returns_shares_of_tax_and_shipping_are_whole_yen_rounded_down() -> None:
    first = compute_refund(YEN_ORDER, [ReturnedLine(2, 1)], YEN_TERMS, refund_shipping=True, refund_tax=True)
    # 333 of 1333: tax 97 x 333 / 1333 = 24.23 -> 24, shipping 500 x 333 / 1333 = 124.9 -> 124
    assert (first.items, first.shipping, first.total) == ({2: D("357.00")}, D("124.00"), D("481.00"))
    second = compute_refund(YEN_ORDER, [ReturnedLine(1, 1)], YEN_TERMS, refund_shipping=True, refund_tax=True)
    assert all(check_places("amount", amount, "JPY") for amount in (*second.items.values(), second.shipping))
    paid = YEN_TERMS.subtotal + YEN_TERMS.tax_amount + YEN_TERMS.shipping_amount
    assert first.total + second.total <= paid


def test_returns_of_a_discounted_order_never_add_up_to_more_than_was_paid() -> None:
    """A discount's share comes off the refund: rounded down, it made each refund a cent too large (10.00 of
    goods less 3.33 of a third of 10.00 off: three returns gave back 20.01 of the 20.00 paid)."""
    lines = {n: OrderLine(n, uuid.uuid4(), f"S{n}", f"N{n}", 1, D("10.00")) for n in (1, 2, 3)}
    terms = OrderTerms("USD", D("30.00"), D("10.00"), D("0.00"), D("0.00"))
    refunds = [
        compute_refund(lines, [ReturnedLine(n, 1)], terms, refund_shipping=False, refund_tax=False).total
        for n in (1, 2, 3)
    ]
    assert sum(refunds) <= terms.subtotal - terms.discount_amount, refunds
    assert refunds == [D("6.66")] * 3
