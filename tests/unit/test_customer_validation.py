"""Unit tests for the customer service's pure input rules (apps/customer/rules.py)."""

from __future__ import annotations

import re

import pytest

from apps.common.errors import InvalidField
from apps.customer.rules import (
    COUNTRY_CODES,
    EMAIL_PATTERN,
    MAX_NAME_LENGTH,
    check_address_type,
    check_country,
    check_email,
    check_name,
    check_optional_text,
    check_phone,
    check_postal_code,
    check_text,
)

pytestmark = pytest.mark.unit


# --- email ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("given", "stored"),
    [
        ("ada@example.com", "ada@example.com"),
        ("Ada.Lovelace@Example.COM", "ada.lovelace@example.com"),  # unique case-insensitively: stored lower
        ("ada+orders@mail.example.co.uk", "ada+orders@mail.example.co.uk"),
        ("o'brien@example.ie", "o'brien@example.ie"),
        ("a_b-c@sub-domain.example.org", "a_b-c@sub-domain.example.org"),
        ("  ada@example.com\n", "ada@example.com"),  # surrounding whitespace is not part of the address
        ("ada@xn--mnchen-3ya.de", "ada@xn--mnchen-3ya.de"),  # IDN domain, punycode
        ("ada@example.xn--p1ai", "ada@example.xn--p1ai"),  # IDN top-level domain
        ("x" * 64 + "@example.com", "x" * 64 + "@example.com"),
    ],
)
def test_valid_emails_are_stored_lower_cased(given: str, stored: str) -> None:
    assert check_email(given) == stored


@pytest.mark.parametrize(
    "given",
    [
        "",
        "ada",
        "ada@",
        "@example.com",
        "ada@example",  # no top-level domain
        "ada@example.c",  # one-letter top-level domain
        "ada@@example.com",
        "ada@b@example.com",
        "ada lovelace@example.com",
        "ada@exa mple.com",
        ".ada@example.com",
        "ada.@example.com",
        "ada..lovelace@example.com",
        "ada@-example.com",
        "ada@example-.com",
        "ada@example..com",
        "ada@[127.0.0.1]",
        '"ada"@example.com',
        "adä@example.com",  # non-ASCII local part
        "ada@exämple.com",  # IDN domain not in punycode
        "ada@example.com\nbcc@example.com",
    ],
)
def test_invalid_emails_name_the_email_field(given: str) -> None:
    with pytest.raises(InvalidField) as caught:
        check_email(given)
    assert caught.value.field == "email"


def test_email_length_limits_are_rfc_5321s() -> None:
    with pytest.raises(InvalidField, match="before '@' must be at most 64"):
        check_email("x" * 65 + "@example.com")
    longest = "x@" + ("d" * 61 + ".") * 4 + "com"  # 2 + 248 + 3 = 253 characters
    assert check_email(longest) == longest
    with pytest.raises(InvalidField, match="at most 254"):
        check_email("xy@" + ("d" * 61 + ".") * 4 + "info")


def test_the_field_name_can_be_chosen() -> None:
    with pytest.raises(InvalidField) as caught:
        check_email("nope", field="new_email")
    assert (caught.value.field, caught.value.source) == ("new_email", "body")


@pytest.mark.parametrize(
    "given", ["ada@example.com", "Ada.Lovelace+x@Example.COM", "o'brien@example.ie", "ada@xn--mnchen-3ya.de"]
)
def test_the_schema_pattern_lets_every_valid_email_through(given: str) -> None:
    # The schema's pattern is a coarse first check; it must never refuse what check_email accepts.
    check_email(given)
    assert re.search(EMAIL_PATTERN, given)


@pytest.mark.parametrize("given", ["ada", "ada@example", "ada lovelace@example.com", "ada@b@example.com"])
def test_the_schema_pattern_refuses_what_is_plainly_not_an_email(given: str) -> None:
    assert not re.search(EMAIL_PATTERN, given)


# --- names and free text --------------------------------------------------------------------------


def test_names_are_trimmed() -> None:
    assert check_name("  Ada ", field="first_name") == "Ada"
    assert check_name("José-María O'Neill", field="last_name") == "José-María O'Neill"


@pytest.mark.parametrize(
    ("given", "message"),
    [
        ("", "blank"),
        ("   ", "blank"),
        ("x" * (MAX_NAME_LENGTH + 1), f"at most {MAX_NAME_LENGTH}"),
        ("Ada\nLovelace", "control characters"),
        ("Ada\x00", "control characters"),
        ("Ada\tL", "control characters"),
    ],
)
def test_invalid_names_name_their_field(given: str, message: str) -> None:
    with pytest.raises(InvalidField) as caught:
        check_name(given, field="last_name")
    assert caught.value.field == "last_name"
    assert message in caught.value.message


def test_a_long_name_that_is_short_once_trimmed_is_accepted() -> None:
    assert check_name(" " * 10 + "x" * MAX_NAME_LENGTH + " ", field="first_name") == "x" * MAX_NAME_LENGTH


def test_optional_text_turns_blank_into_none() -> None:
    assert check_optional_text("address_line2", None, max_length=10) is None
    assert check_optional_text("address_line2", "   ", max_length=10) is None
    assert check_optional_text("address_line2", " Apt 4 ", max_length=10) == "Apt 4"
    with pytest.raises(InvalidField, match="at most 10"):
        check_optional_text("address_line2", "x" * 11, max_length=10)


def test_required_text_must_not_be_blank() -> None:
    with pytest.raises(InvalidField) as caught:
        check_text("city", " ", max_length=100)
    assert caught.value.field == "city"


# --- phone ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("given", "stored"),
    [
        ("+44 20 7946 0958", "+442079460958"),
        ("+1 (415) 555-2671", "+14155552671"),
        ("030.1234.5678", "03012345678"),
        ("1234567", "1234567"),  # 7 digits: the shortest
        ("+123456789012345", "+123456789012345"),  # 15 digits: E.164's longest
    ],
)
def test_phones_are_stored_without_separators(given: str, stored: str) -> None:
    assert check_phone(given) == stored


@pytest.mark.parametrize(
    "given", ["", "123456", "1234567890123456", "+49 CALL", "49+30123456", "++4930123456", "+", "phone"]
)
def test_invalid_phones_name_the_phone_field(given: str) -> None:
    with pytest.raises(InvalidField) as caught:
        check_phone(given)
    assert caught.value.field == "phone"


# --- addresses ------------------------------------------------------------------------------------


@pytest.mark.parametrize("code", ["DE", "US", "GB", "FR", "JP", "BR", "AX", "CW", "SS"])
def test_assigned_country_codes_are_accepted(code: str) -> None:
    assert check_country(code) == code


@pytest.mark.parametrize("code", ["de", "De", "XX", "UK", "EU", "XK", "DEU", "D", "", " DE"])
def test_other_country_codes_are_refused(code: str) -> None:
    with pytest.raises(InvalidField) as caught:
        check_country(code)
    assert caught.value.field == "country"


def test_the_country_list_is_iso_3166_1_alpha_2() -> None:
    assert len(COUNTRY_CODES) == 249  # the officially assigned codes
    assert all(re.fullmatch(r"[A-Z]{2}", code) for code in COUNTRY_CODES)


@pytest.mark.parametrize(
    ("given", "stored"), [("10115", "10115"), (" SW1A 1AA ", "SW1A 1AA"), ("1234-567", "1234-567")]
)
def test_postal_codes_are_trimmed(given: str, stored: str) -> None:
    assert check_postal_code(given) == stored


@pytest.mark.parametrize("given", [None, "", "  "])
def test_an_absent_postal_code_is_none(given: str | None) -> None:
    assert check_postal_code(given) is None


@pytest.mark.parametrize("given", ["10115;", "-10115", "1" * 21, "10\n115"])
def test_invalid_postal_codes_name_the_field(given: str) -> None:
    with pytest.raises(InvalidField) as caught:
        check_postal_code(given)
    assert caught.value.field == "postal_code"


def test_address_types_are_shipping_and_billing() -> None:
    assert check_address_type("shipping") == "shipping"
    assert check_address_type("billing") == "billing"
    with pytest.raises(InvalidField) as caught:
        check_address_type("home")
    assert caught.value.field == "type"
