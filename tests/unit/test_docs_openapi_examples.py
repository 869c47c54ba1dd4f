"""POST /api/checkout's document says which shipping methods and card tokens work (N, session 31: a caller
reading only the OpenAPI document had no value to try for either; the README's walkthrough had them)."""

from __future__ import annotations

import pytest

from apps.checkout.app import create_app

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
