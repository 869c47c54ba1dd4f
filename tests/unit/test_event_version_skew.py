"""A producer deployed before its consumers: what the decoding path (outbox.decoding.parse, the prefetch
thread's) makes of a record of a schema version newer than the newest the consumer knows. The catalogue's
rules (outbox/catalogue/compatibility.py) let a new version only add fields with defaults, so such a record
is read with the consumer's newest class; a record that breaks the rules is dead-lettered, to be redriven
once the consumer knows the version (docs/decisions.md, "A producer ahead of its consumers")."""

from __future__ import annotations

# msgspec resolves struct annotations at runtime: these stay real imports.
import datetime as dt
import json
import uuid
from typing import Any, Literal

import msgspec
import pytest

from outbox.consumer import ConsumerGroup, EventContext
from outbox.decoding import Batch, parse
from outbox.events import Event, EventRegistry
from tests.unit.test_consumer_plan import FakeMessage

pytestmark = pytest.mark.unit


class Parcel(msgspec.Struct, frozen=True, kw_only=True):
    """One parcel of a shipment."""

    parcel_id: uuid.UUID
    weight_grams: int


class ShipmentSentV1(Event, frozen=True, kw_only=True):
    """What the consumer knows: version 1."""

    shipment_id: uuid.UUID
    carrier: Literal["dhl", "ups"]
    parcels: list[Parcel]
    note: str | None = None
    sent_at: dt.datetime


class ShipmentSentV2(ShipmentSentV1, frozen=True, kw_only=True):
    """The consumer after its own deploy: version 2 knows one carrier more (a new version cannot add an
    enum value under the rules; this one is the consumer's side of the redrive below)."""

    carrier: Literal["dhl", "ups", "fedex"]  # type: ignore[assignment]


def consumer(*, knows_v2: bool = False) -> ConsumerGroup:
    registry = EventRegistry()
    registry.register(ShipmentSentV1, "shipment.sent", 1, "shipment")
    if knows_v2:
        registry.register(ShipmentSentV2, "shipment.sent", 2, "shipment")
    group = ConsumerGroup("shipment-skew", registry=registry)

    @group.handler("shipment.sent")
    async def apply(session: Any, event: Event, ctx: EventContext) -> None:
        """Never called: parse decides before any handler."""

    return group


def payload(**changes: Any) -> dict[str, Any]:
    """A version 1 payload with ``changes`` applied (a value of None removes the field)."""
    body: dict[str, Any] = {
        "shipment_id": str(uuid.uuid4()),
        "carrier": "dhl",
        "parcels": [{"parcel_id": str(uuid.uuid4()), "weight_grams": 1200}],
        "note": "fragile",
        "sent_at": "2026-11-28T03:40:00Z",
    }
    body.update(changes)
    return {name: value for name, value in body.items() if value is not None}


def record(body: dict[str, Any], schema_version: str | None = "2") -> Any:
    headers = [("id", str(uuid.uuid4()).encode()), ("event_type", b"shipment.sent"), ("event_version", b"3")]
    if schema_version is not None:
        headers.append(("schema_version", schema_version.encode()))
    return FakeMessage(headers, json.dumps(body).encode(), body["shipment_id"].encode(), 0, 11)


def only_parsed(batch: Batch) -> tuple[Event, EventContext]:
    assert batch.poison == [] and batch.ignored == {}
    [(_, event, ctx)] = batch.parsed
    return event, ctx


def only_poison(batch: Batch) -> str:
    assert batch.parsed == [] and batch.ignored == {}
    [poison] = batch.poison
    assert poison.error_type == "UndecodableEvent"
    assert poison.dead_letter().value == poison.message.value()  # the letter keeps the record as it came
    return poison.error


def test_a_newer_version_with_a_field_the_consumer_does_not_know_is_applied_without_it() -> None:
    body = payload(tracking_url="https://parcels.example/1", parcels=[{**payload()["parcels"][0], "fragile": True}])

    event, ctx = only_parsed(parse(consumer(), [record(body)]))

    assert type(event) is ShipmentSentV1 and ctx.schema_version == 2  # the header, not the class, says 2
    assert event.shipment_id == uuid.UUID(body["shipment_id"]) and event.note == "fragile"
    assert not hasattr(event, "tracking_url")
    assert event.parcels == [Parcel(parcel_id=uuid.UUID(body["parcels"][0]["parcel_id"]), weight_grams=1200)]


def test_a_newer_version_without_an_optional_field_is_applied_with_its_default() -> None:
    event, _ = only_parsed(parse(consumer(), [record(payload(note=None))]))

    assert isinstance(event, ShipmentSentV1) and event.note is None


def test_a_record_without_a_schema_version_header_is_read_as_version_one() -> None:
    event, ctx = only_parsed(parse(consumer(knows_v2=True), [record(payload(), schema_version=None)]))

    assert type(event) is ShipmentSentV1 and ctx.schema_version == 1


def test_a_new_enum_value_is_dead_lettered_then_applied_when_redriven_after_the_consumers_deploy() -> None:
    # The rules refuse a version that adds an enum value (test_catalogue: a new enum value in a new version
    # is a problem): only a producer that broke them sends one. Guessing a value would apply a wrong event.
    message = record(payload(carrier="fedex"))

    error = only_poison(parse(consumer(), [message]))

    assert "shipment.sent v2" in error and "carrier" in error
    event, _ = only_parsed(parse(consumer(knows_v2=True), [message]))
    assert type(event) is ShipmentSentV2 and event.carrier == "fedex"


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"sent_at": None}, "sent_at"),  # a required field removed
        ({"parcels": [{"parcel_id": str(uuid.uuid4())}]}, "weight_grams"),  # ... of a nested struct
        ({"note": 7}, "note"),  # a field retyped
        ({"sent_at": "yesterday"}, "sent_at"),  # a datetime become free text
    ],
)
def test_a_newer_version_that_breaks_the_rules_is_dead_lettered_naming_the_field(
    change: dict[str, Any], field: str
) -> None:
    error = only_poison(parse(consumer(), [record(payload(**change))]))

    assert "shipment.sent v2" in error and field in error


def test_an_older_version_nobody_registered_is_dead_lettered_not_read_as_another() -> None:
    batch = parse(consumer(knows_v2=True), [record(payload(), schema_version="0")])

    assert batch.parsed == [] and "shipment.sent v0 is not registered" in batch.poison[0].error
