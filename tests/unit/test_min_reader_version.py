"""A version whose new field an older reader would misread declares ``min_reader_version``: its outbox rows
carry it, the connector sends it as the record's ``min_reader_version`` header, and the decoding path
(outbox.decoding.parse, the prefetch thread's) dead-letters a record whose minimum is above the newest
version the consumer knows, instead of reading it as that version (docs/decisions.md, "Readers older than a
version"). return.received v3 is the case: a payment consumer on v2 code would ignore ``settle_with`` and
refund through the provider a return already paid back by hand."""

from __future__ import annotations

import datetime as dt
import uuid
from decimal import Decimal
from typing import Any

import pytest

from apps.returns.events import ReceivedLine, RefundOrder, ReturnReceived, ReturnReceivedV1, ReturnReceivedV2
from outbox.consumer import ConsumerGroup, EventContext
from outbox.decoding import parse
from outbox.events import Event, EventRegistry, default_registry, encode_payload, event
from outbox.writer import events_parameters
from tests.unit.test_consumer_plan import FakeMessage
from tests.unit.test_event_version_skew import only_parsed, only_poison

pytestmark = pytest.mark.unit


def group(*classes: tuple[type[Event], int], registry: EventRegistry | None = None) -> ConsumerGroup:
    """A payment-like group reading return.received: its registry knows ``classes`` (class, version) only."""
    if registry is None:
        registry = EventRegistry()
        for cls, version in classes:
            registry.register(cls, "return.received", version, "return")
    consumer = ConsumerGroup("refunds-skew", registry=registry)

    @consumer.handler("return.received")
    async def apply(session: Any, event: Event, ctx: EventContext) -> None:
        """Never called: parse decides before any handler."""

    return consumer


def received(**changes: Any) -> ReturnReceived:
    """A return.received v3 as the returns service writes it; by default naming a refund made by hand."""
    fields: dict[str, Any] = {
        "return_id": uuid.uuid4(),
        "return_number": "RET-1",
        "order_id": uuid.uuid4(),
        "customer_id": "cust-1",
        "items": [
            ReceivedLine(
                return_item_id=uuid.uuid4(),
                product_id=uuid.uuid4(),
                quantity_received=1,
                restock=True,
                refund_amount=Decimal("12.00"),
            )
        ],
        "refund": RefundOrder(refund_id=uuid.uuid4(), amount=Decimal("12.00"), currency="EUR", reason="returned"),
        "received_at": dt.datetime(2026, 11, 28, 4, 0, tzinfo=dt.UTC),
        "settle_with": [uuid.uuid4()],
    }
    return ReturnReceived(**{**fields, **changes})


def record(ev: Event, *extra: tuple[str, bytes], min_reader: str | None = "as written") -> Any:
    """The Kafka record of ``ev`` with the headers the connector's EventRouter sends (``min_reader``: the
    min_reader_version header's value; "as written": the class's, None: no such header, as before the column)."""
    headers = [
        ("id", str(uuid.uuid4()).encode()),
        ("event_type", ev.event_type.encode()),
        ("event_version", b"4"),
        ("schema_version", str(ev.schema_version).encode()),
        ("aggregate_type", b"return"),
    ]
    if min_reader is not None:
        value = str(ev.min_reader_version) if min_reader == "as written" else min_reader
        headers.append(("min_reader_version", value.encode()))
    return FakeMessage([*headers, *extra], encode_payload(ev), b"return-key", 0, 7)


def test_the_settle_with_versions_declare_their_readers_and_the_outbox_row_carries_it() -> None:
    assert (ReturnReceivedV1.min_reader_version, ReturnReceivedV2.min_reader_version) == (1, 2)
    assert ReturnReceived.min_reader_version == 3
    for event_type, version in (("return.approved", 2), ("return.refund_retry_requested", 2)):
        assert default_registry.get(event_type, version).min_reader_version == version
    ev = received()
    assert events_parameters([(ev.return_id, ev)])["event_min_reader_versions"] == [3]


def test_a_consumer_on_v2_code_dead_letters_a_v3_record_naming_the_type_the_version_and_the_deploy() -> None:
    error = only_poison(parse(group((ReturnReceivedV1, 1), (ReturnReceivedV2, 2)), [record(received())]))

    assert "return.received v3" in error and "v3 or later" in error and "up to v2" in error
    assert "deploy the consumer" in error


def test_the_same_record_redriven_after_the_consumers_deploy_is_applied_with_settle_with() -> None:
    ev = received()
    message = record(ev)
    assert only_poison(parse(group((ReturnReceivedV2, 2)), [message]))

    parsed, ctx = only_parsed(parse(group(registry=default_registry), [message]))

    assert type(parsed) is ReturnReceived and parsed.settle_with == ev.settle_with and ctx.schema_version == 3


def test_a_record_without_the_header_or_with_a_minimum_the_consumer_knows_is_read_as_its_newest() -> None:
    # Records written before the column, and versions an older reader may read (an addition that is safe to
    # ignore): what "a producer deployed first" always did.
    old_code = group((ReturnReceivedV1, 1), (ReturnReceivedV2, 2))
    for message in (record(received(), min_reader=None), record(received(), min_reader="2")):
        parsed, ctx = only_parsed(parse(old_code, [message]))
        assert type(parsed) is ReturnReceivedV2 and ctx.schema_version == 3


def test_a_consumer_that_knows_the_records_own_version_reads_it_whatever_its_minimum() -> None:
    v2 = ReturnReceivedV2(**{f: getattr(received(), f) for f in ReturnReceivedV2.__struct_fields__})

    parsed, _ = only_parsed(parse(group((ReturnReceivedV1, 1), (ReturnReceivedV2, 2)), [record(v2, min_reader="2")]))

    assert type(parsed) is ReturnReceivedV2


@pytest.mark.parametrize(
    ("min_reader", "extra", "why"),
    [
        ("three", (), "invalid literal"),
        ("2", (("min_reader_version", b"3"),), "conflicting 'min_reader_version'"),
    ],
)
def test_a_minimum_that_cannot_be_read_is_dead_lettered(
    min_reader: str, extra: tuple[tuple[str, bytes], ...], why: str
) -> None:
    batch = parse(group((ReturnReceivedV2, 2)), [record(received(), *extra, min_reader=min_reader)])

    assert batch.parsed == [] and why in batch.poison[0].error


def test_a_group_that_does_not_handle_the_type_ignores_the_record_as_before() -> None:
    other = ConsumerGroup("no-returns", registry=EventRegistry())

    batch = parse(other, [record(received())])

    assert batch.parsed == [] and batch.poison == [] and sum(batch.ignored.values()) == 1


def test_a_declared_minimum_is_checked_and_kept_when_the_class_is_registered_again() -> None:
    registry = EventRegistry()

    @event("parcel.sent", version=2, aggregate="parcel", min_reader_version=2, registry=registry)
    class ParcelSent(Event, frozen=True, kw_only=True):
        parcel_id: uuid.UUID

    with pytest.raises(ValueError, match=r"outside 1\.\.2"):
        registry.register(type("Later", (ParcelSent,), {}), "parcel.sent", 2, "parcel", min_reader_version=3)
    with pytest.raises(ValueError, match=r"outside 1\.\.1"):
        registry.register(type("Zero", (ParcelSent,), {}), "parcel.sent", 1, "parcel", min_reader_version=0)
    # A test's own registry naming the class again keeps what it declares, and may not say otherwise.
    EventRegistry().register(ParcelSent, "parcel.sent", 2, "parcel")
    assert ParcelSent.min_reader_version == 2
    with pytest.raises(ValueError, match="already registered with min_reader_version 2, not 1"):
        EventRegistry().register(ParcelSent, "parcel.sent", 2, "parcel", min_reader_version=1)
