"""A group's ``prepare`` hooks run before its batch's transaction (outbox.consumer.ConsumerGroup.prepare), and
the order saga asks for buyers' data keys there, not in the transaction (apps/order/checkout_orders.py).

The order-saga's checkout.completed handler asked the customer service for the buyer's key inside the batch's
transaction, holding the inbox claims and the rows the batch's earlier events had locked (orders, sagas) for
up to the call's 2 s timeout. A 503 from the customer service is a retry on both paths (E's be72493 made
for_opening raise RetryableError). Pure logic: ConsumerRuntime against a stand-in for its transaction, and
DataKeys against a fake customer client (no broker, no database)."""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Sequence
from typing import Any

import msgspec
import pytest
from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine

import apps.order.checkout_orders as checkout_orders
from apps.checkout.events import CheckoutAddress, CheckoutCompleted, personal_address
from apps.common.data_keys import DataKeys
from apps.common.personal import new_data_key, wrap_data_key
from apps.customer.consumers import group as customer_stats
from apps.order.consumers import group as order_saga
from outbox.decoding import Batch, parse
from outbox.errors import RetryableError
from outbox.retry import is_retryable
from outbox.runtime import ConsumerRuntime
from tests.unit.test_consumer_plan import _message
from tests.unit.test_personal_data import _FakeCustomers

SUBJECT = str(uuid.uuid4())


class RecordingTransaction:
    """BatchTransaction.apply, recorded: what had been prepared when each attempt opened its transaction."""

    def __init__(self, log: list[str]) -> None:
        self.log = log

    async def apply(self, parsed: Any, poison: Any, *, isolate: bool, plan: Any = None) -> None:
        self.log.append("transaction")


def runtime(prepare: Any) -> tuple[ConsumerRuntime, list[str]]:
    group = dataclasses.replace(customer_stats, prepares={})
    group.prepare("order.created")(prepare)
    never_used = create_async_engine("postgresql+asyncpg://nobody@127.0.0.1:1/none")  # connects on first use only
    rt = ConsumerRuntime(group, async_sessionmaker(never_used), max_backoff=0.01)
    log: list[str] = []
    rt.transaction = RecordingTransaction(log)  # type: ignore[assignment]
    return rt, log


def batch() -> Batch:
    messages = [
        _message(uuid.uuid4(), offset=1),
        _message(uuid.uuid4(), event_type="order.status_changed", offset=2),  # not handled: not prepared
        _message(uuid.uuid4(), offset=3),
    ]
    return parse(customer_stats, messages)


async def test_a_batch_is_prepared_before_its_transaction_opens_with_its_events_of_the_type() -> None:
    seen: list[Sequence[Any]] = []

    async def prepare(events: Sequence[Any]) -> None:
        seen.append(events)
        log.append("prepared")

    rt, log = runtime(prepare)
    await rt._apply_with_retries(batch(), None)
    assert log == ["prepared", "transaction"]
    assert len(seen) == 1 and len(seen[0]) == 2


async def test_a_transient_failure_to_prepare_retries_the_batch_before_anything_is_opened() -> None:
    failures = [RetryableError("the customer service is restarting")]

    async def prepare(events: Sequence[Any]) -> None:
        log.append("prepare")
        if failures:
            raise failures.pop()

    rt, log = runtime(prepare)
    await rt._apply_with_retries(batch(), None)
    assert log == ["prepare", "prepare", "transaction"]


async def test_any_other_failure_to_prepare_is_left_to_the_handler() -> None:
    async def prepare(events: Sequence[Any]) -> None:
        log.append("prepare")
        raise ValueError("the handler meets this in the transaction and dead-letters the event")

    rt, log = runtime(prepare)
    await rt._apply_with_retries(batch(), None)
    assert log == ["prepare", "transaction"]


def test_only_a_handled_event_type_can_be_prepared() -> None:
    group = dataclasses.replace(customer_stats, prepares={})
    with pytest.raises(ValueError, match="no handler"):
        group.prepare("order.status_changed")(_nothing)


async def _nothing(events: Sequence[Any]) -> None:
    return None


def checkout_completed() -> tuple[CheckoutCompleted, Any]:
    """A checkout.completed v2 of SUBJECT, its addresses sealed under their key, and that key."""
    key = new_data_key(SUBJECT)
    address = CheckoutAddress(address_line1="1 Main St", city="Springfield", country="US")
    sealed = {
        column: personal_address(address, key, f"{column}.", seal=True)
        for column in ("shipping_address", "billing_address")
    }
    fields = {
        "checkout_id": uuid.uuid4(),
        "order_id": uuid.uuid4(),
        "cart_id": uuid.uuid4(),
        "customer_id": SUBJECT,
        "is_guest": False,
        "lines": [],
        "subtotal": "1.00",
        "tax_amount": "0.00",
        "shipping_amount": "0.00",
        "discount_amount": "0.00",
        "total_amount": "1.00",
        "currency": "USD",
        "shipping_method_id": "standard",
        "shipping_method_name": "Standard",
        "payment_method_type": "card",
        "payment_method_id": "tok_visa",
        "completed_at": "2026-11-27T12:00:00Z",
        **{column: msgspec.to_builtins(a) for column, a in sealed.items()},
    }
    return msgspec.convert(fields, CheckoutCompleted, strict=False), key


async def test_the_order_saga_asks_for_the_buyers_key_before_its_transaction(monkeypatch: pytest.MonkeyPatch) -> None:
    """The hook is registered; it asks once per buyer, and the handler's opening then asks nothing."""
    assert order_saga.prepares["checkout.completed"] is checkout_orders.ask_buyers_keys
    event, key = checkout_completed()
    body = msgspec.json.encode({"subject": key.subject, "kid": key.kid, "key": wrap_data_key(key)})
    customers = _FakeCustomers(200, body)
    keys = DataKeys(customers)  # type: ignore[arg-type]

    async def consumer_keys() -> DataKeys:
        return keys

    monkeypatch.setattr(checkout_orders, "consumer_data_keys", consumer_keys)
    await checkout_orders.ask_buyers_keys([event, event])
    assert customers.calls == 1
    shipping, billing = await checkout_orders._opened_addresses(event)  # in the handler, in the transaction
    assert customers.calls == 1
    assert (shipping.address_line1, billing.city) == ("1 Main St", "Springfield")


async def test_a_customer_service_answering_503_retries_the_checkout_rather_than_dead_letter_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    event, _ = checkout_completed()
    keys = DataKeys(_FakeCustomers(503))  # type: ignore[arg-type]

    async def consumer_keys() -> DataKeys:
        return keys

    monkeypatch.setattr(checkout_orders, "consumer_data_keys", consumer_keys)
    for asked in (checkout_orders.ask_buyers_keys([event]), checkout_orders._opened_addresses(event)):
        with pytest.raises(RetryableError) as raised:
            await asked
        assert is_retryable(raised.value)
