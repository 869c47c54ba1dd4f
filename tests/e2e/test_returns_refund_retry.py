"""Staff retry a refused refund through the real stack (POST /api/returns/{id}/retry-refund): the order is paid
with the sandbox's tok_refundFailOnce card, whose first refund is refused (402 ``expired_or_canceled_card``)
and later ones go through. The return reaches refund_failed; the retry asks again under a new refund id
(return.refund_retry_requested -> the payment consumer -> the worker) and the return is refunded, then
completed once restocked, with exactly one refund at the provider. When staff refunded it by hand meanwhile
(POST /api/payments/{id}/refund), the retry recognises that refund and settles the return without a second.
Either way the retry's event delivered again, and copied under a new id, changes nothing.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from decimal import Decimal
from functools import partial
from typing import Any

import httpx
import pytest

from apps.returns.rules import COMPLETED, REFUND_FAILED
from tests.support import returns
from tests.support.http import api_client, service_url
from tests.support.orders import eventually

pytestmark = pytest.mark.usefixtures("stack")

REFUSED = "expired_or_canceled_card"  # the sandbox's refusal (apps/payment_sandbox/provider.py)


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with api_client(timeout=30) as client:
        yield client


async def refund_failed_return(http: httpx.AsyncClient) -> tuple[dict[str, Any], dict[str, Any]]:
    """A delivered tok_refundFailOnce order and its return of one unit, received and refund_failed; a retry
    asked before that is refused (409 naming status)."""
    product = await returns.stocked("30.00", 2)
    placed = await returns.delivered_order(http, [(product, 2)], token="tok_refundFailOnce")
    asked = [{"order_item_id": returns.line_id(placed, product), "quantity": 1, "reason": "defective"}]
    created = await returns.request_return(http, {"order_id": placed["id"], "items": asked})
    assert created.status_code == 201, created.text
    body: dict[str, Any] = created.json()
    return_id = body["id"]
    early = await returns.act(http, return_id, "retry-refund", {})
    assert early.status_code == 409, early.text
    assert [e["key"] for e in early.json()["extra"]] == ["status"] and "requested" in early.text
    assert (await returns.act(http, return_id, "approve", {})).status_code == 200
    [item] = body["items"]
    came = [{"return_item_id": item["id"], "quantity_received": 1, "condition": "new"}]
    assert (await returns.act(http, return_id, "receive", {"items": came})).status_code == 200
    failed = await returns.return_reaches(http, return_id, REFUND_FAILED)
    assert failed["refund_error"] == REFUSED and failed["refund_retry_requested_at"] is None
    return placed, failed


async def retry(http: httpx.AsyncClient, failed: dict[str, Any], *, twice: bool = True) -> dict[str, Any]:
    """Retry once (200: still refund_failed, a new refund id, the retry awaited); a second retry right after
    is refused (``twice``: for a retry that refunds, whatever its answer: awaited, 409; answered, refunded
    or completed, 409 too; a refused one may be answered before the second click, which is then allowed)."""
    response = await returns.act(http, failed["id"], "retry-refund", {"requested_by": "agent@example.com"})
    assert response.status_code == 200, response.text
    retried: dict[str, Any] = response.json()
    assert retried["status"] == REFUND_FAILED and retried["refund_retry_requested_at"] is not None
    assert retried["refund_id"] not in (None, failed["refund_id"])
    if twice:
        again = await returns.act(http, failed["id"], "retry-refund", {})
        assert again.status_code == 409, again.text
    return retried


async def settled(http: httpx.AsyncClient, return_id: str) -> dict[str, Any]:
    done = await returns.return_reaches(http, return_id, COMPLETED)  # refunded, and the unit restocked
    assert done["refunded_at"] is not None
    assert (done["refund_error"], done["refund_retry_requested_at"]) == (None, None)
    return done


async def delivered_twice(return_id: str) -> None:
    """The retry's event again (a redelivery) and a copy under a new id, once the payment group took both."""
    [copy] = await returns.resend(return_id, "return.refund_retry_requested")
    await eventually(partial(returns.applied, "payment", "payment", copy), within=60, what="payment got the copy")


async def test_a_retry_after_a_refused_refund_refunds_the_return_once(http: httpx.AsyncClient) -> None:
    placed, failed = await refund_failed_return(http)
    retried = await retry(http, failed)
    done = await settled(http, failed["id"])
    assert done["refund_id"] == retried["refund_id"]

    # The ledger: the refused refund, then the retry's, which went through; the provider refunded once.
    [payment] = await returns.payments(http, placed["id"])
    refunds = [(op["id"], op["outcome"], op["amount"]) for op in payment["operations"] if op["kind"] == "refund"]
    amount = failed["total_refund_amount"]
    assert refunds == [(failed["refund_id"], "declined", amount), (retried["refund_id"], "succeeded", amount)]
    assert payment["refunded_amount"] == amount
    assert [r["amount"] for r in await returns.sandbox_refunds(http, placed["id"])] == [int(Decimal(amount) * 100)]

    # The retry's event delivered twice more changes nothing: no new ledger row, no second refund.
    await delivered_twice(failed["id"])
    [again] = await returns.payments(http, placed["id"])
    assert again["operations"] == payment["operations"] and again["refunded_amount"] == amount
    assert len(await returns.sandbox_refunds(http, placed["id"])) == 1
    assert (await returns.get_return(http, failed["id"]))["status"] == COMPLETED


async def test_a_retry_after_a_refund_by_hand_settles_the_return_without_refunding_again(
    http: httpx.AsyncClient,
) -> None:
    placed, failed = await refund_failed_return(http)
    amount = failed["total_refund_amount"]
    [payment] = await returns.payments(http, placed["id"])
    by_hand = await http.post(
        f"{service_url('payment')}/api/payments/{payment['id']}/refund",
        json={"amount": amount, "reason": f"return {failed['return_number']}, by hand"},
        headers={"Idempotency-Key": str(uuid.uuid4())},
    )
    assert by_hand.status_code == 201, by_hand.text
    by_hand_id = by_hand.json()["refund"]["id"]

    retried = await retry(http, failed)
    done = await settled(http, failed["id"])
    assert done["refund_id"] == retried["refund_id"]

    # No second refund: the provider refunded once (by hand); the retry's ledger row moved no money.
    [payment] = await returns.payments(http, placed["id"])
    refunds = [(op["id"], op["outcome"], op["amount"]) for op in payment["operations"] if op["kind"] == "refund"]
    assert refunds == [
        (failed["refund_id"], "declined", amount),
        (by_hand_id, "succeeded", amount),
        (retried["refund_id"], "succeeded", "0.00"),
    ]
    assert payment["refunded_amount"] == amount
    assert [r["amount"] for r in await returns.sandbox_refunds(http, placed["id"])] == [int(Decimal(amount) * 100)]
    await delivered_twice(failed["id"])
    [again] = await returns.payments(http, placed["id"])
    assert again["operations"] == payment["operations"]

    # The customer's stats count the return's refund once.
    async def counted() -> bool:
        stats = await http.get(f"{service_url('customer')}/api/customers/{placed['customer_id']}/stats")
        return bool(stats.json()["refunded_amount"] == amount)

    await eventually(counted, within=60, what="the refund in the customer's stats")


async def test_a_retry_after_a_partial_refund_by_hand_is_refused_until_the_rest_is_refunded_by_hand(
    http: httpx.AsyncClient,
) -> None:
    placed, failed = await refund_failed_return(http)
    amount = Decimal(failed["total_refund_amount"])
    [payment] = await returns.payments(http, placed["id"])

    async def refund_by_hand(part: Decimal) -> str:
        response = await http.post(
            f"{service_url('payment')}/api/payments/{payment['id']}/refund",
            json={"amount": str(part), "reason": f"return {failed['return_number']}, by hand"},
            headers={"Idempotency-Key": str(uuid.uuid4())},
        )
        assert response.status_code == 201, response.text
        return str(response.json()["refund"]["id"])

    first_part = (amount / 3).quantize(Decimal("0.01"))
    first = await refund_by_hand(first_part)
    refused = await retry(http, failed, twice=False)

    # Refused, saying so: the provider is not asked for the whole again.
    async def answered() -> bool:
        seen = await returns.get_return(http, failed["id"])
        return seen["refund_retry_requested_at"] is None

    await eventually(answered, within=120, what="the retry answered")
    still = await returns.get_return(http, failed["id"])
    assert still["status"] == REFUND_FAILED and still["refund_id"] == refused["refund_id"]
    assert "by hand" in still["refund_error"] and str(first_part) in still["refund_error"]
    [payment] = await returns.payments(http, placed["id"])
    ops = [(op["id"], op["outcome"]) for op in payment["operations"] if op["kind"] == "refund"]
    assert ops == [(failed["refund_id"], "declined"), (first, "succeeded"), (refused["refund_id"], "failed")]

    # Staff refund the rest by hand, then retry: settled by both, the provider refunded only those two.
    second = await refund_by_hand(amount - first_part)
    retried = await retry(http, still)
    done = await settled(http, failed["id"])
    assert done["refund_id"] == retried["refund_id"]
    [payment] = await returns.payments(http, placed["id"])
    refunds = [(op["id"], op["outcome"], op["amount"]) for op in payment["operations"] if op["kind"] == "refund"]
    rest = str(amount - first_part)
    assert refunds[-2:] == [(second, "succeeded", rest), (retried["refund_id"], "succeeded", "0.00")]
    assert payment["refunded_amount"] == str(amount)
    assert len(await returns.sandbox_refunds(http, placed["id"])) == 2


async def test_two_retries_asked_at_once_make_one_retry_and_a_409(http: httpx.AsyncClient) -> None:
    """Two staff click retry together: the return's row lock orders them, the second finds the first's
    retry awaited (409 naming status); one retry event, one refund at the provider."""
    placed, failed = await refund_failed_return(http)
    clicks = await asyncio.gather(
        *(returns.act(http, failed["id"], "retry-refund", {"requested_by": f"agent{n}@example.com"}) for n in (1, 2))
    )
    assert sorted(c.status_code for c in clicks) == [200, 409], [c.text for c in clicks]
    [refused] = [c for c in clicks if c.status_code == 409]
    assert [e["key"] for e in refused.json()["extra"]] == ["status"]
    [retried] = [c.json() for c in clicks if c.status_code == 200]
    done = await settled(http, failed["id"])
    assert done["refund_id"] == retried["refund_id"]
    [payment] = await returns.payments(http, placed["id"])
    refunds = [(op["id"], op["outcome"]) for op in payment["operations"] if op["kind"] == "refund"]
    assert refunds == [(failed["refund_id"], "declined"), (retried["refund_id"], "succeeded")]
    assert len(await returns.sandbox_refunds(http, placed["id"])) == 1
