"""Pure checkout rules: cart states, guest tokens, line pricing, tax and shipping, session expiry.

No I/O here: the services fetch prices, addresses and configuration rows; these functions decide.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
import secrets
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from typing import Final

from apps.common import pricing
from apps.common.errors import (
    FieldProblem,
    InconsistentFields,
    InvalidField,
    OutOfRange,
    StateConflict,
    UnknownReference,
)
from apps.common.pricing import MAX_AMOUNT, ZERO, CatalogPrice, PricedLine, price_line, round_money

ACTIVE: Final = "active"
CONVERTED: Final = "converted"
ABANDONED: Final = "abandoned"
INITIALIZED: Final = "initialized"
COMPLETED: Final = "completed"
MAX_QUANTITY: Final = 1000
GUEST_HEADER: Final = "X-Guest-Token"
GUEST_PREFIX: Final = "cs_"


class GuestAccessDenied(FieldProblem):
    """A guest's cart or checkout asked for without its token, or with another guest's: 403."""

    status_code = 403

    def __init__(self, message: str) -> None:
        super().__init__(GUEST_HEADER, message, source="header")


# -- identities -------------------------------------------------------------------------------------


def new_guest_token() -> str:
    """An opaque bearer token for a guest's cart: 256 random bits."""
    return secrets.token_urlsafe(32)


def hash_token(token: str) -> str:
    """What is stored and used as a key: a leaked table or Redis dump opens no cart."""
    return hashlib.sha256(token.encode()).hexdigest()


def new_session_id() -> str:
    """A cart's session id. For a guest it becomes the order's customer_id (VARCHAR(36)): the prefix
    keeps it apart from a customer's UUID."""
    return GUEST_PREFIX + secrets.token_hex(16)


def new_checkout_token() -> str:
    return secrets.token_urlsafe(32)


def check_guest_access(stored_hash: str | None, token: str | None) -> None:
    """A guest cart opens only with its own token; a customer's cart needs none."""
    if stored_hash is None:
        return
    if not token:
        raise GuestAccessDenied("this is a guest cart: send its token in the X-Guest-Token header")
    if not secrets.compare_digest(hash_token(token), stored_hash):
        raise GuestAccessDenied("this token does not open this cart")


def guest_session_alive(expires_at: dt.datetime | None, now: dt.datetime) -> bool:
    return expires_at is None or expires_at > now


# -- cart states ------------------------------------------------------------------------------------


def check_cart_open(status: str) -> None:
    """Only an active cart changes; a converted or abandoned one is history."""
    if status != ACTIVE:
        raise StateConflict("cart_id", f"the cart is {status}; start a new cart")


def cart_expires_at(changed_at: dt.datetime, idle: dt.timedelta) -> dt.datetime:
    """When an untouched cart becomes abandoned (and a guest's token stops opening it)."""
    return changed_at + idle


# -- pricing ----------------------------------------------------------------------------------------


def check_line_currency(product: CatalogPrice, cart_currency: str | None, field: str) -> str:
    """A cart holds one currency, set by its first line; a product whose price has more decimals than its
    currency has is not for sale (price_line's rule, checked as the line is added)."""
    if cart_currency is not None and product.currency != cart_currency:
        raise InconsistentFields(field, f"priced in {product.currency}, the cart's other items in {cart_currency}")
    price_line(product, 1, field=field)
    return product.currency


@dataclass(frozen=True, slots=True)
class CartLine:
    product_id: uuid.UUID
    quantity: int


def reprice(
    lines: Sequence[CartLine], catalog: Mapping[uuid.UUID, CatalogPrice], currency: str
) -> tuple[PricedLine, ...]:
    """Price every line at today's catalog price; a product withdrawn since it was added is named.

    The request (POST /api/checkout) names only the cart, so a line at fault is reported on ``cart_id``
    with the cart's line and product in the message: an ``items[n]`` key would name no field of that body.
    """
    priced: list[PricedLine] = []
    for index, line in enumerate(lines):
        product = catalog.get(line.product_id)
        if product is None:
            raise UnknownReference(
                "cart_id",
                f"the cart's items[{index}] (product {line.product_id}) is no longer for sale: remove it from the cart",
            )
        if product.currency != currency:
            raise InconsistentFields(
                "cart_id",
                f"the cart's items[{index}] (product {line.product_id}) is now priced in {product.currency}, "
                f"the cart in {currency}: remove it from the cart",
            )
        priced.append(price_line(product, line.quantity, field="cart_id"))
    return tuple(priced)


# -- shipping, tax, totals --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ShippingOption:
    id: str
    name: str
    cost: Decimal


def shipping_option(method_id: str, name: str, cost: Decimal, currency: str) -> ShippingOption:
    """A ``shipping_methods`` row as a checkout prices with it. Those rows are configuration changed with SQL,
    which checks only that a cost is not negative: a cost with more decimals than its currency has (500.50
    JPY) would make a total no card provider charges (the payment refuses it and the saga cancels the order
    at its deadline). The method is refused (422 naming ``shipping_method_id``) until its cost is corrected,
    never rounded: rounding would charge a cost nobody configured (as a product's price, ``price_line``)."""
    try:
        pricing.check_places("shipping_method_id", cost, currency)
    except InconsistentFields as exc:
        problem = f"shipping method {method_id!r}: its cost {exc.message}; not available until corrected"
        raise InconsistentFields("shipping_method_id", problem) from None
    return ShippingOption(method_id, name, cost)


@dataclass(frozen=True, slots=True, kw_only=True)
class Quote(pricing.Quote):
    """A checkout's quote: the shipping method it was priced with (its cost is ``shipping_amount``)."""

    shipping: ShippingOption


def tax_on(amount: Decimal, rate: Decimal, currency: str) -> Decimal:
    """Tax on the goods (after discounts), rounded half-up to the currency's unit (the cent; the yen: a
    total in hundredths of a yen is one no card provider charges, and the payment refuses it)."""
    return round_money(amount * rate, currency, ROUND_HALF_UP)


def quote(lines: Sequence[PricedLine], currency: str, shipping: ShippingOption, tax_rate: Decimal) -> Quote:
    """Totals of a checkout: goods, then tax on the goods, then the shipping method's fixed cost.
    There are no discount rules yet, so discount_amount is zero."""
    if not lines:
        raise StateConflict("cart_id", "the cart is empty")
    subtotal = sum((line.total_price for line in lines), ZERO)
    priced = Quote(
        currency=currency,
        lines=tuple(lines),
        subtotal=subtotal,
        tax_amount=tax_on(subtotal, tax_rate, currency),
        shipping_amount=shipping.cost,
        shipping=shipping,
    )
    if max(priced.subtotal, priced.total_amount) > MAX_AMOUNT:  # its order could not hold it either
        raise OutOfRange("cart_id", f"the checkout's total {priced.total_amount} is over {MAX_AMOUNT}")
    return priced


# -- payment method ---------------------------------------------------------------------------------

_CARD_LIKE = re.compile(r"[\d \-]{12,}")


def _luhn_valid(digits: str) -> bool:
    total = 0
    for index, char in enumerate(reversed(digits)):
        value = int(char)
        if index % 2:
            value = value * 2 - 9 if value > 4 else value * 2
        total += value
    return total % 10 == 0


def check_payment_token(token: str) -> str:
    """The payment provider's token, never a card number: something that looks like one is refused
    (and not stored or logged)."""
    digits = re.sub(r"[ \-]", "", token)
    if _CARD_LIKE.fullmatch(token) and digits.isdigit() and 12 <= len(digits) <= 19 and _luhn_valid(digits):
        raise InvalidField("payment_method.token", "looks like a card number; send the payment provider's token")
    return token


# -- checkout sessions ------------------------------------------------------------------------------


def check_session_open(status: str, expires_at: dt.datetime, now: dt.datetime) -> None:
    """A session completes once, before it expires."""
    if status != INITIALIZED:
        raise StateConflict("checkout_id", f"the checkout session is {status}")
    if expires_at <= now:
        raise StateConflict("checkout_id", "the checkout session has expired; start a new checkout")


def check_still_sold(lines: Sequence[PricedLine], catalog: Mapping[uuid.UUID, CatalogPrice], currency: str) -> None:
    """A session charges the prices it was started at, and completes only while the catalog still sells every
    line at them: a product withdrawn, repriced or moved to another currency since is a 409 naming ``cart_id``
    (a new checkout prices the cart as it is now). Completed regardless, a withdrawn product stayed for sale
    for the session's 30 minutes, and a price the catalog corrected stayed at its old value for whoever had
    started a checkout (a pricing mistake bought at leisure after it was fixed)."""
    for index, line in enumerate(lines):
        product = catalog.get(line.product_id)
        named = f"the cart's items[{index}] (product {line.product_id})"
        if product is None:
            raise StateConflict("cart_id", f"{named} is no longer for sale: remove it, then start a new checkout")
        if product.currency != currency or product.price != line.unit_price:
            raise StateConflict(
                "cart_id",
                f"{named} is now priced {product.price} {product.currency}, this checkout {line.unit_price} "
                f"{currency}: start a new checkout",
            )


def check_cart_unchanged(session_cart_version: str | None, cart_version: str) -> None:
    """The session was priced from the cart as it was; a cart changed since needs a new checkout."""
    if session_cart_version != cart_version:
        raise StateConflict("cart_id", "the cart changed after this checkout started; start a new checkout")
