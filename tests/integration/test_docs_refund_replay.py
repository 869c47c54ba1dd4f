"""A refund by hand repeated with the same Idempotency-Key answers ``Idempotent-Replayed: true``, as a repeated
order and a repeated checkout completion do (N, session 31: the refund answered the first 201 again without
it, so a client could not tell a replay from a second refund). The payment app runs in-process (the code in
the tree) against the real database and provider sandbox; the order is a real one, delivered and captured."""

from __future__ import annotations

import uuid

import httpx
import pytest

from apps.payment.app import create_app
from tests.support.held import in_process
from tests.support.http import api_client, auth_headers, service_url
from tests.support.returns import delivered_order, stocked

pytestmark = pytest.mark.usefixtures("stack")


async def test_a_repeated_refund_says_it_is_a_replay(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SERVICE_NAME", "payment")
    product = await stocked("8.00", 5)
    async with api_client(timeout=30) as http:
        delivered = await delivered_order(http, [(product, 1)])
        payments = await http.get(f"{service_url('payment')}/api/payments", params={"order_id": delivered["id"]})
    payment = payments.json()[0]
    assert payment["status"] == "captured"
    key = {"Idempotency-Key": f"replay-{uuid.uuid4()}"}
    body = {"amount": "1.00", "reason": "goodwill"}
    async with (
        in_process(create_app) as url,
        httpx.AsyncClient(base_url=url, headers=auth_headers(), timeout=30) as own,
    ):
        path = f"/api/payments/{payment['id']}/refund"
        first = await own.post(path, json=body, headers=key)
        again = await own.post(path, json=body, headers=key)
        other = await own.post(path, json=body, headers={"Idempotency-Key": f"other-{uuid.uuid4()}"})
    assert first.status_code == 201, first.text
    assert "Idempotent-Replayed" not in first.headers
    assert again.status_code == 201, again.text
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.json()["refund"]["id"] == first.json()["refund"]["id"]
    assert other.status_code == 201, other.text
    assert "Idempotent-Replayed" not in other.headers, "a new key is a new refund"
    assert other.json()["refund"]["id"] != first.json()["refund"]["id"]
