"""Event routing (outbox/routing.py): the connectors' regex and the consumers' topics agree, and no group
needs two topics in order."""

from __future__ import annotations

import json
import re
from collections import defaultdict
from pathlib import Path
from typing import cast

import pytest
from confluent_kafka import Message

from infra import connectors
from outbox import dead_letters, groups
from outbox.dlq import DeadLetter
from outbox.events import default_registry
from outbox.routing import project_streams, route_topic_regex, stream_of, topic_for_event, validate_streams

REPO = Path(__file__).resolve().parents[2]
STREAMS = ("order.payment", "inventory.restocked")
PROBES = ["order.payments_made", "order.payment", "inventory.restocked_again", "inventory.restockedx", "a.b"]


def registered_types() -> list[str]:
    groups.consumer_modules()  # imports every service's events and consumers
    return sorted({event_type for event_type, _, _ in default_registry})


def java_route(regex: str, event_type: str, prefix: str = "commerce") -> str:
    """What Kafka's RegexRouter does with the EventRouter's regex: a full match, then the replacement."""
    match = re.fullmatch(regex.replace("(?<", "(?P<"), event_type)
    assert match is not None, (regex, event_type)
    return f"{prefix}.{match.group('routedByValue')}"


def test_the_project_declares_its_streams() -> None:
    assert project_streams() == STREAMS


def test_a_stream_takes_its_types_and_leaves_the_rest_on_the_aggregates_topic() -> None:
    assert topic_for_event("order.payment_requested") == "commerce.order.payment"
    assert topic_for_event("order.payment_capture_requested") == "commerce.order.payment"
    assert topic_for_event("order.payment_cancel_requested") == "commerce.order.payment"
    assert topic_for_event("inventory.restocked") == "commerce.inventory.restocked"
    for event_type in ("order.created", "order.confirmed", "inventory.reserved", "payment.captured"):
        assert topic_for_event(event_type) == f"commerce.{event_type.split('.')[0]}"
    # A prefix only counts up to a separator: "order.payments_made" is not the order.payment stream.
    assert stream_of("order.payments_made", STREAMS) == "order"
    assert stream_of("inventory.restocked_again", STREAMS) == "inventory.restocked"
    assert stream_of("order.payment_x.y", ["order.payment", "order.payment_x"]) == "order.payment_x"  # longest wins


def test_without_streams_every_event_goes_to_its_aggregates_topic(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OUTBOX_STREAMS", "")
    assert project_streams() == ()
    assert topic_for_event("order.payment_requested") == "commerce.order"
    monkeypatch.setenv("OUTBOX_STREAMS", "order.payment")
    assert topic_for_event("order.payment_requested") == "commerce.order.payment"


def test_every_registered_types_first_segment_is_its_aggregate() -> None:
    # Routing by event type sends an unstreamed type where routing by aggregate_type did, only if they agree.
    for event_type in registered_types():
        assert event_type.split(".")[0] == default_registry.aggregate_of(event_type), event_type


@pytest.mark.parametrize("streams", [STREAMS, (), ("order.payment",)], ids=["project", "none", "one"])
def test_the_connectors_regex_routes_as_the_consumers_expect(streams: tuple[str, ...]) -> None:
    regex = route_topic_regex(streams)
    for event_type in [*registered_types(), *PROBES]:
        assert java_route(regex, event_type) == topic_for_event(event_type, streams), event_type


def test_every_connector_file_carries_the_projects_routing() -> None:
    # The files work as they are (curl -d "$(jq .config ...)"), so their literals must be what the deploy sets.
    for path in sorted((REPO / "connectors").glob("*.json")):
        config = json.loads(path.read_text())["config"]
        for key, value in connectors.routing().items():
            assert config[key] == value, (path.name, key)


def test_invalid_streams_are_refused() -> None:
    for bad in ("order", "Order.payment", "order.", ".payment", "order..payment"):
        with pytest.raises(ValueError, match="invalid stream"):
            validate_streams([bad])
    assert validate_streams(["order.payment", "order.payment.capture"]) == ("order.payment.capture", "order.payment")


def test_no_group_needs_two_topics_of_one_aggregate_in_order() -> None:
    # A group's events of one aggregate are in order only within one topic (same key, same partition): all
    # the types a group handles of one aggregate must be routed to the same topic.
    for module in groups.consumer_modules():
        group = module.group
        by_aggregate: dict[str, set[str]] = defaultdict(set)
        for event_type in group.event_types:
            by_aggregate[default_registry.aggregate_of(event_type)].add(topic_for_event(event_type))
        for aggregate, topics in by_aggregate.items():
            assert len(topics) == 1, (group.name, aggregate, topics)


def test_the_payment_and_returns_groups_no_longer_wake_for_orders_or_reservations() -> None:
    topics = {module.group.name: module.group.topics for module in groups.consumer_modules()}
    assert topics["payment"] == ["commerce.order.payment", "commerce.return"]
    assert "commerce.inventory" not in topics["returns"] and "commerce.inventory.restocked" in topics["returns"]
    assert "commerce.inventory" in topics["order-saga"]
    assert connectors.left_topics() == {"payment": ["commerce.order"], "returns": ["commerce.inventory"]}
    assert {"commerce.order.payment", "commerce.inventory.restocked", "commerce.order"} <= connectors.event_topics()


def letter(original_topic: str, event_type: str | None) -> DeadLetter:
    headers = {dead_letters.ORIGINAL_TOPIC: original_topic} | ({"event_type": event_type} if event_type else {})
    return DeadLetter(cast(Message, None), headers)


def test_a_redrive_sends_a_letter_to_where_its_group_reads_its_type_now() -> None:
    # Dead-lettered before the stream existed: its group reads the stream's topic now.
    assert letter("commerce.order", "order.payment_requested").topic == "commerce.order.payment"
    assert letter("commerce.order.payment", "order.payment_requested").topic == "commerce.order.payment"
    assert letter("commerce.order", "order.created").topic == "commerce.order"
    # A benchmark's or a test's own topic, or a letter without an event type, goes back where it came from.
    assert letter("bench-run-1", "order.payment_requested").topic == "bench-run-1"
    assert letter("commerce.order", None).topic == "commerce.order"
