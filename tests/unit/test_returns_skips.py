"""The returns group passes over order.created and order.confirmed by their header (undecoded: no claim, no
transaction, whatever the order's status), and still applies the order events its snapshots start from."""

from __future__ import annotations

import uuid
from typing import Any

import msgspec

from apps.returns.consumers import group as returns
from outbox.decoding import parse
from outbox.events import encode_payload
from tests.support.orders import order_cancelled, order_confirmed, order_created
from tests.unit.test_consumer_plan import FakeMessage


def _message(event: Any, offset: int) -> Any:
    headers = [("id", str(uuid.uuid4()).encode()), ("event_type", event.event_type.encode()), ("event_version", b"1")]
    return FakeMessage(headers, encode_payload(event), str(event.order_id).encode(), 0, offset)


def test_order_created_and_confirmed_are_passed_over_and_the_cancellation_applied() -> None:
    pending = msgspec.structs.replace(order_created("returns-skip", "9.99"), status="pending")
    born_confirmed = order_created("returns-skip", "9.99")
    messages = [
        _message(pending, 1),
        _message(born_confirmed, 2),
        _message(order_confirmed(pending), 3),
        _message(order_cancelled(pending), 4),
    ]
    batch = parse(returns, messages)
    assert batch.ignored == {"order.created": 2, "order.confirmed": 1}
    assert [(p.ctx.event_type, p.ctx.offset) for p in batch.parsed] == [("order.cancelled", 4)]
    assert batch.offsets == {("commerce.order", 0): 5}


def test_an_undecodable_order_confirmed_is_not_this_groups_poison() -> None:
    """Passed over by its header, as any type the group does not handle: not decoded, so not dead-lettered."""
    pending = msgspec.structs.replace(order_created("returns-skip", "9.99"), status="pending")
    broken = _message(order_confirmed(pending), 6)
    broken._value = b"{not json"
    batch = parse(returns, [broken])
    assert not batch.poison and not batch.needs_database
    assert batch.ignored == {"order.confirmed": 1}


def test_a_batch_of_order_created_and_confirmed_only_needs_no_database() -> None:
    pending = msgspec.structs.replace(order_created("returns-skip", "9.99"), status="pending")
    assert not parse(returns, [_message(pending, 5), _message(order_confirmed(pending), 6)]).needs_database
