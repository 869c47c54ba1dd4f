"""A field pattern ends at the end of the value (session 29, S): Python's ``$`` also matches before a final
newline and msgspec checks patterns with ``re.search``, so the checkout stored a shipping address line
``"1 Main St\\n"`` (201) although LINE_PATTERN promises one line without control characters, and a country
``"US\\n"`` reached the shipping table (422 'we do not ship to US\\n'). Every pattern declared through
``worded`` now means in Python what it means in the OpenAPI document (ECMA-262)."""

from __future__ import annotations

import importlib
import re
from typing import Any

import msgspec
import pytest

from apps.common import fields
from apps.common.addresses import Address
from apps.common.pagination import CURSOR_PATTERN
from apps.common.topology import SERVICES
from apps.customer.rules import COUNTRY_PATTERN, EMAIL_PATTERN, PHONE_PATTERN, POSTAL_CODE_PATTERN

pytestmark = pytest.mark.unit

ADDRESS: dict[str, Any] = {"address_line1": "1 Main St", "city": "Springfield", "country": "US", "postal_code": "12345"}


def _every_schema_loaded() -> None:
    for spec in SERVICES:
        try:
            importlib.import_module(f"apps.{spec.name}.schemas")
        except ModuleNotFoundError:
            continue


@pytest.mark.parametrize("field", ["address_line1", "city", "country", "postal_code", "first_name"])
def test_the_shared_address_refuses_a_trailing_newline(field: str) -> None:
    good = {**ADDRESS, "first_name": "Ada"}
    assert msgspec.convert(good, Address)
    with pytest.raises(msgspec.ValidationError):
        msgspec.convert({**good, field: good[field] + "\n"}, Address)


@pytest.mark.parametrize(
    ("pattern", "value"),
    [
        (fields.LINE_PATTERN, "1 Main St"),
        (fields.NO_CONTROL_PATTERN, ""),
        (COUNTRY_PATTERN, "DE"),
        (EMAIL_PATTERN, "ada@example.com"),
        (PHONE_PATTERN, "+1 555 0100"),
        (POSTAL_CODE_PATTERN, "12345"),
        (CURSOR_PATTERN, "A" * 32),
    ],
)
def test_a_pattern_matches_the_value_and_not_the_value_and_a_newline(pattern: str, value: str) -> None:
    assert re.search(pattern, value)
    assert not re.search(pattern, value + "\n")


def test_free_text_may_still_end_with_a_newline() -> None:
    assert re.search(fields.NO_NUL_PATTERN, "two lines\nof text\n")


def test_every_worded_pattern_ends_at_the_end_of_the_value() -> None:
    _every_schema_loaded()
    declared = dict(fields._WORDS)
    assert len(declared) > 10
    for pattern in declared:
        assert not pattern.endswith("$") or pattern.endswith(r"(?!\n)$"), pattern
        assert fields.pattern_in_words(pattern) is not None
