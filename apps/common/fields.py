"""Patterns for text fields that the request schemas declare (so OpenAPI shows them) and the rules enforce.

A pattern here says exactly what the service accepts: the schema refuses what it does not match, and the
rules accept everything it does match, so the document and the server agree (a fuzzer checks both ways).
Patterns are anchored and use only syntax that Python's ``re`` and ECMA-262 (JSON Schema) read alike.
"""

from __future__ import annotations

import re
from typing import Final

__all__ = [
    "FREE_TEXT_PATTERN",
    "LINE_PATTERN",
    "NO_CONTROL_PATTERN",
    "has_control_characters",
    "pattern_in_words",
    "worded",
]

# The end of the value, in Python's re as in ECMA-262 (no newline before it).
_END: Final = r"(?!\n)$"

# What each pattern asks for, in words: a 400 for a value that does not match says this instead of the
# regex itself (a country code's was 1,100 characters of alternatives, LINE_PATTERN's a run of escapes).
_WORDS: dict[str, str] = {}


def worded(pattern: str, words: str) -> str:
    """Declare what ``pattern`` asks for (``words`` completes "must ..."), and return the pattern to declare.

    Used where a pattern is defined, so that a schema and its error message cannot drift apart. A final
    ``$`` comes back as ``(?!\\n)$``: Python's ``$`` also matches before a final newline, and msgspec checks a
    pattern with ``re.search``, so ``"1 Main St\\n"`` passed LINE_PATTERN and ``"US\\n"`` a country code
    (session 29, S); ECMA-262's ``$`` is the end already, so the document means what it did.
    """
    pattern = _ended(pattern)
    _WORDS[pattern] = words
    return pattern


def pattern_in_words(pattern: str) -> str | None:
    """What ``pattern`` asks for, if it was declared with :func:`worded` (as written there, or as returned)."""
    return _WORDS.get(_ended(pattern))


def _ended(pattern: str) -> str:
    if pattern.endswith("$") and not pattern.endswith((_END, "\\$")):
        return pattern[:-1] + _END
    return pattern


# Bidirectional embeddings, overrides and isolates (Trojan Source, CVE-2021-42574): text shown reversed from
# what it is ("\u202eevil" reads "live"). Right-to-left text needs none of them (W, session 34).
_BIDI_CONTROLS: Final = r"\u202a-\u202e\u2066-\u2069"
# Unicode category Cc: C0 controls, DEL, C1 controls, and the bidirectional controls. PostgreSQL refuses NUL
# outright; the others do not belong in a name or an address line.
_CONTROLS: Final = rf"\x00-\x1f\x7f-\x9f{_BIDI_CONTROLS}"
# What str.strip() removes besides controls (str.isspace), spelt out: ECMA's \s and Python's differ.
_SPACES: Final = r" \xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"

# One line of text: no control characters anywhere, and something besides spaces.
LINE_PATTERN: Final = worded(
    rf"^[^{_CONTROLS}]*[^{_CONTROLS}{_SPACES}][^{_CONTROLS}]*$",
    "must be one line of text, not only spaces, without control characters",
)
# An optional line, which may be blank: no control characters.
NO_CONTROL_PATTERN: Final = worded(rf"^[^{_CONTROLS}]*$", "must be one line of text without control characters")
# Free text (a description, a note): several lines, tabs, anything but the other controls (NUL, which
# PostgreSQL cannot store, a terminal's escape sequences) and the bidirectional ones.
FREE_TEXT_PATTERN: Final = worded(
    rf"^[^\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f{_BIDI_CONTROLS}]*$",
    "must be text without control characters other than tabs and line breaks",
)

_CONTROL_RE: Final = re.compile(f"[{_CONTROLS}]")


def has_control_characters(value: str) -> bool:
    """Whether ``value`` holds a control character anywhere, a trailing newline included.

    Rules check this on the raw value: Python's ``$`` also matches before a final newline, so a pattern
    alone would let ``"Ada\\n"`` through where JSON Schema refuses it.
    """
    return _CONTROL_RE.search(value) is not None

# The largest integer id the API takes (an address's, a cart line's, an order line's: BIGINT columns). Not 2**63 - 1:
# the OpenAPI document writes a bound as a JSON number, which clients and Litestar read as a double, so 2**63 - 1
# became 9.223372036854776e+18 there and a client trusting the document sent 2**63 (schemathesis did). 2**53 - 1
# is the largest integer a double holds exactly; the sequences behind these ids never come near it.
MAX_INT_ID: Final = 2**53 - 1
