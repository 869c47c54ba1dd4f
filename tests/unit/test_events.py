"""Unit tests for outbox.events: registry rules and payload encoding/decoding."""

from __future__ import annotations

import datetime
import decimal
import json
import uuid

import msgspec
import pytest

from outbox.errors import PoisonMessage, UndecodableEvent
from outbox.events import (
    Event,
    EventRegistry,
    decode_payload,
    default_registry,
    encode_payload,
    event,
    payload_as_dict,
)

pytestmark = pytest.mark.unit


# Payload classes live at module level because msgspec resolves the postponed annotations against
# module globals. Each class is registered under one identity only (the registry refuses a class
# posing as two events), though it may be registered in several local registries.


class OrderLine(msgspec.Struct, frozen=True, kw_only=True):
    """One line of an order."""

    sku: str
    quantity: int
    unit_price: decimal.Decimal


class OrderCreatedV1(Event, frozen=True, kw_only=True):
    """An order was placed."""

    order_id: uuid.UUID
    customer_id: uuid.UUID
    total: decimal.Decimal
    placed_at: datetime.datetime
    lines: list[OrderLine]


class OrderCreatedV2(Event, frozen=True, kw_only=True):
    """An order was placed, now with an optional coupon."""

    order_id: uuid.UUID
    customer_id: uuid.UUID
    total: decimal.Decimal
    placed_at: datetime.datetime
    lines: list[OrderLine]
    coupon: str | None = None


class OrderCancelled(Event, frozen=True, kw_only=True):
    """An order was cancelled."""

    order_id: uuid.UUID
    reason: str = ""


class Stray(Event, frozen=True, kw_only=True):
    """A payload used only to probe invalid registrations."""

    value: int = 0


def make_registry(*, with_v2: bool = False) -> EventRegistry:
    registry = EventRegistry()
    registry.register(OrderCreatedV1, "order.created", 1, "order")
    if with_v2:
        registry.register(OrderCreatedV2, "order.created", 2, "order")
    registry.register(OrderCancelled, "order.cancelled", 1, "order")
    return registry


def sample_v1() -> OrderCreatedV1:
    return OrderCreatedV1(
        order_id=uuid.uuid4(),
        customer_id=uuid.uuid4(),
        total=decimal.Decimal("1234.50"),
        placed_at=datetime.datetime(2025, 3, 1, 12, 30, 15, 123456, tzinfo=datetime.UTC),
        lines=[
            OrderLine(sku="SKU-1", quantity=2, unit_price=decimal.Decimal("600.00")),
            OrderLine(sku="SKU-2", quantity=1, unit_price=decimal.Decimal("34.50")),
        ],
    )


def sample_v2() -> OrderCreatedV2:
    v1 = sample_v1()
    return OrderCreatedV2(
        order_id=v1.order_id,
        customer_id=v1.customer_id,
        total=v1.total,
        placed_at=v1.placed_at,
        lines=v1.lines,
        coupon="SPRING25",
    )


# --- round trips ----------------------------------------------------------------------------------


def test_bytes_round_trip_preserves_uuid_decimal_and_datetime() -> None:
    registry = make_registry()
    original = sample_v1()

    decoded = decode_payload("order.created", 1, encode_payload(original), registry)

    assert decoded == original
    assert isinstance(decoded, OrderCreatedV1)
    assert isinstance(decoded.order_id, uuid.UUID)
    assert decoded.total == decimal.Decimal("1234.50")
    assert str(decoded.total) == "1234.50"  # the scale survives, not just the value
    assert decoded.placed_at.tzinfo is not None


def test_str_round_trip() -> None:
    registry = make_registry()
    original = sample_v1()

    assert decode_payload("order.created", 1, encode_payload(original).decode(), registry) == original


def test_money_is_encoded_as_a_json_string() -> None:
    original = sample_v1()

    raw = json.loads(encode_payload(original))

    assert raw["total"] == "1234.50"
    assert raw["lines"][1]["unit_price"] == "34.50"


def test_payload_as_dict_is_json_ready_and_round_trips() -> None:
    registry = make_registry()
    original = sample_v1()

    as_dict = payload_as_dict(original)

    assert as_dict["order_id"] == str(original.order_id)
    assert as_dict["total"] == "1234.50"
    assert as_dict["placed_at"] == "2025-03-01T12:30:15.123456Z"
    assert as_dict["lines"][0] == {"sku": "SKU-1", "quantity": 2, "unit_price": "600.00"}
    json.dumps(as_dict)  # would raise on anything a JSONB column cannot hold
    assert decode_payload("order.created", 1, as_dict, registry) == original


def test_decimal_is_also_accepted_as_a_json_number() -> None:
    registry = make_registry()
    payload = payload_as_dict(sample_v1())
    text = json.dumps(payload).replace('"1234.50"', "1234.50")
    assert '"total": 1234.50' in text

    from_bytes = decode_payload("order.created", 1, text.encode(), registry)
    from_dict = decode_payload("order.created", 1, {**payload, "total": 1234.5}, registry)

    assert isinstance(from_bytes, OrderCreatedV1)
    assert isinstance(from_dict, OrderCreatedV1)
    assert str(from_bytes.total) == "1234.50"  # parsed from the JSON text, not via a float
    assert from_dict.total == decimal.Decimal("1234.5")


def test_unknown_fields_are_ignored() -> None:
    registry = make_registry()
    payload = {**payload_as_dict(sample_v1()), "added_later": {"nested": [1, 2]}}

    assert isinstance(decode_payload("order.created", 1, json.dumps(payload), registry), OrderCreatedV1)
    assert isinstance(decode_payload("order.created", 1, payload, registry), OrderCreatedV1)


def test_older_consumer_decodes_a_newer_version_ignoring_new_fields() -> None:
    consumer_registry = make_registry()  # knows only v1
    newer = sample_v2()

    decoded = decode_payload("order.created", 2, encode_payload(newer), consumer_registry)

    assert isinstance(decoded, OrderCreatedV1)
    assert decoded.order_id == newer.order_id
    assert decoded.lines == newer.lines
    assert not hasattr(decoded, "coupon")


def test_newer_consumer_decodes_each_version_with_its_own_class() -> None:
    registry = make_registry(with_v2=True)

    v1 = decode_payload("order.created", 1, encode_payload(sample_v1()), registry)
    v2 = decode_payload("order.created", 2, encode_payload(sample_v2()), registry)

    assert type(v1) is OrderCreatedV1
    assert type(v2) is OrderCreatedV2
    assert v2.coupon == "SPRING25"


# --- decode failures --------------------------------------------------------------------------------


def test_unknown_event_type_is_undecodable() -> None:
    registry = make_registry()

    with pytest.raises(UndecodableEvent, match=r"unknown event type 'order\.teleported'"):
        decode_payload("order.teleported", 1, b"{}", registry)


def test_undecodable_events_are_poison_messages() -> None:
    assert issubclass(UndecodableEvent, PoisonMessage)


def test_wrong_field_type_names_the_field_type_and_version() -> None:
    registry = make_registry()
    payload = payload_as_dict(sample_v1())
    payload["lines"][1]["quantity"] = "lots"

    with pytest.raises(UndecodableEvent) as excinfo:
        decode_payload("order.created", 1, json.dumps(payload).encode(), registry)

    message = str(excinfo.value)
    assert "order.created v1" in message
    assert "$.lines[1].quantity" in message
    assert isinstance(excinfo.value.__cause__, msgspec.ValidationError)


def test_wrong_field_type_in_a_dict_is_undecodable() -> None:
    registry = make_registry()
    payload = {**payload_as_dict(sample_v1()), "order_id": "not-a-uuid"}

    with pytest.raises(UndecodableEvent, match=r"order_id"):
        decode_payload("order.created", 1, payload, registry)


def test_missing_required_field_is_undecodable() -> None:
    registry = make_registry()
    payload = payload_as_dict(sample_v1())
    del payload["customer_id"]

    with pytest.raises(UndecodableEvent, match=r"customer_id"):
        decode_payload("order.created", 1, json.dumps(payload), registry)


@pytest.mark.parametrize("data", [b"", b"{not json", b"[1, 2]", b"null", "\u00ff"])
def test_malformed_json_is_undecodable(data: bytes | str) -> None:
    registry = make_registry()

    with pytest.raises(UndecodableEvent, match=r"order\.cancelled v1"):
        decode_payload("order.cancelled", 1, data, registry)


# --- registry lookups -------------------------------------------------------------------------------


def test_get_returns_the_exact_version() -> None:
    registry = make_registry(with_v2=True)

    assert registry.get("order.created", 1) is OrderCreatedV1
    assert registry.get("order.created", 2) is OrderCreatedV2


def test_get_falls_back_to_the_newest_for_a_newer_version() -> None:
    registry = make_registry(with_v2=True)

    assert registry.get("order.created", 7) is OrderCreatedV2


def test_get_refuses_an_older_unregistered_version() -> None:
    registry = EventRegistry()
    registry.register(OrderCreatedV2, "order.created", 2, "order")

    with pytest.raises(UndecodableEvent, match=r"order\.created v1 is not registered"):
        registry.get("order.created", 1)


def test_latest() -> None:
    registry = make_registry(with_v2=True)

    assert registry.latest("order.created") is OrderCreatedV2
    assert registry.latest("order.cancelled") is OrderCancelled
    with pytest.raises(UndecodableEvent):
        registry.latest("order.unknown")


def test_iteration_is_sorted_and_membership() -> None:
    registry = EventRegistry()
    registry.register(OrderCreatedV2, "order.created", 2, "order")
    registry.register(OrderCancelled, "order.cancelled", 1, "order")
    registry.register(OrderCreatedV1, "order.created", 1, "order")

    assert list(registry) == [
        ("order.cancelled", 1, OrderCancelled),
        ("order.created", 1, OrderCreatedV1),
        ("order.created", 2, OrderCreatedV2),
    ]
    assert len(registry) == 3
    assert "order.created" in registry
    assert ("order.created", 2) in registry
    assert ("order.created", 3) not in registry
    assert "order.shipped" not in registry
    assert 42 not in registry


def test_decorator_sets_classvars_and_returns_the_class_unchanged() -> None:
    registry = EventRegistry()

    class ParcelShipped(Event, frozen=True, kw_only=True):
        """A parcel left the warehouse."""

        tracking_code: str

    decorated = event("shipment.parcel_shipped", version=3, aggregate="shipment", registry=registry)(ParcelShipped)

    assert decorated is ParcelShipped
    assert ParcelShipped.event_type == "shipment.parcel_shipped"
    assert ParcelShipped.schema_version == 3
    assert ParcelShipped.aggregate_type == "shipment"
    assert registry.get("shipment.parcel_shipped", 3) is ParcelShipped
    assert ParcelShipped(tracking_code="X").tracking_code == "X"
    assert "shipment.parcel_shipped" not in default_registry


def test_classvars_are_not_part_of_the_payload() -> None:
    registry = make_registry()
    cancelled = OrderCancelled(order_id=uuid.uuid4(), reason="customer request")

    assert registry.get("order.cancelled", 1) is OrderCancelled
    assert set(payload_as_dict(cancelled)) == {"order_id", "reason"}


# --- registration rules -----------------------------------------------------------------------------


def test_registering_the_same_class_twice_is_idempotent() -> None:
    registry = make_registry()

    registry.register(OrderCreatedV1, "order.created", 1, "order")

    assert list(registry)[1:] == [("order.created", 1, OrderCreatedV1)]


def test_duplicate_registration_with_another_class_is_refused() -> None:
    registry = make_registry()

    with pytest.raises(ValueError, match=r"order\.created v1 is already registered"):
        registry.register(OrderCreatedV2, "order.created", 1, "order")


def test_one_class_cannot_be_two_events() -> None:
    registry = EventRegistry()

    with pytest.raises(ValueError, match=r"OrderCreatedV1 is already order\.created v1"):
        registry.register(OrderCreatedV1, "order.created", 5, "order")
    assert OrderCreatedV1.schema_version == 1


def test_versions_of_one_event_type_share_the_aggregate() -> None:
    registry = make_registry()

    class Other(Event, frozen=True, kw_only=True):
        """Claims another aggregate."""

    with pytest.raises(ValueError, match=r"aggregate 'order', not 'payment'"):
        registry.register(Other, "order.created", 9, "payment")


class PaymentSettled(Event, frozen=True, kw_only=True):
    """A payment event keyed by its order, not by itself."""

    payment_id: uuid.UUID
    order_id: uuid.UUID


class ProductNamed(Event, frozen=True, kw_only=True):
    """A payload whose aggregate id is its plain ``id``."""

    id: uuid.UUID
    name: str


def test_the_key_field_is_the_aggregates_id_then_id_unless_named() -> None:
    class Keyless(Event, frozen=True, kw_only=True):
        """Neither order_id nor id."""

        reference: str

    registry = make_registry()
    registry.register(ProductNamed, "product.named", 1, "product")
    registry.register(PaymentSettled, "payment.settled", 1, "payment", key="order_id")
    registry.register(Keyless, "order.strayed", 1, "order")

    assert registry.key_of("order.created") == "order_id"
    assert registry.key_of("product.named") == "id"
    assert registry.key_of("payment.settled") == "order_id"
    assert registry.key_of("order.strayed") is None  # the catalogue check asks for one


def test_a_key_that_is_not_a_field_is_refused() -> None:
    registry = EventRegistry()
    with pytest.raises(ValueError, match=r"its key 'order_uuid' is not a field of PaymentSettled"):
        registry.register(PaymentSettled, "payment.settled", 1, "payment", key="order_uuid")
    assert len(registry) == 0 and "payment.settled" not in registry


def test_versions_of_one_event_type_share_the_key() -> None:
    registry = EventRegistry()
    registry.register(PaymentSettled, "payment.settled", 1, "payment", key="order_id")

    class SettledV2(PaymentSettled, frozen=True, kw_only=True):
        """Forgot that the order keys it."""

    with pytest.raises(ValueError, match=r"key 'order_id', not 'payment_id'"):
        registry.register(SettledV2, "payment.settled", 2, "payment")
    assert ("payment.settled", 2) not in registry


@pytest.mark.parametrize(
    "event_type",
    [
        "order",
        "Order.created",
        "order.Created",
        "order created",
        "order-created.x",
        "order.created.",
        ".created",
        "order..created",
        "1order.created",
        "order.created\n",
        "",
    ],
)
def test_invalid_event_type_names_are_refused(event_type: str) -> None:
    with pytest.raises(ValueError, match=r"invalid event type"):
        EventRegistry().register(Stray, event_type, 1, "order")


@pytest.mark.parametrize("event_type", ["order.created", "inventory.reservation_failed", "order.line.added"])
def test_valid_event_type_names(event_type: str) -> None:
    class Fresh(Event, frozen=True, kw_only=True):
        """A payload with no identity yet."""

    registry = EventRegistry()
    registry.register(Fresh, event_type, 1, "order")

    assert event_type in registry


@pytest.mark.parametrize("version", [0, -1])
def test_versions_start_at_one(version: int) -> None:
    with pytest.raises(ValueError, match=r"must be >= 1"):
        EventRegistry().register(Stray, "order.strayed", version, "order")


@pytest.mark.parametrize("aggregate", ["", "Order", "order.line", "order-line"])
def test_invalid_aggregates_are_refused(aggregate: str) -> None:
    with pytest.raises(ValueError, match=r"invalid aggregate"):
        EventRegistry().register(Stray, "order.strayed", 1, aggregate)


def test_only_event_subclasses_can_be_registered() -> None:
    with pytest.raises(TypeError):
        EventRegistry().register(OrderLine, "order.lined", 1, "order")  # type: ignore[arg-type]


def test_a_refused_registration_leaves_no_trace() -> None:
    class Fresh(Event, frozen=True, kw_only=True):
        """A payload with no identity yet."""

    registry = EventRegistry()
    with pytest.raises(ValueError):
        registry.register(Fresh, "Bad.Name", 1, "order")

    assert "event_type" not in Fresh.__dict__
    assert len(registry) == 0
