"""Unit tests for the catalog's pure rules (apps/catalog/rules.py) and its list cursor."""

from __future__ import annotations

import datetime as dt
import uuid
from decimal import Decimal

import pytest

from apps.catalog.rules import (
    MAX_PRICE,
    check_currency,
    check_name,
    check_price,
    check_sku,
    check_status_change,
)
from apps.common.errors import FieldProblem, InvalidField
from apps.common.pagination import decode_cursor, encode_cursor

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("0", "0.00"),
        ("19.9", "19.90"),
        ("19.99", "19.99"),
        ("1.500", "1.50"),  # trailing zeros are not extra precision
        ("99999999.99", "99999999.99"),
        ("-0.00", "0.00"),  # no signed zero in the catalog
    ],
)
def test_valid_prices_are_returned_with_exactly_two_decimals(given: str, expected: str) -> None:
    price = check_price(Decimal(given))
    assert str(price) == expected


@pytest.mark.parametrize(
    ("given", "message"),
    [
        ("-0.01", "greater than or equal to 0"),
        ("-5", "greater than or equal to 0"),
        ("1.999", "at most 2 decimal places"),
        ("0.001", "at most 2 decimal places"),
        ("100000000.00", f"at most {MAX_PRICE}"),
        ("1E+400", f"at most {MAX_PRICE}"),
        ("NaN", "finite"),
        ("Infinity", "finite"),
        ("-Infinity", "finite"),
    ],
)
def test_invalid_prices_name_the_price_field(given: str, message: str) -> None:
    with pytest.raises(InvalidField) as caught:
        check_price(Decimal(given))
    assert caught.value.field == "price"
    assert message in caught.value.message


@pytest.mark.parametrize("code", ["USD", "EUR", "JPY"])
def test_three_uppercase_letters_are_a_currency(code: str) -> None:
    assert check_currency(code) == code


@pytest.mark.parametrize("code", ["usd", "US", "USDT", "U5D", "", " USD", "USD\n", "ÜSD"])
def test_anything_else_is_not_a_currency(code: str) -> None:
    with pytest.raises(InvalidField) as caught:
        check_currency(code)
    assert caught.value.field == "currency"


@pytest.mark.parametrize("sku", ["A", "TSHIRT-RED-M", "sku_1.2", "0-9", "X" * 64, f"T-{uuid.uuid4()}"])
def test_valid_skus(sku: str) -> None:
    assert check_sku(sku) == sku


@pytest.mark.parametrize("sku", ["", "-LEADING-DASH", ".dot", "has space", "tab\t", "X" * 65, "ÄÖÜ", "a/b", "a\n"])
def test_invalid_skus_name_the_sku_field(sku: str) -> None:
    with pytest.raises(InvalidField) as caught:
        check_sku(sku)
    assert caught.value.field == "sku"


def test_names_are_stripped_and_must_not_be_blank_or_too_long() -> None:
    assert check_name("  Red shirt ") == "Red shirt"
    for bad in ("", "   ", "\t\n", "x" * 501):
        with pytest.raises(InvalidField) as caught:
            check_name(bad)
        assert caught.value.field == "name"


def test_a_client_may_switch_between_active_and_inactive() -> None:
    assert check_status_change("active", "inactive") == "inactive"
    assert check_status_change("inactive", "active") == "active"
    assert check_status_change("active", "active") == "active"


@pytest.mark.parametrize(("current", "new"), [("active", "deleted"), ("active", "archived"), ("deleted", "active")])
def test_deleted_is_neither_settable_nor_left(current: str, new: str) -> None:
    with pytest.raises(InvalidField) as caught:
        check_status_change(current, new)
    assert caught.value.field == "status"


def test_a_rule_violation_is_a_400_field_problem_that_says_which_field() -> None:
    violation = InvalidField("cursor", "is not a cursor", source="query")
    assert isinstance(violation, FieldProblem)
    assert violation.status_code == 400
    assert str(violation) == "cursor: is not a cursor"
    assert violation.source == "query"


def test_cursor_round_trips_and_is_url_safe() -> None:
    created_at = dt.datetime(2026, 11, 25, 16, 49, 12, 109355, tzinfo=dt.UTC)
    product_id = uuid.uuid4()
    token = encode_cursor(created_at, product_id)
    assert set(token) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
    assert decode_cursor(token) == (created_at, product_id)


@pytest.mark.parametrize("token", ["zzz", "not base64 !", "", "W10", "WyJub3QtYS1kYXRlIiwibm9wZSJd", "e30"])
def test_a_cursor_we_did_not_issue_is_a_query_error(token: str) -> None:
    with pytest.raises(InvalidField) as caught:
        decode_cursor(token)
    assert (caught.value.field, caught.value.source) == ("cursor", "query")
