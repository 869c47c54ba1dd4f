"""Staff retry a refused refund through the real stack (POST /api/returns/{id}/retry-refund): the order is paid
with the sandbox's tok_refundFailOnce card, whose first refund is refused (402 ``expired_or_canceled_card``)
and later ones go through. The return reaches refund_failed; the retry asks again under a new refund id
(return.refund_retry_requested -> the payment consumer -> the worker) and the return is refunded, then
completed once restocked, with exactly one refund at the provider. When staff refunded it by hand meanwhile
(POST /api/payments/{id}/refund), the retry recognises that refund and settles the return without a second.
A refund by hand made before the return asked settles it once staff name it (``settle_with``). Either way
the retry's event delivered again, and copied under a new id, changes nothing. A refund by hand while a
return's refund awaits the provider is refused (409).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import uuid
from collections.abc import AsyncIterator
from decimal import Decimal
from functools import partial
from typing import Any

import httpx
import pytest
from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine

from apps.common.topology import BY_NAME, database_url
from apps.payment.admin import held_back
from apps.returns.rules import COMPLETED, REFUND_FAILED
from tests.support import returns
from tests.support.db import connect, fetch
from tests.support.http import api_client, service_url
from tests.support.orders import eventually, in_currency

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
        return bool(in_currency(stats.json(), placed["currency"])["refunded_amount"] == amount)

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


async def refund_by_hand(http: httpx.AsyncClient, payment_id: str, body: dict[str, Any]) -> httpx.Response:
    return await http.post(
        f"{service_url('payment')}/api/payments/{payment_id}/refund",
        json=body,
        headers={"Idempotency-Key": str(uuid.uuid4())},
    )


async def retry_answered(http: httpx.AsyncClient, return_id: str) -> dict[str, Any]:
    async def answered() -> bool:
        return (await returns.get_return(http, return_id))["refund_retry_requested_at"] is None

    await eventually(answered, within=returns.WITHIN, what="the retry answered")
    return await returns.get_return(http, return_id)


async def received_refund_failed(
    http: httpx.AsyncClient, placed: dict[str, Any], product: dict[str, Any]
) -> dict[str, Any]:
    """A return of one unit of ``placed``, approved and received, once its refund was refused."""
    asked = [{"order_item_id": returns.line_id(placed, product), "quantity": 1, "reason": "defective"}]
    created = await returns.request_return(http, {"order_id": placed["id"], "items": asked})
    assert created.status_code == 201, created.text
    return_id, [item] = created.json()["id"], created.json()["items"]
    assert (await returns.act(http, return_id, "approve", {})).status_code == 200
    came = [{"return_item_id": item["id"], "quantity_received": 1, "condition": "new"}]
    assert (await returns.act(http, return_id, "receive", {"items": came})).status_code == 200
    return await returns.return_reaches(http, return_id, REFUND_FAILED)


async def refund_failed_after_a_refund_by_hand(
    http: httpx.AsyncClient, placed: dict[str, Any], product: dict[str, Any]
) -> dict[str, Any]:
    """A return of one unit of ``placed``, approved and received: refund_failed, as the order's payment was
    refunded in full by hand before (only a captured payment can be refunded; this one is refunded)."""
    failed = await received_refund_failed(http, placed, product)
    assert failed["refund_error"] == "only a captured payment can be refunded; this one is refunded", failed
    return failed


async def test_a_refund_by_hand_before_the_return_asked_settles_it_once_staff_name_it(
    http: httpx.AsyncClient,
) -> None:
    """Staff refunded the whole order by hand when the customer complained, before the items came back: each
    return's refund then finds nothing refundable (refund_failed), and a plain retry never counts a refund
    made before the return asked. Named in settle_with, it settles the return without a second refund; what
    it has left settles the order's second return too. A wrong name is refused at once (422 naming it)."""
    product = await returns.stocked("30.00", 2)
    placed = await returns.delivered_order(http, [(product, 2)])
    [payment] = await returns.payments(http, placed["id"])
    complaint = await refund_by_hand(http, payment["id"], {"reason": "complaint: refunded on receipt"})
    assert complaint.status_code == 201, complaint.text
    by_hand_id = complaint.json()["refund"]["id"]
    failed = await refund_failed_after_a_refund_by_hand(http, placed, product)
    return_id = failed["id"]

    # Wrong names, refused before anything is asked: the return's own refund, a refund the payment lacks.
    for named, fault in [(failed["refund_id"], "own"), (str(uuid.uuid4()), "is no refund of this order's payment")]:
        wrong = await returns.act(http, return_id, "retry-refund", {"settle_with": [named]})
        assert wrong.status_code == 422, wrong.text
        [problem] = wrong.json()["extra"]
        assert problem["key"] == "settle_with[0]" and fault in problem["message"], problem
    assert (await returns.get_return(http, return_id))["refund_retry_requested_at"] is None

    named = await returns.act(http, return_id, "retry-refund", {"settle_with": [by_hand_id], "requested_by": "a@x"})
    assert named.status_code == 200, named.text
    retried = named.json()
    done = await settled(http, return_id)
    assert done["refund_id"] == retried["refund_id"]

    [payment] = await returns.payments(http, placed["id"])
    refunds = [(op["id"], op["outcome"], op["amount"]) for op in payment["operations"] if op["kind"] == "refund"]
    assert refunds[0] == (by_hand_id, "succeeded", placed["total_amount"])
    assert refunds[-1] == (retried["refund_id"], "succeeded", "0.00")
    assert payment["refunded_amount"] == placed["total_amount"]
    assert len(await returns.sandbox_refunds(http, placed["id"])) == 1  # the one by hand, only
    rows = await fetch("payment", "SELECT request FROM payment_operations WHERE id = $1", uuid.UUID(done["refund_id"]))
    assert json.loads(rows[0]["request"])["settled_by"] == {by_hand_id: failed["total_refund_amount"]}
    await delivered_twice(return_id)
    [again] = await returns.payments(http, placed["id"])
    assert again["operations"] == payment["operations"]
    assert (await returns.get_return(http, return_id))["status"] == COMPLETED

    # The order's other unit comes back too: the same refund by hand has enough left to settle it.
    second = await refund_failed_after_a_refund_by_hand(http, placed, product)
    assert (await returns.act(http, second["id"], "retry-refund", {"settle_with": [by_hand_id]})).status_code == 200
    await settled(http, second["id"])
    [payment] = await returns.payments(http, placed["id"])
    ops = {op["id"]: op for op in payment["operations"]}
    both = Decimal(failed["total_refund_amount"]) + Decimal(second["total_refund_amount"])
    assert (ops[by_hand_id]["by_hand"], Decimal(ops[by_hand_id]["counted_for_returns"])) == (True, both)
    assert ops[failed["refund_id"]]["return_id"] == return_id and not ops[failed["refund_id"]]["by_hand"]
    assert len(await returns.sandbox_refunds(http, placed["id"])) == 1


async def test_an_awaited_retry_409_says_since_when_and_names_its_event(http: httpx.AsyncClient) -> None:
    """What staff and operations see while a retry is awaited (as long as a dead-lettered one waits for its
    redrive): how long ago it was asked, and the event id that `just dlq list payment` prints."""
    _, failed = await refund_failed_return(http)
    retried = await retry(http, failed, twice=False)
    again = await returns.act(http, failed["id"], "retry-refund", {})
    if again.status_code == 200:  # answered between the clicks (the payment group is quick): nothing to see
        pytest.skip("the retry was answered before the second click")
    assert again.status_code == 409, again.text
    [problem] = again.json()["extra"]
    [event] = await fetch(
        "returns",
        "SELECT id FROM event_store WHERE aggregate_id = $1 AND event_type = 'return.refund_retry_requested'",
        uuid.UUID(failed["id"]),
    )
    asked_at = dt.datetime.fromisoformat(retried["refund_retry_requested_at"])
    assert problem["key"] == "status" and f"asked at {asked_at.isoformat()} (" in problem["message"], problem
    assert " s ago) still awaits the payment service's answer" in problem["message"], problem
    assert f"its event {event['id']} in `just dlq list payment --pending`" in problem["message"], problem
    await settled(http, failed["id"])


async def test_a_refund_by_hand_while_a_returns_refund_awaits_the_provider_is_refused(http: httpx.AsyncClient) -> None:
    """Refunding by hand while a return's refund awaits the provider's answer would refund that return twice
    if both went through: 409 naming the pending refund and its return, until it is answered. The pending
    refund is written the way the payment consumer writes a return's, due in an hour (the worker leaves it)."""
    product = await returns.stocked("30.00", 1)
    placed = await returns.delivered_order(http, [(product, 1)])
    [payment] = await returns.payments(http, placed["id"])
    refund_id, return_id, now = uuid.uuid4(), uuid.uuid4(), dt.datetime.now(dt.UTC)
    conn = await connect("payment")
    try:
        await conn.execute(
            "INSERT INTO payment_operations (id, payment_id, kind, idempotency_key, amount, outcome, reason, request,"
            " attempts, next_attempt_at, created_at) VALUES ($1, $2, 'refund', $3, 10, 'pending', 'r', $4::jsonb, 0,"
            " $5, $6)",
            refund_id,
            uuid.UUID(payment["id"]),
            f"{payment['id']}:refund:return:{refund_id}",
            json.dumps({"reason": "r", "return_id": str(return_id), "return_amount": "10.00"}),
            now + dt.timedelta(hours=1),
            now,
        )
        refused = await refund_by_hand(http, payment["id"], {"amount": "5.00", "reason": "goodwill"})
        assert refused.status_code == 409, refused.text
        [problem] = refused.json()["extra"]
        assert problem["key"] == "status"
        assert f"refund {refund_id} of return {return_id} awaits the provider's answer" in problem["message"]
    finally:
        await conn.execute("DELETE FROM payment_operations WHERE id = $1", refund_id)
        await conn.close()
    taken = await refund_by_hand(http, payment["id"], {"amount": "5.00", "reason": "goodwill"})
    assert taken.status_code == 201, taken.text


async def test_an_awaited_retry_that_can_never_be_answered_is_abandoned_audited_and_refunds_once(
    http: httpx.AsyncClient,
) -> None:
    """A retry whose letter was acknowledged is never answered: the return refused every retry for good (409).
    Staff abandon it (abandon_awaited + requested_by, recorded): the new retry refunds the return once, and
    the payment service holds a never-asked row under the abandoned refund id, so its event asks nothing if
    it ever comes. Here the lost retry is written as the returns API writes one whose event never applied."""
    placed, failed = await refund_failed_return(http)
    lost_refund, lost_event = uuid.uuid4(), uuid.uuid4()
    asked_at = dt.datetime.now(dt.UTC) - dt.timedelta(hours=2)
    conn = await connect("returns")
    try:
        await conn.execute(
            "UPDATE return_requests SET refund_id = $2, metadata = metadata || $3::jsonb WHERE id = $1",
            uuid.UUID(failed["id"]),
            lost_refund,
            json.dumps(
                {
                    "earlier_refund_ids": [failed["refund_id"]],
                    "refund_retry_requested_at": asked_at.isoformat(),
                    "refund_retry_event_id": str(lost_event),
                }
            ),
        )
    finally:
        await conn.close()
    refused = await returns.act(http, failed["id"], "retry-refund", {})
    assert refused.status_code == 409 and "abandon_awaited" in refused.text, refused.text
    nobody = await returns.act(http, failed["id"], "retry-refund", {"abandon_awaited": "letter acknowledged"})
    assert nobody.status_code == 422 and "requested_by" in nobody.text, nobody.text

    why = f"its letter {lost_event} was acknowledged"
    body = {"abandon_awaited": why, "requested_by": "ops@example.com"}
    response = await returns.act(http, failed["id"], "retry-refund", body)
    assert response.status_code == 200, response.text
    assert response.json()["refund_id"] not in (str(lost_refund), failed["refund_id"])
    await settled(http, failed["id"])

    [row] = await fetch("returns", "SELECT metadata FROM return_requests WHERE id = $1", uuid.UUID(failed["id"]))
    [audit] = json.loads(row["metadata"])["refund_retries_abandoned"]
    assert (audit["refund_id"], audit["event_id"], audit["abandoned_by"], audit["reason"]) == (
        str(lost_refund),
        str(lost_event),
        "ops@example.com",
        why,
    )
    [payment] = await returns.payments(http, placed["id"])
    [never] = [op for op in payment["operations"] if op["id"] == str(lost_refund)]
    assert (never["outcome"], Decimal(never["amount"])) == ("failed", Decimal(0)), never
    assert len(await returns.sandbox_refunds(http, placed["id"])) == 1


async def test_a_refund_by_hand_named_on_receive_settles_the_return_and_the_provider_refunds_once(
    http: httpx.AsyncClient,
) -> None:
    """Staff refunded one unit by hand when the customer complained, leaving enough refundable: before session
    28 the return's own refund went to the provider as well when the unit came back (two refunds for one
    unit). Named on receive (settle_with), the return is refunded by it: one refund at the sandbox. A name
    that is no refund by hand of the order's payment is a 422 naming it; on approve of a return whose
    items are to come back, settle_with is a 422 (it asks nothing there)."""
    product = await returns.stocked("30.00", 2)
    placed = await returns.delivered_order(http, [(product, 2)])
    [payment] = await returns.payments(http, placed["id"])
    half = str((Decimal(placed["total_amount"]) / 2).quantize(Decimal("0.01")))  # one unit with its share
    complaint = await refund_by_hand(http, payment["id"], {"amount": half, "reason": "complaint: one unit"})
    assert complaint.status_code == 201, complaint.text
    by_hand_id = complaint.json()["refund"]["id"]
    asked = [{"order_item_id": returns.line_id(placed, product), "quantity": 1, "reason": "changed_mind"}]
    created = await returns.request_return(http, {"order_id": placed["id"], "items": asked})
    assert created.status_code == 201, created.text
    return_id, [item] = created.json()["id"], created.json()["items"]
    early = await returns.act(http, return_id, "approve", {"settle_with": [by_hand_id]})
    assert early.status_code == 422 and "settle_with" in early.text, early.text
    assert (await returns.act(http, return_id, "approve", {})).status_code == 200
    came = [{"return_item_id": item["id"], "quantity_received": 1, "condition": "new"}]
    wrong = await returns.act(http, return_id, "receive", {"items": came, "settle_with": [str(uuid.uuid4())]})
    assert wrong.status_code == 422, wrong.text
    assert [e["key"] for e in wrong.json()["extra"]] == ["settle_with[0]"]

    received = await returns.act(http, return_id, "receive", {"items": came, "settle_with": [by_hand_id]})
    assert received.status_code == 200, received.text
    done = await settled(http, return_id)
    [payment] = await returns.payments(http, placed["id"])
    [own] = [op for op in payment["operations"] if op["id"] == done["refund_id"]]
    assert (own["outcome"], own["amount"]) == ("succeeded", "0.00"), own
    assert len(await returns.sandbox_refunds(http, placed["id"])) == 1  # the one by hand, only


async def test_a_return_refused_for_a_pending_refund_by_hand_is_retried_once_that_refund_fails(
    http: httpx.AsyncClient,
) -> None:
    """Session 29. A refund by hand the provider never got (tok_refundUnreachableOnce: its first refund is a
    503 for good) is pending when the return's items arrive: the return's refund is refused naming it
    (session 28), refund_failed. Before session 29 it stayed so when that refund failed (here: the worker's
    status query past the deadline, "no such refund"), although nothing held it back any more. Now the
    returns service asks again on its own, audited: refunded once, by the provider, under a new key."""
    product = await returns.stocked("30.00", 2)
    placed = await returns.delivered_order(http, [(product, 2)], token="tok_refundUnreachableOnce")
    [payment] = await returns.payments(http, placed["id"])
    goodwill = await refund_by_hand(http, payment["id"], {"amount": "5.00", "reason": "goodwill"})
    assert goodwill.status_code == 202, goodwill.text  # the sandbox never answers it
    by_hand = goodwill.json()["refund"]["id"]

    refused = await received_refund_failed(http, placed, product)
    return_id = refused["id"]
    assert refused["refund_error"].startswith(f"refund {by_hand} made by hand still awaits"), refused
    [row] = await fetch("returns", "SELECT metadata FROM return_requests WHERE id = $1", uuid.UUID(return_id))
    blocked = json.loads(row["metadata"]).get("refund_blocked_by")  # checked below: first, what users see

    # The refund by hand fails: past the deadline the worker asks the sandbox, which has no such refund.
    conn = await connect("payment")
    try:
        await conn.execute(
            "UPDATE payment_operations SET created_at = now() - interval '1 hour', next_attempt_at = now() "
            "WHERE id = $1 AND outcome = 'pending'",
            uuid.UUID(by_hand),
        )
    finally:
        await conn.close()
    done = await settled(http, return_id)
    assert done["refund_id"] != refused["refund_id"] and blocked == [by_hand]

    [row] = await fetch("returns", "SELECT metadata FROM return_requests WHERE id = $1", uuid.UUID(return_id))
    metadata = json.loads(row["metadata"])
    [audit] = metadata["refund_retries_unblocked"]
    assert audit["refund_id"] == by_hand and audit["reason"] == "refund_unknown_to_provider", audit
    assert metadata["refund_retry_requested_by"] == f"returns service: refund {by_hand} made by hand failed"
    assert "refund_blocked_by" not in metadata and metadata["earlier_refund_ids"] == [refused["refund_id"]]

    [payment] = await returns.payments(http, placed["id"])
    refunds = {op["id"]: (op["outcome"], op["amount"]) for op in payment["operations"] if op["kind"] == "refund"}
    amount = refused["total_refund_amount"]
    assert refunds == {
        by_hand: ("failed", "5.00"),
        refused["refund_id"]: ("failed", amount),
        done["refund_id"]: ("succeeded", amount),
    }
    assert payment["refunded_amount"] == amount
    assert [r["amount"] for r in await returns.sandbox_refunds(http, placed["id"])] == [int(Decimal(amount) * 100)]
    # What `just refunds fail` prints for the operator: the returns it held back (asked again on their own).
    engine = create_async_engine(database_url(BY_NAME["payment"]), pool_size=1)
    try:
        async with async_sessionmaker(engine)() as session:
            assert await held_back(session, uuid.UUID(by_hand)) == [return_id]
    finally:
        await engine.dispose()
