"""The returns group skips a pending order's order.created before its inbox (no transaction for it), and
still applies the order events its snapshots start from."""

from __future__ import annotations

import uuid
from typing import Any

import msgspec

from apps.returns.consumers import group as returns
from outbox.decoding import parse
from outbox.events import encode_payload
from tests.support.orders import order_cancelled, order_created
from tests.unit.test_consumer_plan import FakeMessage


def _message(event: Any, offset: int) -> Any:
    headers = [("id", str(uuid.uuid4()).encode()), ("event_type", event.event_type.encode()), ("event_version", b"1")]
    return FakeMessage(headers, encode_payload(event), str(event.order_id).encode(), 0, offset)


def test_a_pending_order_created_is_skipped_and_the_rest_applied() -> None:
    pending = msgspec.structs.replace(order_created("returns-skip", "9.99"), status="pending")
    born_confirmed = order_created("returns-skip", "9.99")
    batch = parse(returns, [_message(pending, 1), _message(born_confirmed, 2), _message(order_cancelled(pending), 3)])
    assert batch.ignored == {"order.created": 1}
    assert [(p.ctx.event_type, p.ctx.offset) for p in batch.parsed] == [("order.created", 2), ("order.cancelled", 3)]
    assert batch.offsets == {("commerce.order", 0): 4}


def test_a_batch_of_pending_orders_only_needs_no_database() -> None:
    pending = msgspec.structs.replace(order_created("returns-skip", "9.99"), status="pending")
    assert not parse(returns, [_message(pending, 5)]).needs_database
