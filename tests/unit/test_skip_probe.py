"""A skip's Probe (outbox.consumer.Probe): the projections pass a pending order's order.created over from its
status alone, deciding exactly as their skip on the whole event, and anything the probe cannot decide goes on
to the whole decode as before."""

from __future__ import annotations

import uuid
from typing import Any

import msgspec
import pytest

from apps.analytics.consumers import group as analytics
from apps.analytics.projections import not_a_sale
from apps.customer.consumers import group as customer_stats
from apps.customer.projections import not_a_purchase
from apps.warehouse.consumers import group as warehouse
from outbox.consumer import ConsumerGroup, Probe
from outbox.dead_letters import REDRIVE_HEADER
from outbox.decoding import parse
from outbox.events import encode_payload
from tests.support.orders import order_created
from tests.unit.test_consumer_plan import FakeMessage

GROUPS = [(customer_stats, not_a_purchase), (analytics, not_a_sale)]


def _record(payload: bytes, offset: int = 1, **extra: str) -> Any:
    headers = [("id", str(uuid.uuid4()).encode()), ("event_type", b"order.created"), ("event_version", b"1")]
    headers += [(name, value.encode()) for name, value in extra.items()]
    return FakeMessage(headers, payload, str(uuid.uuid4()).encode(), 0, offset)


@pytest.mark.parametrize(("group", "skip"), GROUPS, ids=lambda v: getattr(v, "name", ""))
@pytest.mark.parametrize("status", ["pending", "confirmed", "cancelled", "CONFIRMED", ""])
def test_the_probe_decides_as_the_skip_on_the_whole_event(group: ConsumerGroup, skip: Any, status: str) -> None:
    created = msgspec.structs.replace(order_created("probe", "9.99"), status=status)
    batch = parse(group, [_record(encode_payload(created))])
    assert (batch.ignored == {"order.created": 1}) is skip(created)
    assert len(batch.parsed) == (0 if skip(created) else 1) and not batch.poison


@pytest.mark.parametrize(("group", "skip"), GROUPS, ids=lambda v: getattr(v, "name", ""))
def test_a_pending_order_created_is_not_decoded_whole_by_a_projection(group: ConsumerGroup, skip: Any) -> None:
    """A field the skip does not read, malformed: passed over (the projection would change nothing), while the
    group that applies order.created decodes it whole and dead-letters it."""
    payload = encode_payload(msgspec.structs.replace(order_created("probe", "9.99"), status="pending"))
    broken = payload.replace(b'"total_amount":"9.99"', b'"total_amount":"NaN"')
    assert broken != payload
    batch = parse(group, [_record(broken)])
    assert batch.ignored == {"order.created": 1} and not batch.poison and not batch.parsed
    assert len(parse(warehouse, [_record(broken)]).poison) == 1


@pytest.mark.parametrize("group", [customer_stats, analytics], ids=lambda g: g.name)
@pytest.mark.parametrize(
    "payload",
    [b"{not json", b'{"order_id": 1}', b'{"status": 7}', b"[" * 5000 + b"]" * 5000],
    ids=["not-json", "no-status", "status-not-text", "deep"],
)
def test_what_the_probe_cannot_read_is_decoded_whole_and_poison_as_before(group: ConsumerGroup, payload: bytes) -> None:
    batch = parse(group, [_record(payload)])
    assert len(batch.poison) == 1 and not batch.ignored and not batch.parsed


@pytest.mark.parametrize("group", [customer_stats, analytics], ids=lambda g: g.name)
def test_identity_headers_are_checked_before_the_probe(group: ConsumerGroup) -> None:
    pending = encode_payload(msgspec.structs.replace(order_created("probe", "9.99"), status="pending"))
    for extra in ({"schema_version": "99x"}, {"schema_version": "0"}):
        assert len(parse(group, [_record(pending, 1, **extra)]).poison) == 1
    bad_id: Any = FakeMessage([("id", b"not-a-uuid"), ("event_type", b"order.created")], pending, b"k", 0, 1)
    assert len(parse(group, [bad_id]).poison) == 1
    headers = [("id", str(uuid.uuid4()).encode()), ("event_type", b"order.created"), ("event_version", b"0")]
    bad_version: Any = FakeMessage(headers, pending, b"k", 0, 1)
    assert len(parse(group, [bad_version]).poison) == 1


@pytest.mark.parametrize("group", [customer_stats, analytics], ids=lambda g: g.name)
def test_a_redrive_is_never_probed(group: ConsumerGroup) -> None:
    pending = encode_payload(msgspec.structs.replace(order_created("probe", "9.99"), status="pending"))
    batch = parse(group, [_record(pending, 1, **{REDRIVE_HEADER: group.name})])
    assert [p.ctx.redriven for p in batch.parsed] == [True]


def test_a_probe_needs_a_skip() -> None:
    class Status(msgspec.Struct):
        status: str

    async def apply(session: Any, items: Any) -> None:
        return None

    with pytest.raises(ValueError, match="probe"):
        ConsumerGroup("probe-test").batch_handler("order.created", probe=Probe(Status, lambda s: True))(apply)
