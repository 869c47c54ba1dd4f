"""A public route's OpenAPI lists the 401 it answers to a bad token, and checkout's the 401/403 of its carts.

A first-time caller (N, session 31) found them missing: `GET /api/products` with an expired token is a 401
(a token sent is verified on every route), a customer's cart without their token a 401, a guest cart without
its X-Guest-Token a 403, yet those operations documented neither.
"""

from __future__ import annotations

import importlib
from typing import Any

import pytest

from apps.common.topology import SERVICES

pytestmark = pytest.mark.unit

METHODS = {"get", "put", "post", "patch", "delete"}


def _document(name: str) -> dict[str, Any]:
    app = importlib.import_module(f"apps.{name}.app").create_app()
    document: dict[str, Any] = app.openapi_schema.to_schema()
    return document


def _operations(document: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    return [
        (f"{method.upper()} {path}", operation)
        for path, item in document["paths"].items()
        for method, operation in item.items()
        if method in METHODS and path.startswith("/api/")
    ]


@pytest.mark.parametrize("name", [spec.name for spec in SERVICES])
def test_every_operation_that_takes_a_token_lists_401(name: str) -> None:
    missing = [
        where
        for where, operation in _operations(_document(name))
        if "security" in operation and "401" not in operation["responses"]
    ]
    assert missing == [], f"{name}: a token sent there is verified, a bad one is a 401"


def test_public_routes_say_a_token_is_optional_in_their_401() -> None:
    operation = _document("catalog")["paths"]["/api/products"]["get"]
    assert operation["security"] == [{}, {"bearer": []}]
    assert "none is needed" in operation["responses"]["401"]["description"]


def test_checkout_cart_and_checkout_routes_list_their_401_and_403() -> None:
    operations = _operations(_document("checkout"))
    shopping = [(where, op) for where, op in operations if where.split()[1].startswith(("/api/carts", "/api/checkout"))]
    assert len(shopping) == 8
    for where, operation in shopping:
        assert {"401", "403"} <= set(operation["responses"]), where
        assert "X-Guest-Token" in operation["responses"]["403"]["description"], where
