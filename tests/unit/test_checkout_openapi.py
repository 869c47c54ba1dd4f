"""POST /api/carts reads its optional body by hand, so its OpenAPI body is declared by hand: it must be CartCreate."""

from __future__ import annotations

import msgspec
import pytest

from apps.checkout.app import create_app
from apps.checkout.schemas import CartCreate

pytestmark = pytest.mark.unit


def test_post_carts_documents_its_optional_body_as_cart_create() -> None:
    document = create_app().openapi_schema.to_schema()
    operation = document["paths"]["/api/carts"]["post"]
    assert {"200", "201"} <= set(operation["responses"]), "a customer's existing active cart answers 200"
    body = operation["requestBody"]
    assert body["required"] is False, "no body at all is a guest cart"
    schema = body["content"]["application/json"]["schema"]
    assert set(schema["properties"]) == {field.name for field in msgspec.structs.fields(CartCreate)}
    assert schema["additionalProperties"] is False  # CartCreate forbids unknown fields
    assert CartCreate.__struct_config__.forbid_unknown_fields
    assert {"type": "string", "format": "uuid"} in schema["properties"]["customer_id"]["oneOf"]
