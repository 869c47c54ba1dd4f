"""Pure logic of issue 14's protections: log redaction, the rate limit's setting and scope."""

from __future__ import annotations

import pytest

from apps.common.logs import redact
from apps.common.rate_limit import is_limited_route, parse_limit


@pytest.mark.parametrize(
    ("line", "secret"),
    [
        ("400: Validation failed for GET /api/orders?customer_id=ada%40example.com&limit=5", "ada%40example.com"),
        ("GET /api/customers?email=ada.lovelace@example.com", "ada.lovelace"),
        ("contact ada+shop@example.co.uk now", "ada+shop@example.co.uk"),
        ("Authorization: Bearer abcdefghijklmnop0123456789", "abcdefghijklmnop0123456789"),
        ("token eyJhbGciOiJFZERTQSJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJl", "eyJzdWIiOiJ4In0"),
        ("call +49 151 2345678 today", "2345678"),
        (
            "IntegrityError\nDETAIL:  Key (email)=(ada@example.com) already exists.\n[SQL: INSERT INTO c VALUES ($1)]\n"
            "[parameters: ('Ada', 'Lovelace', '1 Main St')]\n(Background on this error at: https://sqlalche.me/e/20/gkpj)",
            "Lovelace",
        ),
        # PostgreSQL's DETAIL of a NOT NULL or CHECK violation: the whole row, as asyncpg's str() and the
        # repr a "%r" log line shows (the newline escaped), and cut short by a log field's length limit.
        ('violates check constraint "c"\nDETAIL:  Failing row contains (3, 7 Hidden Lane, x).\n[SQL: I]', "Hidden"),
        ("IntegrityError('... not-null constraint\\nDETAIL:  Failing row contains (4, Zelda Quist, null).')", "Zelda"),
        ("DETAIL:  Failing row contains (5, 1 Main St\nFlat 2, null).", "Flat 2"),
        ("DETAIL:  Failing row contains (6, 12 Baker Str", "Baker"),
        # Unique, exclusion and foreign keys: an expression key, each wording PostgreSQL ends the value with.
        ("DETAIL:  Key (lower(street))=(12 baker street) already exists.", "baker"),
        ("DETAIL:  Key (lower((name)::text))=(ada lovelace) already exists.", "lovelace"),
        ("DETAIL:  Key (room)=(ada) conflicts with existing key (room)=(grace).", "grace"),
        ('DETAIL:  Key (name)=(Ada Lovelace) is still referenced from table "orders".', "Lovelace"),
        ("DETAIL:  Key (name)=(Ada Lovelace) is duplicated.", "Lovelace"),
        ("DETAIL:  Key (name)=(Ada Lovel", "Lovel"),
        # Values in the message itself: asyncpg's encoding errors, PostgreSQL's input errors.
        ("invalid input for query argument $1: 'Zelda Quist' (invalid UUID 'Zelda Quist': length ...)", "Zelda"),
        ('invalid input syntax for type uuid: "Zelda Quist"', "Zelda"),
        ('invalid input value for enum address_type: "Zelda Quist"', "Zelda"),
        ('value "4915112345678" is out of range for type integer', "4915112345678"),
        ('malformed array literal: "Zelda Quist"', "Zelda"),
        ('invalid input syntax for type json\nDETAIL:  Token "Zelda" is invalid.', "Zelda"),
    ],
)
def test_redact_blanks_personal_values(line: str, secret: str) -> None:
    assert secret not in redact(line)


@pytest.mark.parametrize(
    "line",
    [
        "request",
        "customer 01a21696-5bf7-7769-a4b3-e8015e124685 not found",
        "2026-11-26T06:42:58.164+00:00 took 12.5 ms",
        "401: a bearer token is required",
        "[SQL: INSERT INTO c VALUES ($1)]",
        'duplicate key value violates unique constraint "customers_email_key"',
        "GET /api/orders 200: key (id) looked up",
    ],
)
def test_redact_leaves_ordinary_lines_alone(line: str) -> None:
    assert redact(line) == line


def test_sql_errors_keep_their_statement_and_lose_their_values() -> None:
    redacted = redact(
        "[SQL: SELECT 1]\n[parameters: ('x',)]\n(Background on this error at: https://sqlalche.me/e/20/x)"
    )
    assert "[SQL: SELECT 1]" in redacted and "'x'" not in redacted and "Background" in redacted


@pytest.mark.parametrize(
    ("setting", "expected"),
    [("50/5s", (50, 5)), ("120/minute", (120, 60)), ("10/second", (10, 1)), ("1000/3600", (1000, 3600))],
)
def test_rate_limit_settings(setting: str, expected: tuple[int, int]) -> None:
    assert parse_limit(setting) == expected


@pytest.mark.parametrize("setting", ["", "50", "0/5s", "5/0s", "many/minute", "5/fortnight"])
def test_a_malformed_rate_limit_is_refused_at_start(setting: str) -> None:
    with pytest.raises(ValueError, match="RATE_LIMIT_WRITES"):
        parse_limit(setting)


def test_only_public_writes_are_limited() -> None:
    assert is_limited_route("POST", "/api/orders")
    assert is_limited_route("DELETE", "/api/carts/1/items/2")
    assert not is_limited_route("GET", "/api/orders")
    assert not is_limited_route("POST", "/api/internal/data-keys/x")
    assert not is_limited_route("POST", "/health")
