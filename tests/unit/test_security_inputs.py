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

# Hebrew and Arabic street names, escaped (ruff takes some letters for Latin look-alikes).
RIGHT_TO_LEFT = "\u05e8\u05d7\u05d5\u05d1 \u05d4\u05e8\u05e6\u05dc 1, \u0634\u0627\u0631\u0639 5"
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
    assert re.search(fields.FREE_TEXT_PATTERN, "two lines\nof text\n")


@pytest.mark.parametrize(
    "value",
    ["a\x1b[31mred", "bell\x07", "form\x0cfeed", "del\x7f", "next\x85line", "nul\x00", "\u202eevil.exe", "a\u2066b"],
)
def test_free_text_refuses_control_characters_other_than_tabs_and_line_breaks(value: str) -> None:
    """A return's description, an order's notes, a product's description took any character but NUL (W,
    session 34): a terminal escape (ESC [31m ...) or a bidirectional override reached whoever reads them."""
    assert not re.search(fields.FREE_TEXT_PATTERN, value)
    assert re.search(fields.FREE_TEXT_PATTERN, "tab\there,\r\nCRLF and LF\nGrüße, " + RIGHT_TO_LEFT)


@pytest.mark.parametrize("value", ["\u202eevil", "a\u202ab", "a\u2067b\u2069", "x\u2068"])
def test_a_line_refuses_bidirectional_controls_and_keeps_right_to_left_text(value: str) -> None:
    """Trojan Source's characters (CVE-2021-42574): a name or an address line shown reversed from what it is
    (U+202E before 'evil' shows 'live'). Right-to-left text needs none of them."""
    assert not re.search(fields.LINE_PATTERN, value) and not re.search(fields.NO_CONTROL_PATTERN, value)
    assert fields.has_control_characters(value)
    for line in (RIGHT_TO_LEFT, "Ünter den Linden 1"):
        assert re.search(fields.LINE_PATTERN, line) and not fields.has_control_characters(line)


def test_every_worded_pattern_ends_at_the_end_of_the_value() -> None:
    _every_schema_loaded()
    declared = dict(fields._WORDS)
    assert len(declared) > 10
    for pattern in declared:
        assert not pattern.endswith("$") or pattern.endswith(r"(?!\n)$"), pattern
        assert fields.pattern_in_words(pattern) is not None
