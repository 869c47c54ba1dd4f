"""Pure catalog rules: what a valid price, currency, sku, name and status change look like. No I/O."""

from __future__ import annotations

import math
import re
from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation
from typing import Final, Literal

from apps.common.errors import InvalidField
from apps.common.fields import has_control_characters, worded

__all__ = [
    "ACTIVE",
    "CURRENCY_PATTERN",
    "DELETED",
    "INACTIVE",
    "MAX_NAME_LENGTH",
    "MAX_PRICE",
    "MAX_SKU_LENGTH",
    "PRICE_PATTERN",
    "SKU_PATTERN",
    "Status",
    "check_currency",
    "check_name",
    "check_price",
    "check_sku",
    "check_status_change",
]

Status = Literal["active", "inactive", "deleted"]
ACTIVE: Final = "active"
INACTIVE: Final = "inactive"
DELETED: Final = "deleted"

# products.price is NUMERIC(10,2): eight integer digits and cents. Checking here turns what would be a
# database overflow (a 500, or a rolled-back transaction) into a 400 that names the field.
PRICE_EXPONENT: Final = Decimal("0.01")
MAX_PRICE: Final = Decimal("99999999.99")
# A price as a decimal string: at most eight integer digits (no leading zero) and at most two decimals.
PRICE_PATTERN: Final = r"^(0|[1-9][0-9]{0,7})(\.[0-9]{1,2})?$"
_PRICE_RE: Final = re.compile(PRICE_PATTERN)
_PRICE_FORMAT: Final = f"must be a decimal string from 0 to {MAX_PRICE} with at most 2 decimal places, e.g. 19.90"

# ISO 4217 alphabetic codes: three uppercase Latin letters. Whether a code is currently assigned is a
# pricing policy question, not a format one, so it is not checked here.
CURRENCY_PATTERN: Final = worded(r"^[A-Z]{3}$", "must be an ISO 4217 currency code in capitals, e.g. USD")
_CURRENCY_RE: Final = re.compile(CURRENCY_PATTERN)

# SKUs are copied into orders, carts, returns and warehouse rows, and typed by people: letters, digits
# and a few separators, starting with a letter or digit, no whitespace.
MAX_SKU_LENGTH: Final = 64
SKU_PATTERN: Final = worded(
    r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$",
    "must be 1 to 64 letters, digits, dots, underscores or dashes, starting with a letter or digit",
)
_SKU_RE: Final = re.compile(SKU_PATTERN)

MAX_NAME_LENGTH: Final = 500  # products.name is VARCHAR(500)

# Statuses a client may set; "deleted" is only reached through a delete, and never left.
_SETTABLE: Final = frozenset({ACTIVE, INACTIVE})


def check_price(price: Decimal | str | float) -> Decimal:
    """Return ``price`` with exactly two decimal places, or raise if it is not a valid price.

    A string must match ``PRICE_PATTERN`` (what the request schema declares). A JSON number is read as the
    shortest decimal that reads back as it (what the client wrote), a cent amount up to float error: more
    decimals are left for the service's check against the currency (apps.common.pricing.check_places, a 422),
    never rounded (12.345 was sold as 12.34, a price nobody asked for).
    """
    if isinstance(price, str):
        if not _PRICE_RE.fullmatch(price):
            raise InvalidField("price", _PRICE_FORMAT)
        price = Decimal(price)
    elif isinstance(price, float):
        return _price_from_number(price)
    if not price.is_finite():
        raise InvalidField("price", "must be a finite number")
    if price < 0:
        raise InvalidField("price", "must be greater than or equal to 0")
    if price > MAX_PRICE:
        raise InvalidField("price", f"must be at most {MAX_PRICE}")
    try:
        quantized = price.quantize(PRICE_EXPONENT)
    except InvalidOperation:  # pragma: no cover - bounded above, so quantize cannot overflow
        raise InvalidField("price", "is not a valid amount") from None
    # quantize rounds; comparing refuses a third decimal instead of silently rounding it away
    # ("1.500" is still fine: it equals 1.50).
    if quantized != price:
        raise InvalidField("price", "must have at most 2 decimal places")
    # -0.00 compares equal to 0 but would be stored and shown with its sign.
    return quantized.copy_abs() if quantized.is_zero() else quantized


def _price_from_number(number: float) -> Decimal:
    price = Decimal(repr(number))  # the shortest decimal that reads back as this float: what the client wrote
    if not price.is_finite() or price < 0 or price > MAX_PRICE:
        raise InvalidField("price", f"must be between 0 and {MAX_PRICE}")
    cents = price.quantize(PRICE_EXPONENT, rounding=ROUND_HALF_EVEN)
    # Within binary float error of a cent amount (0.5700000000000001 is 57 * 0.01 in a client's arithmetic): that
    # amount. Further (12.345) is a third decimal the client wrote: kept, for the service's currency check to
    # refuse with a 422 naming price (apps.common.pricing.check_places), never rounded away.
    if math.isclose(number, float(cents), rel_tol=1e-12, abs_tol=1e-12):
        price = cents
    return price.copy_abs() if price.is_zero() else price


def check_currency(currency: str) -> str:
    """Return the currency code if it is three uppercase letters (ISO 4217 format)."""
    if not _CURRENCY_RE.fullmatch(currency):
        raise InvalidField("currency", "must be an ISO 4217 code: three uppercase letters, e.g. USD")
    return currency


def check_sku(sku: str) -> str:
    """Return the sku if it has the catalog's sku format."""
    if not _SKU_RE.fullmatch(sku):
        raise InvalidField(
            "sku",
            f"must be 1 to {MAX_SKU_LENGTH} letters, digits, '.', '_' or '-', starting with a letter or digit",
        )
    return sku


def check_name(name: str) -> str:
    """Return the name without surrounding whitespace; it must not be blank, too long or hold control
    characters (``LINE_PATTERN``, which the request schema declares)."""
    if has_control_characters(name):
        raise InvalidField("name", "must not contain control characters")
    stripped = name.strip()
    if not stripped:
        raise InvalidField("name", "must not be blank")
    if len(stripped) > MAX_NAME_LENGTH:
        raise InvalidField("name", f"must be at most {MAX_NAME_LENGTH} characters")
    return stripped


def check_status_change(current: str, new: str) -> str:
    """Return the new status if a client may move a product from ``current`` to it."""
    if new not in _SETTABLE:
        raise InvalidField("status", f"must be one of: {', '.join(sorted(_SETTABLE))}")
    if current == DELETED:
        raise InvalidField("status", "a deleted product cannot change status")
    return new
