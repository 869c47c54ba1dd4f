"""The payment API over HTTP against the running payment service, worker and provider sandbox.

Payments are made the way the consumer makes them (PaymentService writes the pending rows, the running
payment worker calls the sandbox); the API reads them and refunds them. Every test has its own order id.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

import asyncpg
import httpx
import pytest
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine

from apps.common.topology import BY_NAME, PROCESSES, database_url
from apps.payment.models import Payment
from apps.payment.services import AuthorizationRequest, PaymentService
from tests.support import consumers
from tests.support.db import db_fixture
from tests.support.http import api_client, service_url
from tests.support.orders import eventually

pytestmark = pytest.mark.usefixtures("stack")

SANDBOX = f"http://127.0.0.1:{next(p.port for p in PROCESSES if p.name == 'payment-sandbox')}"
WITHIN = 60.0

db = db_fixture("payment")


@pytest.fixture(scope="module")
async def engine(stack: None) -> AsyncIterator[AsyncEngine]:
    engine = create_async_engine(database_url(BY_NAME["payment"]), pool_size=2)
    yield engine
    await engine.dispose()


@pytest.fixture
async def api() -> AsyncIterator[httpx.AsyncClient]:
    async with api_client(base_url=service_url("payment"), timeout=30) as client:
        yield client


async def payments_of(api: httpx.AsyncClient, order_id: uuid.UUID) -> list[dict[str, Any]]:
    response = await api.get("/api/payments", params={"order_id": str(order_id)})
    assert response.status_code == 200, response.text
    return list(response.json())


async def wait_for(api: httpx.AsyncClient, order_id: uuid.UUID, status: str) -> dict[str, Any]:
    async def reached() -> bool:
        found = await payments_of(api, order_id)
        return len(found) == 1 and found[0]["status"] == status

    await eventually(reached, within=WITHIN, what=f"payment of {order_id} {status}")
    return (await payments_of(api, order_id))[0]


async def captured_payment(
    engine: AsyncEngine,
    api: httpx.AsyncClient,
    amount: str = "20.00",
    currency: str = "USD",
    *,
    sent_as: tuple[int, int] | None = None,
) -> dict[str, Any]:
    """A payment authorized and captured through the worker and the sandbox, as the saga would make it;
    ``sent_as`` (minor units, exponent) stands for an authorization sent in another unit than today's table
    gives (a dinar in hundredths before ff6ffb9: tests/integration/test_payment_minor_units.py)."""
    order_id = uuid.uuid4()
    sessions = async_sessionmaker(engine, expire_on_commit=False)
    request = AuthorizationRequest(
        order_id, Decimal(amount), currency, "card", "tok_visa", key=f"test:{order_id}", provider="sandbox"
    )
    async with sessions() as session:
        await PaymentService(session).request_authorization(request)
        if sent_as is not None:  # in the same transaction: the worker never sees the row without it
            minor, exponent = sent_as
            await session.execute(
                update(Payment).where(Payment.order_id == order_id).values(amount_minor=minor, minor_exponent=exponent)
            )
        await session.commit()
    await wait_for(api, order_id, "authorized")
    async with sessions() as session:
        await PaymentService(session).request_capture(order_id, None)
        await session.commit()
    return await wait_for(api, order_id, "captured")


async def sandbox_books(order_id: str) -> dict[str, Any]:
    async with api_client() as http:
        response = await http.get(f"{SANDBOX}/v1/ledger", params={"reference": order_id})
    assert response.status_code == 200, response.text
    return dict(response.json())


async def operation_count(db: asyncpg.Connection, payment_id: str) -> int:
    return int(
        await db.fetchval("SELECT count(*) FROM payment_operations WHERE payment_id = $1", uuid.UUID(payment_id))
    )


def refund(api: httpx.AsyncClient, payment_id: str, body: dict[str, Any], key: str | None) -> Any:
    headers = {"Idempotency-Key": key} if key is not None else {}
    return api.post(f"/api/payments/{payment_id}/refund", json=body, headers=headers)


def field_of(response: httpx.Response) -> set[str]:
    return {entry.get("key") for entry in response.json().get("extra", [])}


def names(response: httpx.Response, field: str) -> bool:
    """The error names the field: in ``extra[].key``, or (a missing parameter) in Litestar's ``detail``."""
    return field in field_of(response) or f"'{field}'" in response.json().get("detail", "")


async def test_reads_a_payment_by_id_and_by_order_with_its_ledger(engine: AsyncEngine, api: httpx.AsyncClient) -> None:
    payment = await captured_payment(engine, api, "12.50")
    by_id = (await api.get(f"/api/payments/{payment['id']}")).json()
    assert by_id == payment
    assert set(by_id) >= {"id", "order_id", "amount", "currency", "status", "operations"}
    assert (by_id["amount"], by_id["currency"], by_id["captured_amount"]) == ("12.50", "USD", "12.50")
    assert [(op["kind"], op["outcome"]) for op in by_id["operations"]] == [
        ("authorize", "succeeded"),
        ("capture", "succeeded"),
    ]
    books = await sandbox_books(payment["order_id"])
    assert [a["status"] for a in books["authorizations"]] == ["captured"]


async def test_unknown_payments_and_bad_queries(api: httpx.AsyncClient) -> None:
    assert (await api.get(f"/api/payments/{uuid.uuid4()}")).status_code == 404
    assert await payments_of(api, uuid.uuid4()) == []
    bad = await api.get("/api/payments", params={"order_id": "not-a-uuid"})
    assert bad.status_code == 400
    assert field_of(bad) == {"order_id"}
    assert (await api.get("/api/payments")).status_code == 400


async def test_refund_bad_input_is_a_4xx_naming_the_field_and_writes_nothing(
    engine: AsyncEngine, api: httpx.AsyncClient, db: asyncpg.Connection
) -> None:
    payment = await captured_payment(engine, api)
    before = await operation_count(db, payment["id"])
    cases: list[tuple[dict[str, Any], str | None, str]] = [
        ({"reason": "returned"}, None, "Idempotency-Key"),
        ({"amount": "5.00"}, "k-missing-reason", "reason"),
        ({"reason": ""}, "k-empty-reason", "reason"),
        ({"reason": "returned", "amount": "-5"}, "k-negative", "amount"),
        ({"reason": "returned", "amount": "0"}, "k-zero", "amount"),
        ({"reason": "returned", "amount": "1.001"}, "k-precision", "amount"),
        ({"reason": "returned", "amount": "lots"}, "k-not-a-number", "amount"),
        ({"reason": "returned", "surprise": 1}, "k-unknown-field", "surprise"),
    ]
    for body, key, field in cases:
        response = await refund(api, payment["id"], body, key)
        assert response.status_code == 400, (body, response.text)
        assert names(response, field), (body, response.text)
    unknown = await refund(api, str(uuid.uuid4()), {"reason": "returned"}, "k-unknown-payment")
    assert unknown.status_code == 404
    assert await operation_count(db, payment["id"]) == before
    assert (await sandbox_books(payment["order_id"]))["authorizations"][0]["refunds"] == []


async def test_partial_refunds_never_above_what_was_captured(engine: AsyncEngine, api: httpx.AsyncClient) -> None:
    payment = await captured_payment(engine, api, "20.00")
    first = await refund(api, payment["id"], {"reason": "damaged", "amount": "7.50"}, f"r1-{uuid.uuid4()}")
    assert first.status_code == 201, first.text
    assert first.json()["refund"]["outcome"] == "succeeded"
    assert (first.json()["payment"]["status"], first.json()["payment"]["refunded_amount"]) == (
        "partially_refunded",
        "7.50",
    )
    above = await refund(api, payment["id"], {"reason": "damaged", "amount": "12.51"}, f"r2-{uuid.uuid4()}")
    assert above.status_code == 409, above.text
    assert field_of(above) == {"amount"}
    rest = await refund(api, payment["id"], {"reason": "damaged"}, f"r3-{uuid.uuid4()}")
    assert rest.status_code == 201, rest.text
    assert rest.json()["refund"]["amount"] == "12.50"
    assert (rest.json()["payment"]["status"], rest.json()["payment"]["refunded_amount"]) == ("refunded", "20.00")
    nothing_left = await refund(api, payment["id"], {"reason": "damaged", "amount": "0.01"}, f"r4-{uuid.uuid4()}")
    assert nothing_left.status_code == 409
    books = await sandbox_books(payment["order_id"])
    assert sorted(r["amount"] for r in books["authorizations"][0]["refunds"]) == [750, 1250]
    assert books["live_authorizations"] == 0


async def test_a_refund_retried_with_its_key_refunds_once(engine: AsyncEngine, api: httpx.AsyncClient) -> None:
    payment = await captured_payment(engine, api, "30.00")
    key = f"refund-{uuid.uuid4()}"
    body = {"reason": "returned", "amount": "10.00"}
    first = await refund(api, payment["id"], body, key)
    again = await refund(api, payment["id"], body, key)
    assert (first.status_code, again.status_code) == (201, 201), again.text
    assert again.json()["refund"]["id"] == first.json()["refund"]["id"]
    assert again.json()["payment"]["refunded_amount"] == "10.00"
    other_body = await refund(api, payment["id"], {"reason": "returned", "amount": "11.00"}, key)
    assert other_body.status_code == 422, other_body.text
    assert field_of(other_body) == {"Idempotency-Key"}
    books = await sandbox_books(payment["order_id"])
    assert [r["amount"] for r in books["authorizations"][0]["refunds"]] == [1000]


async def test_refusing_to_refund_a_payment_that_was_not_captured(engine: AsyncEngine, api: httpx.AsyncClient) -> None:
    order_id = uuid.uuid4()
    sessions = async_sessionmaker(engine, expire_on_commit=False)
    request = AuthorizationRequest(order_id, Decimal("5.00"), "USD", "card", "tok_visa", f"test:{order_id}", "sandbox")
    async with sessions() as session:
        await PaymentService(session).request_authorization(request)
        await session.commit()
    payment = await wait_for(api, order_id, "authorized")
    response = await refund(api, payment["id"], {"reason": "returned"}, f"k-{uuid.uuid4()}")
    assert response.status_code == 409
    assert field_of(response) == {"status"}


async def test_concurrent_refunds_never_exceed_what_was_captured(engine: AsyncEngine, api: httpx.AsyncClient) -> None:
    payment = await captured_payment(engine, api, "10.00")
    body = {"reason": "returned", "amount": "3.00"}
    answers = await asyncio.gather(*(refund(api, payment["id"], body, f"c-{uuid.uuid4()}") for _ in range(8)))
    assert sorted(a.status_code for a in answers) == [201, 201, 201, 409, 409, 409, 409, 409]
    after = (await api.get(f"/api/payments/{payment['id']}")).json()
    assert (after["status"], after["refunded_amount"]) == ("partially_refunded", "9.00")
    books = await sandbox_books(payment["order_id"])
    assert [r["amount"] for r in books["authorizations"][0]["refunds"]] == [300, 300, 300]


async def test_concurrent_requests_for_one_authorization_make_one_payment(
    engine: AsyncEngine, api: httpx.AsyncClient
) -> None:
    order_id = uuid.uuid4()
    sessions = async_sessionmaker(engine, expire_on_commit=False)
    request = AuthorizationRequest(order_id, Decimal("8.00"), "USD", "card", "tok_visa", f"test:{order_id}", "sandbox")

    async def ask() -> uuid.UUID:
        async with sessions() as session:
            payment_id = await PaymentService(session).request_authorization(request)
            await session.commit()
            return payment_id

    assert len(set(await asyncio.gather(*(ask() for _ in range(5))))) == 1
    await wait_for(api, order_id, "authorized")
    assert len(await payments_of(api, order_id)) == 1
    assert len((await sandbox_books(str(order_id)))["authorizations"]) == 1


@pytest.mark.slow
async def test_a_refund_the_provider_did_not_answer_is_finished_by_the_worker(
    engine: AsyncEngine, api: httpx.AsyncClient
) -> None:
    """Provider down: the refund answers 202 (pending, not failed: the provider may have acted); once it is
    back the worker asks again with the same key, and a retry of the request answers the finished refund."""
    payment = await captured_payment(engine, api, "15.00")
    key = f"refund-{uuid.uuid4()}"
    body = {"reason": "returned", "amount": "5.00"}
    await consumers.stop("payment-sandbox")
    try:
        pending = await refund(api, payment["id"], body, key)
        assert pending.status_code == 202, pending.text
        assert pending.json()["refund"]["outcome"] == "pending"
        assert pending.json()["payment"]["status"] == "captured"
    finally:
        await consumers.start("payment-sandbox")

    async def refunded() -> bool:
        return bool((await api.get(f"/api/payments/{payment['id']}")).json()["refunded_amount"] == "5.00")

    await eventually(refunded, within=WITHIN, what="the refund finished by the worker")
    again = await refund(api, payment["id"], body, key)
    assert again.status_code == 201, again.text
    assert again.json()["refund"]["id"] == pending.json()["refund"]["id"]
    books = await sandbox_books(payment["order_id"])
    assert [r["amount"] for r in books["authorizations"][0]["refunds"]] == [500]
