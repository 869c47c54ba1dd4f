"""POST /api/checkout's document says which shipping methods and card tokens work, and an order's which
statuses it takes (N, session 31: a caller reading only the OpenAPI document had no value to try for either,
nor the statuses to expect; the README had them)."""

from __future__ import annotations

import pytest

from apps.checkout.app import create_app
from apps.order.app import create_app as create_order_app
from apps.order.rules import STATUSES

pytestmark = pytest.mark.unit


def test_checkout_documents_a_shipping_method_and_a_sandbox_token() -> None:
    schemas = create_app().openapi_schema.to_schema()["components"]["schemas"]
    method = schemas["CheckoutCreate"]["properties"]["shipping_method_id"]
    token = schemas["PaymentMethod"]["properties"]["token"]
    assert method["examples"] == ["standard"]
    assert "express" in method["description"]
    assert token["examples"] == ["tok_visa"]
    assert "tok_chargeDeclined" in token["description"]
    assert method["minLength"] == 1, "the constraints stay"


def test_an_order_documents_its_statuses_and_the_step_it_waits_on() -> None:
    order = create_order_app().openapi_schema.to_schema()["components"]["schemas"]["OrderOut"]["properties"]
    assert set(order["status"]["enum"]) == set(STATUSES)
    assert order["waiting_on"]["enum"] == ["reservation", "payment", None]
    assert "capture_failed" in order["payment_status"]["description"]
