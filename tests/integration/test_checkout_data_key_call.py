"""A checkout's completion asks the customer service for the buyer's data key with nothing locked or open.

Since 37a13b4 a completion asks for the key at every completion (a cached one sealed a checkout completed
after its buyer's erasure). It asked inside its transaction, with the session's and the cart's rows locked:
a slow customer service held both (and a pooled connection) for up to its 2 s timeout, and every request on
that cart or session queued behind it. Now the key is asked for first, then the rows are locked and every
check made again (apps/checkout/checkout_service.py, ``complete``).

The checkout app runs in-process under uvicorn (the code in the tree), against the real database, Redis,
catalog and customer service; its calls to the customer service go through a proxy here that forwards
each one to the real service and can hold the data-key route's answer back: that holds a completion
between its two steps (key in hand, nothing locked yet), so the tests can erase the buyer, change the
cart or read the locks in between, or let the checkout's own 2 s timeout run out.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

import apps.checkout.app as checkout_app
from apps.checkout.clients import Dependencies
from apps.checkout.settings import settings
from apps.common.dependencies import catalog_and_customers_lifespan
from apps.common.personal import ADDRESS_FIELDS, envelope_subject
from tests.support.checkout import checkout_body, completed_events, scalar
from tests.support.db import connect, fetch
from tests.support.held import HeldService, held_service, in_process
from tests.support.http import api_client, auth_headers, create_customer, create_product, service_url
from tests.support.orders import eventually

pytestmark = pytest.mark.usefixtures("stack")

DATA_KEYS = "/api/internal/data-keys/"
WITHIN = 60.0
PATIENT = pytest.mark.parametrize("checkout", [30.0], indirect=True, ids=["30 s timeout"])


@pytest.fixture
async def customers() -> AsyncIterator[HeldService]:
    async with held_service("customer", DATA_KEYS) as proxy:
        yield proxy


@pytest.fixture
async def checkout(
    customers: HeldService, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest
) -> AsyncIterator[str]:
    """The in-process checkout app's base URL, its customer-service client pointed at the proxy. Its calls
    time out after the service's own 2 s, or (``PATIENT``) after 30 s, for a test that holds a completion
    between its steps longer than that on a busy machine (a consumer's catching up, a few calls)."""
    monkeypatch.setenv("CUSTOMER_URL", customers.url)
    timeout_s = getattr(request, "param", settings().dependency_timeout_s)
    monkeypatch.setattr(checkout_app, "dependencies_lifespan", catalog_and_customers_lifespan(Dependencies, timeout_s))
    try:
        async with in_process(checkout_app.create_app) as url:
            yield url
    finally:
        customers.let_go()


async def _started_checkout(http: httpx.AsyncClient, customer: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """The customer's cart with one line, and a checkout session started from it."""
    product = await create_product("6.00")
    cart = (await http.post("/api/carts", json={"customer_id": customer})).json()
    line = {"product_id": product["id"], "quantity": 1}
    assert (await http.post(f"/api/carts/{cart['id']}/items", json=line)).status_code == 200
    started = await http.post("/api/checkout", json=checkout_body(cart["id"]))
    assert started.status_code == 201, started.text
    return cart, started.json()


def _complete(http: httpx.AsyncClient, session: dict[str, Any]) -> asyncio.Task[httpx.Response]:
    url = f"/api/checkout/{session['id']}/complete"
    return asyncio.create_task(http.post(url, headers={"Idempotency-Key": uuid.uuid4().hex}))


async def _session_row(checkout_id: str) -> Any:
    rows = await fetch(
        "checkout",
        "SELECT status, shipping_address, billing_address, payment_method_id, order_id "
        "FROM checkout_sessions WHERE id = $1",
        uuid.UUID(checkout_id),
    )
    return rows[0]


async def _nothing_written(cart: dict[str, Any], session: dict[str, Any], status: str, cart_status: str) -> None:
    row = await _session_row(session["id"])
    assert (row["status"], row["order_id"]) == (status, None)
    assert await completed_events(session["id"]) == 0
    assert await scalar("SELECT status FROM cart_sessions WHERE id = $1", uuid.UUID(cart["id"])) == cart_status


async def _erase(customer: str) -> None:
    async with api_client(timeout=30) as http:
        erased = await http.post(f"{service_url('customer')}/api/customers/{customer}/erase")
    assert erased.status_code == 202, erased.text


def _own(base: str, customer: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=base, headers=auth_headers("customer", customer_id=customer), timeout=30)


@dataclass
class Held:
    """A new customer's checkout whose completion is in flight, held between its key and its lock."""

    http: httpx.AsyncClient  # the customer's own client of the in-process checkout
    customer: str
    cart: dict[str, Any]
    session: dict[str, Any]
    completing: asyncio.Task[httpx.Response]


@asynccontextmanager
async def _held_completion(checkout: str, customers: HeldService) -> AsyncIterator[Held]:
    customer = (await create_customer())["id"]
    async with _own(checkout, customer) as http:
        cart, session = await _started_checkout(http, customer)
        customers.hold()
        completing = _complete(http, session)
        await asyncio.wait_for(customers.answered.wait(), 10)
        yield Held(http, customer, cart, session, completing)


@PATIENT
async def test_no_lock_is_held_while_the_customer_service_answers(checkout: str, customers: HeldService) -> None:
    """While the customer service holds its answer, the session and cart rows can be locked at once and
    the cart changed through the API; the completion then sees the change under its lock (409 naming
    cart_id) and writes nothing. Before: NOWAIT failed (the completion held both rows) and the cart's
    change waited for the customer service."""
    async with _held_completion(checkout, customers) as held:
        http, cart, session, completing = held.http, held.cart, held.session, held.completing
        conn = await connect("checkout")
        try:
            async with conn.transaction():
                await conn.execute(
                    "SELECT 1 FROM checkout_sessions WHERE id = $1 FOR UPDATE NOWAIT", uuid.UUID(session["id"])
                )
                await conn.execute("SELECT 1 FROM cart_sessions WHERE id = $1 FOR UPDATE NOWAIT", uuid.UUID(cart["id"]))
        finally:
            await conn.close()

        line = {"product_id": (await create_product("2.00"))["id"], "quantity": 1}
        began = time.monotonic()
        changed = await asyncio.wait_for(http.post(f"/api/carts/{cart['id']}/items", json=line), 5)
        assert changed.status_code == 200, changed.text
        assert time.monotonic() - began < 1.5, "the cart's change waited for the completion"

        customers.release.set()
        late = await asyncio.wait_for(completing, 10)
    assert late.status_code == 409, late.text
    assert late.json()["extra"][0]["key"] == "cart_id"
    await _nothing_written(cart, session, "initialized", "active")


async def test_a_customer_service_that_does_not_answer_in_time_is_a_503_with_nothing_written(
    checkout: str, customers: HeldService
) -> None:
    """The checkout's 2 s timeout runs out: 503 naming the customer service, the session still open, the
    cart still active, no event; the same completion retried once the service answers goes through."""
    customer = (await create_customer())["id"]
    async with _own(checkout, customer) as http:
        cart, session = await _started_checkout(http, customer)
        customers.hold()
        began = time.monotonic()
        answer = await asyncio.wait_for(_complete(http, session), 10)
        took = time.monotonic() - began
        assert answer.status_code == 503, answer.text
        assert "customer" in answer.text
        assert 1.5 < took < 4.0, f"{took:.1f} s: the checkout's own 2 s timeout"
        await _nothing_written(cart, session, "initialized", "active")

        customers.let_go()
        again = await http.post(f"/api/checkout/{session['id']}/complete", headers={"Idempotency-Key": "retry"})
    assert again.status_code == 202, again.text
    assert await completed_events(session["id"]) == 1


@PATIENT
async def test_two_completions_waiting_on_the_key_make_one_order(checkout: str, customers: HeldService) -> None:
    """Both read the open session and ask for the key; the second locks after the first committed and sees it
    completed under its lock (the locked read refreshes the row it read before the call: populate_existing):
    202 replayed, the same order, one event. (Before the change the second waited on the first's lock
    without reaching the customer service, and answered the same.)"""
    customer = (await create_customer())["id"]
    async with _own(checkout, customer) as http:
        _, session = await _started_checkout(http, customer)
        customers.hold()
        first, second = _complete(http, session), _complete(http, session)

        async def both_asked() -> bool:
            return customers.answers == 2

        try:
            await eventually(both_asked, within=3, what="both completions waiting on the key")
        except TimeoutError:
            pass  # one of them waits on a lock: the assertions below say what it answered
        finally:
            customers.release.set()
        answers = [await asyncio.wait_for(task, 10) for task in (first, second)]
    assert [a.status_code for a in answers] == [202, 202], [a.text for a in answers]
    assert len({a.json()["order_id"] for a in answers}) == 1
    assert sorted("Idempotent-Replayed" in a.headers for a in answers) == [False, True]
    assert await completed_events(session["id"]) == 1


@PATIENT
async def test_an_erasure_applied_between_the_key_and_the_lock_refuses_the_completion(
    checkout: str, customers: HeldService
) -> None:
    """The customer service hands out the live key, then the buyer is erased and the checkout consumer
    cancels the open session, all before the completion locks it: 409 naming checkout_id, no event, the
    session cancelled with its addresses gone. Before, the consumer's cancel waited on the completion's
    locks and the completion went through."""
    async with _held_completion(checkout, customers) as held:
        cart, session, completing = held.cart, held.session, held.completing
        await _erase(held.customer)

        async def cancelled() -> bool:
            return str((await _session_row(session["id"]))["status"]) == "cancelled"

        try:
            await eventually(cancelled, within=WITHIN, what="the checkout consumer cancelled the session")
        finally:
            customers.release.set()
        late = await asyncio.wait_for(completing, 10)
    assert late.status_code == 409, late.text
    assert late.json()["extra"][0]["key"] == "checkout_id"
    await _nothing_written(cart, session, "cancelled", "abandoned")
    row = await _session_row(session["id"])
    assert (row["shipping_address"], row["billing_address"], row["payment_method_id"]) == (None, None, None)


@PATIENT
async def test_an_erasure_between_the_key_and_the_commit_leaves_only_what_the_destroyed_key_sealed(
    checkout: str, customers: HeldService
) -> None:
    """The customer service hands out the live key, the buyer is erased, and the completion goes on at once,
    before the checkout consumer has heard of it: it commits (202), but everything it wrote of the person
    is sealed under the key the erasure destroyed (event_store's checkout.completed) or cleared when the
    consumer catches up (the session's addresses), and the order made from it holds no address line.
    When the consumer is quicker than the completion (its cancel committed before the lock), the
    completion is refused with nothing written: both are allowed, and the test retries until it has seen
    the commit win."""
    for _ in range(4):
        async with _held_completion(checkout, customers) as held:
            customer, cart, session = held.customer, held.cart, held.session
            await _erase(customer)
            customers.release.set()
            done = await asyncio.wait_for(held.completing, 10)
        if done.status_code == 409:  # the consumer's cancel came first: the other interleaving
            assert done.json()["extra"][0]["key"] == "checkout_id"
            await _nothing_written(cart, session, "cancelled", "abandoned")
            continue
        assert done.status_code == 202, done.text
        break
    else:
        pytest.fail("the checkout consumer beat the completion four times out of four")

    keys = "SELECT kid, destroyed_at FROM personal_data_keys WHERE subject_id = $1"
    key = (await fetch("customer", keys, customer))[0]
    assert key["destroyed_at"] is not None
    stored = await fetch(
        "checkout",
        "SELECT event_data FROM event_store WHERE aggregate_id = $1 AND event_type = 'checkout.completed'",
        uuid.UUID(session["id"]),
    )
    assert len(stored) == 1
    data = stored[0]["event_data"]
    event = json.loads(data) if isinstance(data, str) else data
    personal = [event[column][f] for column in ("shipping_address", "billing_address") for f in ADDRESS_FIELDS]
    sealed = [value for value in personal if value is not None]
    assert sealed and {envelope_subject(value) for value in sealed} == {(customer, key["kid"])}

    async def cleared() -> bool:
        row = await _session_row(session["id"])
        return row["status"] == "completed" and row["shipping_address"] is None and row["billing_address"] is None

    await eventually(cleared, within=WITHIN, what="the checkout consumer cleared the completed session")

    order_id = done.json()["order_id"]
    async with api_client(timeout=30) as http:

        async def no_address_line() -> bool:
            found = await http.get(f"{service_url('order')}/api/orders/{order_id}")
            if found.status_code != 200:
                return False
            address = found.json().get("shipping_address") or {}
            return address.get("address_line1") in (None, "[erased]")

        await eventually(no_address_line, within=WITHIN, what="the order made, without the buyer's address")
