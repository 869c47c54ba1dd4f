"""A 400 says what a field must be, in words, and names a missing parameter in ``extra`` like any other.

Found walking the APIs: a country "XX" answered 1,100 characters of ISO codes as its message, a blank
name the escaped LINE_PATTERN, an email the RFC regex; `GET /api/orders` without `customer_id` and a refund
without `Idempotency-Key` answered a 400 whose ``extra`` named nothing.
"""

from __future__ import annotations

from typing import Annotated, Any

import msgspec
import pytest
from litestar import Litestar, get, post
from litestar.params import Parameter
from litestar.testing import TestClient
from msgspec import Meta

from apps.common.addresses import Address
from apps.common.error_handlers import exception_handlers
from apps.common.fields import LINE_PATTERN, pattern_in_words
from apps.common.pagination import CURSOR_PATTERN, Cursor
from apps.customer.rules import COUNTRY_PATTERN, EMAIL_PATTERN

pytestmark = pytest.mark.unit


class Person(msgspec.Struct, forbid_unknown_fields=True):
    name: Annotated[str, Meta(pattern=LINE_PATTERN)]
    email: Annotated[str, Meta(pattern=EMAIL_PATTERN)]
    country: Annotated[str, Meta(pattern=COUNTRY_PATTERN)]
    code: Annotated[str, Meta(pattern="^[a-z]{2}$")] = "ab"
    tag: Annotated[str, Meta(pattern="^(" + "|".join(f"t{n}" for n in range(40)) + ")$")] = "t1"


@post("/api/people", sync_to_thread=False)
def create_person(data: Person) -> str:
    return "ok"


@post("/api/parcels", sync_to_thread=False)
def send_parcel(data: Address) -> str:
    return "ok"


@get("/api/things", sync_to_thread=False)
def things(owner: str, key: Annotated[str, Parameter(header="Idempotency-Key")], cursor: Cursor = None) -> str:
    return "ok"


def client() -> TestClient[Any]:
    app = Litestar([create_person, send_parcel, things], exception_handlers=exception_handlers(), logging_config=None)
    return TestClient(app)


GOOD = {"name": "Ada", "email": "ada@example.com", "country": "GB"}


@pytest.mark.parametrize(
    ("field", "value", "expected"),
    [
        ("country", "XX", "must be an assigned ISO 3166-1 alpha-2 country code in capitals, e.g. US"),
        ("name", "   ", "must be one line of text, not only spaces, without control characters"),
        ("email", "not-an-email", "must be an email address, e.g. ada@example.com"),
        # A short pattern nobody worded is shown as it is; a long one is not shown at all.
        ("code", "ABC", "Expected `str` matching regex '^[a-z]{2}$'"),
        ("tag", "nope", "does not match this field's pattern (see the service's OpenAPI document, /schema)"),
    ],
)
def test_a_pattern_mismatch_says_what_the_field_must_be(field: str, value: str, expected: str) -> None:
    with client() as http:
        response = http.post("/api/people", json={**GOOD, field: value})
    assert response.status_code == 400, response.text
    assert response.json()["extra"] == [{"message": expected, "key": field, "source": "body"}]


def test_a_nested_field_of_the_shared_address_is_worded_too() -> None:
    with client() as http:
        response = http.post("/api/parcels", json={"address_line1": "1 Main St", "city": "X", "country": "usa"})
    assert response.status_code == 400, response.text
    assert response.json()["extra"][0]["message"] == pattern_in_words("^[A-Z]{2}$")
    assert response.json()["extra"][0]["key"] == "country"


def test_a_query_parameter_pattern_is_worded() -> None:
    with client() as http:
        response = http.get("/api/things?owner=me&cursor=garbage", headers={"Idempotency-Key": "k"})
    assert response.status_code == 400, response.text
    assert response.json()["extra"] == [
        {"message": pattern_in_words(CURSOR_PATTERN), "key": "cursor", "source": "query"}
    ]
    assert pattern_in_words(CURSOR_PATTERN) == "must be the previous page's next_cursor, as given"


@pytest.mark.parametrize(
    ("query", "headers", "key", "source"),
    [("", {"Idempotency-Key": "k"}, "owner", "query"), ("?owner=me", {}, "Idempotency-Key", "header")],
)
def test_a_missing_parameter_is_named_in_extra(query: str, headers: dict[str, str], key: str, source: str) -> None:
    with client() as http:
        response = http.get(f"/api/things{query}", headers=headers)
    assert response.status_code == 400, response.text
    assert response.json()["detail"].startswith(f"Missing required {source} parameter '{key}'")
    assert response.json()["extra"] == [{"message": "required", "key": key, "source": source}]


def test_a_400s_detail_names_the_path_without_the_query_string() -> None:
    """The query may hold what the caller typed (an email as an id): not echoed back (S, session 28)."""
    with client() as http:
        bad = http.get("/api/things?owner=ada@example.com&cursor=x", headers={"Idempotency-Key": "k"})
        missing = http.get("/api/things?cursor=ada@example.com", headers={"Idempotency-Key": "k"})
    assert bad.status_code == 400 and bad.json()["detail"] == "Validation failed for GET /api/things", bad.text
    assert missing.status_code == 400, missing.text
    assert missing.json()["detail"] == "Missing required query parameter 'owner' for GET /api/things"
    assert "ada@example.com" not in bad.text + missing.text
