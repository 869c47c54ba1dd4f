"""The operations that answer a repeated Idempotency-Key with ``Idempotent-Replayed: true`` say so in OpenAPI,
and the refund lists the 202 it answers while the provider's answer is awaited (N, session 31: the header was
in the README only, and the refund's document listed 201 alone)."""

from __future__ import annotations

import importlib
from typing import Any

import pytest

pytestmark = pytest.mark.unit

REPLAYING = [
    ("order", "/api/orders", "post", "201"),
    ("checkout", "/api/checkout/{checkout_id}/complete", "post", "202"),
    ("payment", "/api/payments/{payment_id}/refund", "post", "201"),
]


def _operation(service: str, path: str, method: str) -> dict[str, Any]:
    document = importlib.import_module(f"apps.{service}.app").create_app().openapi_schema.to_schema()
    operation: dict[str, Any] = document["paths"][path][method]
    return operation


@pytest.mark.parametrize(("service", "path", "method", "status"), REPLAYING)
def test_a_replaying_operation_documents_the_header(service: str, path: str, method: str, status: str) -> None:
    header = _operation(service, path, method)["responses"][status]["headers"]["Idempotent-Replayed"]
    assert header["schema"] == {"type": "string"}
    assert "Idempotency-Key" in header["description"]


def test_the_refund_documents_its_202() -> None:
    responses = _operation("payment", "/api/payments/{payment_id}/refund", "post")["responses"]
    assert {"201", "202"} <= set(responses)
    assert responses["202"]["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/RefundOut"}
