"""The order saga end to end through the real stack: checkout -> order -> warehouse -> payment, all over Kafka.

Every step is a real process (checkout and order APIs, the order-saga, warehouse-reservations and payment
consumers, the payment worker, the provider sandbox, the order sweeper) and every wait polls with a
deadline. The sandbox's own ledger (GET /v1/ledger?reference=<order id>) is the proof of what was
charged. The provider-timeout test relies on the local stack's ORDER_SAGA_PAYMENT_TIMEOUT_S (15 s) being
shorter than the sandbox's tok_slow delay (SANDBOX_SLOW_DELAY_S, 20 s).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from apps.common.topology import PROCESSES
from tests.support.checkout import US_ADDRESS
from tests.support.db import fetch
from tests.support.http import api_client, create_customer, create_product, service_url, set_stock
from tests.support.orders import eventually, in_currency

pytestmark = pytest.mark.usefixtures("stack")

SANDBOX = f"http://127.0.0.1:{next(p.port for p in PROCESSES if p.name == 'payment-sandbox')}"
SWEEPER = f"http://127.0.0.1:{next(p.port for p in PROCESSES if p.name == 'order-sweeper')}"
# Consumers may be catching up on other tests' events first.
WITHIN = 120.0


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    # Idle connections are dropped well before uvicorn closes them (5 s): reusing one as the server closes
    # it is a ReadError.
    async with api_client(timeout=30, limits=httpx.Limits(max_connections=64, keepalive_expiry=2.0)) as client:
        yield client


async def checkout(
    http: httpx.AsyncClient, lines: list[tuple[dict[str, Any], int]], token: str, *, guest: bool = False
) -> dict[str, Any]:
    """A registered customer's (or a guest's) cart, checkout and completion; the 202's body (checkout_id,
    order_id) with the buyer's customer_id (a guest's is the cart's session id) and the total."""
    base = service_url("checkout")
    customer = None if guest else await create_customer(http)
    cart = await http.post(f"{base}/api/carts", json={} if customer is None else {"customer_id": customer["id"]})
    assert cart.status_code in (200, 201), cart.text
    cart_id = cart.json()["id"]
    headers = {"X-Guest-Token": cart.json()["guest_token"]} if guest else {}
    for product, quantity in lines:
        added = await http.post(
            f"{base}/api/carts/{cart_id}/items",
            json={"product_id": product["id"], "quantity": quantity},
            headers=headers,
        )
        assert added.status_code == 200, added.text
    body = {
        "cart_id": cart_id,
        "shipping_address": US_ADDRESS,
        "billing_address": US_ADDRESS,
        "shipping_method_id": "standard",
        "payment_method": {"type": "card", "token": token},
    }
    session = await http.post(f"{base}/api/checkout", json=body, headers=headers)
    assert session.status_code == 201, session.text
    done = await http.post(
        f"{base}/api/checkout/{session.json()['id']}/complete",
        headers={**headers, "Idempotency-Key": str(uuid.uuid4())},
    )
    assert done.status_code == 202, done.text
    answer = dict(done.json())
    answer["customer_id"] = cart.json()["session_id"] if customer is None else customer["id"]
    answer["total_amount"] = session.json()["total_amount"]
    return answer


async def order(http: httpx.AsyncClient, order_id: str) -> dict[str, Any] | None:
    response = await http.get(f"{service_url('order')}/api/orders/{order_id}")
    if response.status_code == 404:
        return None  # the order-saga consumer has not created it yet
    assert response.status_code == 200, response.text
    return dict(response.json())


async def order_becomes(
    http: httpx.AsyncClient, order_id: str, status: str, payment_status: str, within: float = WITHIN
) -> dict[str, Any]:
    seen: dict[str, Any] = {}

    async def check() -> bool:
        current = await order(http, order_id)
        seen.update(current or {})
        return current is not None and (current["status"], current["payment_status"]) == (status, payment_status)

    try:
        await eventually(check, within=within, what=f"order {order_id} {status}/{payment_status}")
    except TimeoutError as exc:
        raise AssertionError(f"{exc}; last seen {seen.get('status')}/{seen.get('payment_status')}") from exc
    return seen


async def ledger(http: httpx.AsyncClient, order_id: str) -> dict[str, Any]:
    response = await http.get(f"{SANDBOX}/v1/ledger", params={"reference": order_id})
    assert response.status_code == 200, response.text
    return dict(response.json())


async def history(order_id: str) -> list[tuple[str | None, str, str | None]]:
    rows = await fetch(
        "order",
        "SELECT status_from, status_to, reason FROM order_status_history WHERE order_id = $1 ORDER BY id",
        uuid.UUID(order_id),
    )
    return [(r["status_from"], r["status_to"], r["reason"]) for r in rows]


async def reservation_status(http: httpx.AsyncClient, order_id: str) -> str | None:
    response = await http.get(f"{service_url('warehouse')}/api/reservations", params={"order_id": order_id})
    assert response.status_code == 200, response.text
    body = response.json()
    items = body if isinstance(body, list) else body.get("items", [])
    return str(items[0]["status"]) if items else None


async def reservation_becomes(http: httpx.AsyncClient, order_id: str, status: str) -> None:
    async def check() -> bool:
        return await reservation_status(http, order_id) == status

    await eventually(check, within=WITHIN, what=f"reservation of {order_id} {status}")


async def stats(http: httpx.AsyncClient, customer_id: str) -> tuple[int, int, str]:
    response = await http.get(f"{service_url('customer')}/api/customers/{customer_id}/stats")
    if response.status_code == 404:
        return (0, 0, "0.00")
    assert response.status_code == 200, response.text
    body = response.json()
    return body["orders_count"], body["cancelled_count"], in_currency(body)["total_spent"]


async def dashboard(http: httpx.AsyncClient) -> dict[tuple[str, str], float]:
    """The saga dashboard's gauges from the sweeper's /metrics: (metric, label value) -> value."""
    response = await http.get(f"{SWEEPER}/metrics")
    assert response.status_code == 200, response.text
    gauges: dict[tuple[str, str], float] = {}
    for family in text_string_to_metric_families(response.text):
        if family.name in ("order_saga_orders", "order_saga_compensations", "order_saga_payment_failures"):
            gauges.update({(s.name, next(iter(s.labels.values()))): s.value for s in family.samples})
    return gauges


async def dashboard_shows(http: httpx.AsyncClient, metric: str, label: str, above: float) -> None:
    """The gauge (refreshed every 5 s from the tables) rises above ``above``."""

    async def risen() -> bool:
        return (await dashboard(http)).get((metric, label), 0) > above

    await eventually(risen, within=30, what=f"{metric}{{{label}}} above {above}")


async def stocked(price: str, units: int) -> dict[str, Any]:
    product = await create_product(price)
    await set_stock(product["id"], units)
    return product


async def move(http: httpx.AsyncClient, order_id: str, status: str) -> None:
    response = await http.post(f"{service_url('order')}/api/orders/{order_id}/status", json={"status": status})
    assert response.status_code == 200, response.text


async def test_happy_path_confirms_authorizes_then_shipping_captures(http: httpx.AsyncClient) -> None:
    product = await stocked("20.00", 5)
    placed = await checkout(http, [(product, 2)], "tok_visa")
    order_id = placed["order_id"]
    confirmed = await order_becomes(http, order_id, "confirmed", "authorized")
    assert confirmed["waiting_on"] is None and confirmed["total_amount"] == placed["total_amount"]
    assert await history(order_id) == [
        (None, "pending", "checkout completed"),
        ("pending", "confirmed", "payment authorized"),
    ]
    items = await fetch(
        "order", "SELECT warehouse_id, reservation_id FROM order_items WHERE order_id = $1", uuid.UUID(order_id)
    )
    assert items and all(i["warehouse_id"] is not None and i["reservation_id"] is not None for i in items)
    assert await reservation_status(http, order_id) == "reserved"
    held = await ledger(http, order_id)
    assert held["live_authorizations"] == 1 and held["authorizations"][0]["status"] == "authorized"
    # A purchase once confirmed.
    await eventually(
        lambda: _equals(stats(http, placed["customer_id"]), (1, 0, placed["total_amount"])), what="customer stats"
    )

    await move(http, order_id, "processing")
    await move(http, order_id, "shipped")
    await order_becomes(http, order_id, "shipped", "captured")
    assert (await ledger(http, order_id))["authorizations"][0]["status"] == "captured"


async def test_a_guest_checkout_becomes_a_confirmed_guest_order(http: httpx.AsyncClient) -> None:
    product = await stocked("11.00", 2)
    placed = await checkout(http, [(product, 1)], "tok_visa", guest=True)
    confirmed = await order_becomes(http, placed["order_id"], "confirmed", "authorized")
    assert confirmed["customer_id"] == placed["customer_id"] and confirmed["customer_id"].startswith("cs_")


async def test_out_of_stock_cancels_without_asking_for_money(http: httpx.AsyncClient) -> None:
    before = await dashboard(http)
    assert {label for metric, label in before if metric == "order_saga_orders"} == {"reservation", "payment", "done"}
    product = await stocked("9.00", 1)
    placed = await checkout(http, [(product, 2)], "tok_visa")
    order_id = placed["order_id"]
    cancelled = await order_becomes(http, order_id, "cancelled", "pending")
    assert cancelled["waiting_on"] is None
    assert await history(order_id) == [
        (None, "pending", "checkout completed"),
        ("pending", "cancelled", "out_of_stock"),
    ]
    assert await reservation_status(http, order_id) == "failed"
    assert (await ledger(http, order_id))["authorizations"] == []
    # Never confirmed: not a purchase (the stats row, if any, counts nothing for it).
    assert await stats(http, placed["customer_id"]) == (0, 0, "0.00")
    # The saga dashboard counts the compensation by its reason.
    out_of_stock = ("order_saga_compensations", "out_of_stock")
    await dashboard_shows(http, *out_of_stock, above=before[out_of_stock])


async def test_an_order_placed_by_api_waits_on_its_reservation_and_is_cancelled_without_stock(
    http: httpx.AsyncClient,
) -> None:
    """POST /api/orders has no payment method: the saga's one step is the reservation."""
    product, customer = await stocked("4.00", 1), await create_customer(http)
    body = {"customer_id": customer["id"], "items": [{"product_id": product["id"], "quantity": 2}]}
    placed = await http.post(f"{service_url('order')}/api/orders", json=body)
    assert placed.status_code == 201, placed.text
    assert (placed.json()["status"], placed.json()["waiting_on"]) == ("pending", "reservation")
    order_id = placed.json()["id"]
    cancelled = await order_becomes(http, order_id, "cancelled", "pending")
    assert cancelled["waiting_on"] is None and cancelled["waiting_until"] is None
    assert await history(order_id) == [(None, "pending", "awaiting stock"), ("pending", "cancelled", "out_of_stock")]
    events = await fetch("order", "SELECT event_type FROM event_store WHERE aggregate_id = $1", uuid.UUID(order_id))
    assert sorted(e["event_type"] for e in events) == ["order.cancelled", "order.created"]  # no money asked for


async def test_a_declined_card_releases_the_stock_and_cancels(http: httpx.AsyncClient) -> None:
    product = await stocked("12.00", 3)
    placed = await checkout(http, [(product, 3)], "tok_chargeDeclined")
    order_id = placed["order_id"]
    await order_becomes(http, order_id, "cancelled", "declined")
    assert (await history(order_id))[-1] == ("pending", "cancelled", "payment_declined")
    await reservation_becomes(http, order_id, "released")
    assert (await ledger(http, order_id))["live_authorizations"] == 0
    assert await stats(http, placed["customer_id"]) == (0, 0, "0.00")


async def test_a_provider_timeout_compensates_and_the_late_authorization_is_voided(http: httpx.AsyncClient) -> None:
    product = await stocked("15.00", 2)
    placed = await checkout(http, [(product, 1)], "tok_slow")
    order_id = placed["order_id"]

    async def waits_on_payment() -> bool:
        current = await order(http, order_id)
        return current is not None and current["waiting_on"] == "payment" and current["waiting_until"] is not None

    # GET /api/orders/{id} shows the step the order waits on, and until when.
    await eventually(waits_on_payment, within=WITHIN, what="waiting on the payment")
    await dashboard_shows(http, "order_saga_orders", "payment", above=0)
    await eventually(lambda: _status_is(http, order_id, "cancelled"), within=WITHIN, what="timed out")
    assert (await history(order_id))[-1] == ("pending", "cancelled", "timeout")
    await reservation_becomes(http, order_id, "released")
    # The provider's late approval was voided: nothing is held for the order.
    await order_becomes(http, order_id, "cancelled", "voided")
    final = await ledger(http, order_id)
    assert final["live_authorizations"] == 0 and [a["status"] for a in final["authorizations"]] == ["voided"]


async def test_transient_provider_errors_end_in_one_charge(http: httpx.AsyncClient) -> None:
    product = await stocked("8.00", 2)
    placed = await checkout(http, [(product, 1)], "tok_flaky")
    order_id = placed["order_id"]
    await order_becomes(http, order_id, "confirmed", "authorized")
    held = await ledger(http, order_id)
    assert held["live_authorizations"] == 1 and len(held["authorizations"]) == 1
    statuses = [r["status_code"] for r in held["authorizations"][0]["requests"]]
    # Two 503s, then the approval (201); the retries carried the same key, so one authorization exists.
    assert statuses[:3] == [503, 503, 201] and statuses.count(503) == 2


async def test_cancel_after_authorization_voids_and_releases(http: httpx.AsyncClient) -> None:
    product = await stocked("30.00", 4)
    placed = await checkout(http, [(product, 1)], "tok_visa")
    order_id = placed["order_id"]
    await order_becomes(http, order_id, "confirmed", "authorized")
    cancel = await http.post(f"{service_url('order')}/api/orders/{order_id}/cancel", json={"reason": "oops"})
    assert cancel.status_code == 200, cancel.text
    await order_becomes(http, order_id, "cancelled", "voided")
    await reservation_becomes(http, order_id, "released")
    final = await ledger(http, order_id)
    assert final["live_authorizations"] == 0 and [a["status"] for a in final["authorizations"]] == ["voided"]
    # Confirmed, then cancelled: counted as an order and a cancellation, no spend.
    await eventually(
        lambda: _equals(stats(http, placed["customer_id"]), (1, 1, "0.00")), what="customer stats after cancel"
    )


async def payments_of(http: httpx.AsyncClient, order_id: str) -> list[dict[str, Any]]:
    response = await http.get(f"{service_url('payment')}/api/payments", params={"order_id": order_id})
    assert response.status_code == 200, response.text
    return list(response.json())


async def ship(http: httpx.AsyncClient, order_id: str) -> None:
    await move(http, order_id, "processing")
    await move(http, order_id, "shipped")


async def test_a_shipped_order_stopped_before_delivery_is_cancelled_and_its_capture_refunded_once(
    http: httpx.AsyncClient,
) -> None:
    product = await stocked("25.00", 3)
    placed = await checkout(http, [(product, 1)], "tok_visa")
    order_id, url = placed["order_id"], f"{service_url('order')}/api/orders/{placed['order_id']}"
    await order_becomes(http, order_id, "confirmed", "authorized")
    await ship(http, order_id)
    await order_becomes(http, order_id, "shipped", "captured")
    # The customer cannot cancel a shipped order (after delivery it is a return); the back office must say why.
    by_customer = await http.post(f"{url}/cancel", json={"reason": "changed my mind"})
    assert by_customer.status_code == 409 and by_customer.json()["extra"][0]["key"] == "status"
    no_reason = await http.post(f"{url}/status", json={"status": "cancelled"})
    assert no_reason.status_code == 409 and no_reason.json()["extra"][0]["key"] == "reason"
    stopped = await http.post(f"{url}/status", json={"status": "cancelled", "reason": "parcel intercepted"})
    assert stopped.status_code == 200, stopped.text

    await order_becomes(http, order_id, "cancelled", "refunded")
    assert (await history(order_id))[-1] == ("shipped", "cancelled", "parcel intercepted")
    await reservation_becomes(http, order_id, "released")
    (payment,) = await payments_of(http, order_id)
    assert (payment["status"], payment["refunded_amount"]) == ("refunded", payment["captured_amount"])
    assert [op["kind"] for op in payment["operations"]] == ["authorize", "capture", "refund"]
    (auth,) = (await ledger(http, order_id))["authorizations"]
    assert auth["status"] == "refunded" and auth["amount_refunded"] == auth["amount_captured"] == auth["amount"]
    assert len(auth["refunds"]) == 1
    # Counted once confirmed, then netted out: one order, one cancellation, nothing spent.
    await eventually(lambda: _equals(stats(http, placed["customer_id"]), (1, 1, "0.00")), what="stats after refund")


async def test_failed_capture_void_and_refund_show_on_the_order_with_the_providers_reason(
    http: httpx.AsyncClient,
) -> None:
    """The sandbox's tok_captureFail / tok_voidFail / tok_refundFail authorize, then refuse that one call."""
    product = await stocked("5.00", 3)
    placed = await asyncio.gather(
        *(
            checkout(http, [(product, 1)], token, guest=True)
            for token in ("tok_captureFail", "tok_voidFail", "tok_refundFail")
        )
    )
    capture_fails, void_fails, refund_fails = (p["order_id"] for p in placed)
    await asyncio.gather(
        *(order_becomes(http, o, "confirmed", "authorized") for o in (capture_fails, void_fails, refund_fails))
    )
    await asyncio.gather(ship(http, capture_fails), ship(http, refund_fails))
    cancel = await http.post(f"{service_url('order')}/api/orders/{void_fails}/cancel", json={"reason": "oops"})
    assert cancel.status_code == 200, cancel.text
    await order_becomes(http, refund_fails, "shipped", "captured")
    stopped = await http.post(
        f"{service_url('order')}/api/orders/{refund_fails}/status",
        json={"status": "cancelled", "reason": "lost parcel"},
    )
    assert stopped.status_code == 200, stopped.text

    # The order keeps its status; payment_status and one history row (status unchanged) say what failed.
    await order_becomes(http, capture_fails, "shipped", "capture_failed")
    await order_becomes(http, void_fails, "cancelled", "void_failed")
    await order_becomes(http, refund_fails, "cancelled", "refund_failed")
    assert (await history(capture_fails))[-1] == ("shipped", "shipped", "capture_failed: charge_expired_for_capture")
    assert (await history(void_fails))[-1] == ("cancelled", "cancelled", "void_failed: processing_error")
    assert (await history(refund_fails))[-1] == ("cancelled", "cancelled", "refund_failed: expired_or_canceled_card")
    books = {o: (await ledger(http, o))["authorizations"][0] for o in (capture_fails, void_fails, refund_fails)}
    # The dashboard shows what someone must follow up.
    for status in ("capture_failed", "void_failed", "refund_failed"):
        await dashboard_shows(http, "order_saga_payment_failures", status, above=0)
    # The money stays where the refusal left it: the provider still holds the authorization or the capture.
    assert [books[o]["status"] for o in (capture_fails, void_fails, refund_fails)] == [
        "authorized",
        "authorized",
        "captured",
    ]


async def _status_is(http: httpx.AsyncClient, order_id: str, status: str) -> bool:
    current = await order(http, order_id)
    return current is not None and current["status"] == status


async def _equals(value: Any, expected: Any) -> bool:
    return bool(await value == expected)


@pytest.mark.slow
async def test_fifty_checkouts_for_ten_units_confirm_and_authorize_exactly_ten(http: httpx.AsyncClient) -> None:
    product = await stocked("3.00", 10)
    placed = await asyncio.gather(*(checkout(http, [(product, 1)], "tok_visa") for _ in range(50)))
    order_ids = [p["order_id"] for p in placed]

    async def decided() -> list[tuple[str, str] | None]:
        current = await asyncio.gather(*(order(http, order_id) for order_id in order_ids))
        return [(o["status"], o["payment_status"]) if o else None for o in current]

    async def all_decided() -> bool:
        outcomes = await decided()
        return all(o is not None and o[0] != "pending" for o in outcomes)

    await eventually(all_decided, within=240, what="every checkout's order confirmed or cancelled")
    outcomes = await decided()
    assert outcomes.count(("confirmed", "authorized")) == 10, outcomes
    assert outcomes.count(("cancelled", "pending")) == 40, outcomes
    reasons = await fetch(
        "order",
        "SELECT reason, count(*) AS n FROM order_sagas WHERE order_id = ANY($1::uuid[]) GROUP BY reason",
        [uuid.UUID(o) for o in order_ids],
    )
    assert {r["reason"]: r["n"] for r in reasons} == {None: 10, "out_of_stock": 40}
    ledgers = await asyncio.gather(*(ledger(http, order_id) for order_id in order_ids))
    assert sum(entry["live_authorizations"] for entry in ledgers) == 10
    assert sum(len(entry["authorizations"]) for entry in ledgers) == 10
