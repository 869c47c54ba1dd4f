"""The usual security headers on every answer of every running service (issue 14; apps/common/security_headers.py):
probes, an unknown path (answered before any route's middleware), and an API answer with personal data."""

from __future__ import annotations

import uuid

import httpx
import pytest

from apps.common.topology import SERVICES
from tests.support.http import api_client, create_customer, service_url

pytestmark = pytest.mark.usefixtures("stack")

EVERY_ANSWER = {
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "content-security-policy": "frame-ancestors 'none'",
    "referrer-policy": "no-referrer",
}


def _missing(response: httpx.Response) -> dict[str, str | None]:
    return {
        name: response.headers.get(name) for name, value in EVERY_ANSWER.items() if response.headers.get(name) != value
    }


@pytest.mark.parametrize("service", [spec.name for spec in SERVICES])
async def test_every_service_sends_the_headers_on_every_answer(service: str) -> None:
    async with api_client(base_url=service_url(service), timeout=10) as http:
        health = await http.get("/health")
        unknown = await http.get(f"/api/no-such-thing/{uuid.uuid4()}")
    assert health.status_code == 200 and not _missing(health), _missing(health)
    assert unknown.status_code == 404 and not _missing(unknown), _missing(unknown)
    assert unknown.headers["cache-control"] == "no-store"  # every /api/ answer
    assert "strict-transport-security" not in health.headers  # the proxy's job unless configured


async def test_personal_data_is_never_cached() -> None:
    customer = await create_customer()
    async with api_client("staff", base_url=service_url("customer")) as http:
        answer = await http.get(f"/api/customers/{customer['id']}")
    assert answer.status_code == 200
    assert answer.headers["cache-control"] == "no-store"
    assert not _missing(answer)
