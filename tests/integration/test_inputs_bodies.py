"""Odd request bodies on every write operation of every running service: a 4xx naming the body, never a 500.

The operations are read from each service's own OpenAPI document, so an endpoint added later is covered
without touching this file. Path parameters get fresh ids (an unknown id is fine: the body is decoded
before the handler looks anything up).
"""

from __future__ import annotations

import re
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from apps.common.topology import SERVICES
from tests.support.http import api_client, service_url

pytestmark = pytest.mark.usefixtures("stack")

WITH_API = [spec.name for spec in SERVICES if spec.name != "analytics"]
_WRITES = ("post", "put", "patch", "delete")
_PATH_PARAMETER = re.compile(r"\{(?P<name>[^}:]+)(?::[^}]+)?\}")


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with api_client(timeout=60) as client:
        yield client


async def write_operations(http: httpx.AsyncClient, service: str) -> list[tuple[str, str]]:
    document = (await http.get(f"{service_url(service)}/schema/openapi.json")).json()
    found: list[tuple[str, str]] = []
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            if method in _WRITES and "requestBody" in operation:
                found.append((method.upper(), _filled(path, operation)))
    return found


def _filled(path: str, operation: dict[str, Any]) -> str:
    """The path with a value each parameter takes (an integer id, else a uuid), so the body is what is judged."""
    kinds = {p["name"]: p.get("schema", {}).get("type") for p in operation.get("parameters", [])}
    return _PATH_PARAMETER.sub(lambda m: "1" if kinds.get(m["name"]) == "integer" else str(uuid.uuid4()), path)


async def answers_to(http: httpx.AsyncClient, service: str, body: bytes) -> dict[str, tuple[int, Any]]:
    headers = {"Content-Type": "application/json", "Idempotency-Key": f"odd-{uuid.uuid4()}"}
    answers: dict[str, tuple[int, Any]] = {}
    for method, path in await write_operations(http, service):
        response = await http.request(method, f"{service_url(service)}{path}", content=body, headers=headers)
        answers[f"{method} {path}"] = (response.status_code, response.text[:300])
    assert answers, f"{service} documents no write operation with a body"
    return answers


@pytest.mark.parametrize("service", WITH_API)
async def test_a_body_nested_thousands_deep_is_a_400_naming_the_body(http: httpx.AsyncClient, service: str) -> None:
    """Valid JSON 3000 arrays deep: msgspec's decoder raises RecursionError, which was a 500 on every write
    operation of every service (Litestar decodes the body untyped before converting it)."""
    body = b'{"items": ' + b"[" * 3000 + b"]" * 3000 + b"}"
    answers = await answers_to(http, service, body)
    refused = {op: answer for op, answer in answers.items() if answer[0] != 400 or '"key":"body"' not in answer[1]}
    assert not refused, refused


@pytest.mark.parametrize("body", [b"\t", b" \r\n ", b"\n"], ids=["tab", "spaces", "newline"])
async def test_a_cart_body_of_only_whitespace_is_not_json_but_no_body_is_a_guest_cart(
    http: httpx.AsyncClient, body: bytes
) -> None:
    """POST /api/carts' body is optional, so no body at all makes a guest cart; whitespace is a body that is
    not JSON, and it was taken for none (schemathesis, 100 examples: "schema-violating request accepted")."""
    url = f"{service_url('checkout')}/api/carts"
    refused = await http.post(url, content=body, headers={"Content-Type": "application/json"})
    assert refused.status_code == 400, refused.text
    assert refused.json()["extra"][0]["key"] == "body"
    made = await http.post(url, content=b"", headers={"Content-Type": "application/json"})
    assert made.status_code == 201, made.text
