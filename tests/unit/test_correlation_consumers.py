"""The correlation id past the edge (outbox/correlation.py): read from a consumed record's header, set while
its handler runs (one id per single event, a batch's only when its events share it), written with the events
a handler causes (per event for a batch), and on a consumer's plain-text lines."""

from __future__ import annotations

import io
import logging
import uuid
from typing import Any

import pytest

from apps.customer.consumers import group as customer_stats
from outbox.consumer import ConsumerGroup, EventContext
from outbox.correlation import carried, correlation_id
from outbox.decoding import Parsed, parse
from outbox.redaction import RedactingFormatter
from outbox.transaction import BatchTransaction
from outbox.writer import events_parameters
from tests.support.orders import order_created
from tests.unit.test_consumer_plan import _message

R1, R2 = str(uuid.uuid4()), str(uuid.uuid4())


def _with_header(value: bytes | None) -> Any:
    message = _message(uuid.uuid4())
    if value is not None:
        message._headers.append(("correlation_id", value))
    return message


@pytest.mark.parametrize(
    ("header", "read"),
    [(R1.encode(), R1), (R1.upper().encode(), R1), (None, None), (b"", None), (b"ada@example.com", None)],
)
def test_a_records_correlation_id_is_read_when_it_is_a_uuid(header: bytes | None, read: str | None) -> None:
    (parsed,) = parse(customer_stats, [_with_header(header)]).parsed
    assert parsed.ctx.correlation_id == read


def test_a_header_with_a_null_value_as_the_connector_sends_for_null_is_no_id() -> None:
    message = _message(uuid.uuid4())
    message._headers.append(("correlation_id", None))
    (parsed,) = parse(customer_stats, [message]).parsed
    assert parsed.ctx.correlation_id is None


def test_carried_refuses_what_is_not_a_uuid() -> None:
    assert [carried(v) for v in (R1, "x", None, R1 + "\n")] == [R1, None, None, None]


def _parsed(event_type: str, correlation: str | None) -> Parsed:
    ctx = EventContext(
        event_id=uuid.uuid4(),
        aggregate_id=None,
        aggregate_type="order",
        event_type=event_type,
        event_version=1,
        schema_version=1,
        topic="commerce.order",
        partition=0,
        offset=0,
        timestamp=None,  # type: ignore[arg-type]
        correlation_id=correlation,
    )
    return Parsed(None, order_created("c", "1.00"), ctx)  # type: ignore[arg-type]


async def test_a_handler_runs_with_its_events_id_and_a_batch_with_the_id_its_events_share() -> None:
    group = ConsumerGroup("correlation-test")
    seen: list[str | None] = []

    @group.handler("order.created")
    async def one(session: Any, event: Any, ctx: EventContext) -> None:
        seen.append(correlation_id.get())

    @group.batch_handler("order.cancelled")
    async def many(session: Any, items: Any) -> None:
        seen.append(correlation_id.get())

    applier = BatchTransaction.__new__(BatchTransaction)  # _invoke reads the group only: no session factory
    applier.group = group
    await applier._invoke(None, [_parsed("order.created", R1)], None)  # type: ignore[arg-type]
    await applier._invoke(None, [_parsed("order.cancelled", R2), _parsed("order.cancelled", R2)], "order.cancelled")  # type: ignore[arg-type]
    await applier._invoke(None, [_parsed("order.cancelled", R1), _parsed("order.cancelled", R2)], "order.cancelled")  # type: ignore[arg-type]

    assert seen == [R1, R2, None]
    assert correlation_id.get() is None  # reset after each


def test_events_written_take_the_current_id_or_each_their_own() -> None:
    events = [(uuid.uuid4(), order_created("c", "1.00")), (uuid.uuid4(), order_created("d", "2.00"))]
    assert events_parameters(events)["event_correlation_ids"] == [None, None]
    token = correlation_id.set(R1)
    try:
        assert events_parameters(events)["event_correlation_ids"] == [R1, R1]
        assert events_parameters(events, [R2, None])["event_correlation_ids"] == [R2, None]
        with pytest.raises(ValueError, match="1 correlation ids for 2 events"):
            events_parameters(events, [R2])
    finally:
        correlation_id.reset(token)


def test_a_consumers_plain_line_ends_with_the_id_before_any_traceback() -> None:
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(RedactingFormatter("%(levelname)s %(message)s"))
    logger = logging.getLogger("tests.correlation")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        logger.warning("outside")
        token = correlation_id.set(R1)
        try:
            logger.warning("inside")
            logger.warning("one of a batch's", extra={"request_id": R2})
            try:
                raise RuntimeError("boom")
            except RuntimeError:
                logger.exception("failed")
        finally:
            correlation_id.reset(token)
    finally:
        logger.removeHandler(handler)
    lines = out.getvalue().splitlines()
    assert lines[:4] == [
        "WARNING outside",
        f"WARNING inside request_id={R1}",
        f"WARNING one of a batch's request_id={R2}",
        f"ERROR failed request_id={R1}",
    ]
    assert lines[4] == "Traceback (most recent call last):"
