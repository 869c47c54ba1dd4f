"""The runtime's batch planning, made in the prefetch thread: pure logic, checked on fake messages."""

from __future__ import annotations

import uuid
from typing import Any

import msgspec
import pytest

from apps.customer.consumers import group as customer_stats
from outbox.dead_letters import REDRIVE_HEADER
from outbox.decoding import next_offsets, parse, to_uuid
from outbox.events import encode_payload
from outbox.inbox import array_literal, claim_parameters, text_array_literal
from outbox.transaction import _fresh, make_plan
from tests.support.orders import order_created


class FakeMessage:
    """What the runtime reads of a confluent-kafka Message."""

    def __init__(self, headers: list[tuple[str, bytes]], value: bytes, key: bytes, partition: int, offset: int):
        self._headers, self._value, self._key = headers, value, key
        self._partition, self._offset = partition, offset

    def headers(self) -> list[tuple[str, bytes]]:
        return self._headers

    def value(self) -> bytes:
        return self._value

    def key(self) -> bytes:
        return self._key

    def topic(self) -> str:
        return "commerce.order"

    def partition(self) -> int:
        return self._partition

    def offset(self) -> int:
        return self._offset

    def timestamp(self) -> tuple[int, int]:
        return (1, 1_764_140_000_000)

    def error(self) -> None:
        return None


def _message(
    event_id: uuid.UUID,
    *,
    event_type: str = "order.created",
    version: int = 1,
    partition: int = 0,
    offset: int = 0,
    redrive: bool = False,
) -> Any:
    created = order_created("plan-customer", "9.99")
    headers = [
        ("id", str(event_id).encode()),
        ("event_type", event_type.encode()),
        ("event_version", str(version).encode()),
        ("schema_version", b"1"),
    ]
    if redrive:
        headers.append((REDRIVE_HEADER, b"customer-stats"))
    return FakeMessage(headers, encode_payload(created), str(created.order_id).encode(), partition, offset)


def test_a_batch_is_split_into_claims_redrives_and_ignored_types_with_its_offsets() -> None:
    first, again, redriven = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    messages = [
        _message(first, offset=7),
        _message(again, version=2, partition=1, offset=3),
        _message(first, offset=8),  # a second copy in the same batch
        _message(uuid.uuid4(), event_type="order.status_changed", offset=9),  # not handled by customer-stats
        _message(redriven, partition=1, offset=4, redrive=True),
    ]
    batch = parse(customer_stats, messages)
    plan = make_plan(customer_stats, batch.parsed)

    assert batch.ignored == {"order.status_changed": 1} and batch.needs_database
    assert batch.offsets == {("commerce.order", 0): 10, ("commerce.order", 1): 5}
    assert [c.event_id for c in plan.claims] == [first, again] and [c.event_id for c in plan.redriven] == [redriven]
    assert plan.history == {plan.claims[1].aggregate_id}  # only the aggregate first seen past version 1
    assert plan.parameters["event_ids"] == f"{{{first},{again}}}"
    # Applied now: new plain claims, and a redrive only when the inbox let it through.
    assert [p.ctx.event_id for p in _fresh(plan, set(), set())] == [first, again]
    assert [p.ctx.event_id for p in _fresh(plan, {again}, set())] == [first]
    assert [p.ctx.event_id for p in _fresh(plan, set(), {redriven})] == [first, again, redriven]


def test_a_batch_of_new_events_is_applied_whole() -> None:
    batch = parse(customer_stats, [_message(uuid.uuid4(), offset=i) for i in range(3)])
    plan = make_plan(customer_stats, batch.parsed)
    assert plan.history == set() and not plan.redriven
    assert _fresh(plan, set(), set()) is plan.unique and len(plan.unique) == 3


def test_a_batch_of_ignored_events_needs_no_database() -> None:
    batch = parse(customer_stats, [_message(uuid.uuid4(), event_type="order.status_changed", offset=41)])
    assert not batch.needs_database and batch.offsets == {("commerce.order", 0): 42}
    assert next_offsets([]) == {}


def test_array_literals_quote_strings_and_write_null() -> None:
    ident = uuid.UUID(int=5)
    assert array_literal([ident, None, 3]) == "{00000000-0000-0000-0000-000000000005,NULL,3}"
    assert array_literal([]) == "{}"
    assert text_array_literal(["order.created", "NULL", 'a"b', "c\\d"]) == '{"order.created","NULL","a\\"b","c\\\\d"}'
    ctx_free = claim_parameters([])
    assert ctx_free["event_ids"] == "{}" and set(ctx_free) == {
        "event_ids",
        "aggregate_ids_claimed",
        "event_types",
        "event_versions",
        "topics",
        "partitions",
        "offsets",
    }


@pytest.mark.parametrize("spelling", [str, lambda u: u.hex, lambda u: str(u).upper(), lambda u: f"{{{u}}}"])
def test_ids_parse_as_uuid_does(spelling: Any) -> None:
    ident = uuid.uuid4()
    parsed = to_uuid(spelling(ident))
    assert parsed == ident and type(parsed) is uuid.UUID and hash(parsed) == hash(ident)
    with pytest.raises(ValueError):
        to_uuid("not-a-uuid")


def test_events_the_handler_changes_nothing_for_are_skipped_before_the_inbox() -> None:
    pending = msgspec.structs.replace(order_created("plan-customer", "9.99"), status="pending")
    born_confirmed = order_created("plan-customer", "9.99")

    def message(event: Any, offset: int, *, redrive: bool = False) -> Any:
        headers = [("id", str(uuid.uuid4()).encode()), ("event_type", b"order.created"), ("event_version", b"1")]
        if redrive:
            headers.append((REDRIVE_HEADER, b"customer-stats"))
        return FakeMessage(headers, encode_payload(event), str(event.order_id).encode(), 0, offset)

    skipped_only = parse(customer_stats, [message(pending, 5)])
    assert skipped_only.ignored == {"order.created": 1} and not skipped_only.needs_database
    assert skipped_only.offsets == {("commerce.order", 0): 6}  # the offset still moves on

    mixed = parse(customer_stats, [message(pending, 7), message(born_confirmed, 8), message(pending, 9, redrive=True)])
    assert [p.ctx.offset for p in mixed.parsed] == [8, 9]  # a redrive is applied whatever the payload
    assert mixed.ignored == {"order.created": 1}
    assert [c.offset for c in make_plan(customer_stats, mixed.parsed).claims] == [8]


def test_ignored_messages_followed_by_a_poll_that_needs_the_database_are_one_batch() -> None:
    ignored = parse(customer_stats, [_message(uuid.uuid4(), event_type="order.status_changed", offset=3)])
    more = parse(
        customer_stats,
        [_message(uuid.uuid4(), event_type="order.status_changed", offset=4), _message(uuid.uuid4(), offset=5)],
    )
    merged = ignored.then(more)
    assert merged.needs_database and [p.ctx.offset for p in merged.parsed] == [5]
    assert merged.ignored == {"order.status_changed": 2} and len(merged.messages) == 3
    assert merged.offsets == {("commerce.order", 0): 6}
