"""Records no consumer may stop on: what decoding makes of odd headers, and how a dead letter too large for
Kafka or refused by it is sent. Pure logic on fake messages and a fake producer; the same records against
the broker and a consumer process: tests/integration/test_poison_records.py."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from confluent_kafka import KafkaError, KafkaException
from sqlalchemy.exc import IntegrityError

from apps.customer.consumers import group as customer_stats
from outbox import dead_letters
from outbox.decoding import Poison, parse
from outbox.errors import RetryableError
from outbox.events import encode_payload, payload_as_dict
from outbox.runtime import unreachable
from tests.support.orders import order_created
from tests.unit.test_consumer_plan import FakeMessage


def _record(headers: list[tuple[str, bytes]], value: bytes | None = None) -> Any:
    payload = value if value is not None else encode_payload(order_created(str(uuid.uuid4())))
    return FakeMessage(headers, payload, str(uuid.uuid4()).encode(), 0, 7)


def _headers(event_id: uuid.UUID, event_type: str = "order.created", version: str = "1") -> list[tuple[str, bytes]]:
    return [("id", str(event_id).encode()), ("event_type", event_type.encode()), ("event_version", version.encode())]


@pytest.mark.parametrize("version", ["2147483648", "99999999999", "0", "-5"])
def test_an_event_version_the_inbox_cannot_hold_or_the_outbox_never_writes_is_poison(version: str) -> None:
    # Past 2**31-1 it failed the inbox claim (an integer column) outside any handler: the consumer exited,
    # and again after every restart, on every group reading the topic.
    event_id = uuid.uuid4()
    batch = parse(customer_stats, [_record(_headers(event_id, version=version))])
    assert batch.parsed == []
    assert [(p.event_id, p.error_type) for p in batch.poison] == [(event_id, "PoisonMessage")]
    assert "event_version" in batch.poison[0].error


def test_the_largest_event_version_an_integer_holds_is_applied() -> None:
    batch = parse(customer_stats, [_record(_headers(uuid.uuid4(), version=str(2**31 - 1)))])
    assert len(batch.parsed) == 1 and batch.poison == []


@pytest.mark.parametrize(
    "repeat",
    [("id", None), ("event_type", b"order.cancelled"), ("event_type", b"order.exploded"), ("event_version", b"2")],
)
def test_two_different_values_of_one_identity_header_are_poison_whichever_comes_last(
    repeat: tuple[str, bytes | None],
) -> None:
    name, value = repeat
    event_id = uuid.uuid4()
    headers = _headers(event_id)
    other = value if value is not None else str(uuid.uuid4()).encode()
    for record in (_record([*headers, (name, other)]), _record([(name, other), *headers])):
        batch = parse(customer_stats, [record])
        assert batch.parsed == [] and batch.ignored == {}
        assert len(batch.poison) == 1 and f"conflicting '{name}'" in batch.poison[0].error


def test_a_header_repeated_with_the_same_value_or_an_unknown_one_repeated_is_applied() -> None:
    event_id = uuid.uuid4()
    headers = [*_headers(event_id), ("id", str(event_id).encode()), ("trace", b"a"), ("trace", b"b")]
    batch = parse(customer_stats, [_record(headers)])
    assert [p.ctx.event_id for p in batch.parsed] == [event_id] and batch.poison == []


class FakeProducer:
    """Takes up to ``limit`` bytes of key and value per record; ``refuse`` makes the broker refuse the next."""

    def __init__(self, limit: int = 1000, refuse: KafkaError | None = None) -> None:
        self.limit = limit
        self.refuse = refuse
        self.sent: list[dict[str, Any]] = []
        self._callbacks: list[Any] = []

    def produce(self, topic: str, *, key: bytes | None, value: bytes | None, headers: Any, on_delivery: Any) -> None:
        if len(key or b"") + len(value or b"") > self.limit:
            raise KafkaException(KafkaError(KafkaError.MSG_SIZE_TOO_LARGE))
        self.sent.append({"topic": topic, "key": key, "value": value, "headers": dict(headers)})
        self._callbacks.append(on_delivery)

    def flush(self, timeout: float) -> int:
        for callback in self._callbacks:
            error, self.refuse = self.refuse, None
            callback(error, None)
        self._callbacks.clear()
        return 0


def _letter(value: bytes, headers: list[tuple[str, bytes | None]] | None = None) -> dead_letters.DeadLetterOrigin:
    event_id = str(uuid.uuid4()).encode()
    return dead_letters.DeadLetterOrigin(
        topic="commerce.order",
        partition=2,
        offset=41,
        key=b"k" * 36,
        value=value,
        headers=headers or [("id", event_id), ("event_type", b"order.created")],
        error="cannot decode",
        error_type="UndecodableEvent",
    )


def test_a_letter_too_large_for_the_producer_refers_to_its_record_instead() -> None:
    producer = FakeProducer(limit=1000)
    small = _letter(b"x" * 10)
    large = _letter(b"x" * 5000, [("id", b"1"), ("event_type", b"a.b"), ("big", b"h" * 2000)])
    dead_letters.produce(producer, "g", [small, large])  # type: ignore[arg-type]
    assert [s["value"] for s in producer.sent] == [b"x" * 10, None]
    reference = producer.sent[1]
    assert reference["key"] is None
    assert reference["headers"][dead_letters.OMITTED] == str(36 + 5000 + 2000)
    assert reference["headers"]["id"] == b"1" and "big" not in reference["headers"]
    assert reference["headers"][dead_letters.ORIGINAL_TOPIC] == "commerce.order"
    where = reference["headers"][dead_letters.ORIGINAL_PARTITION], reference["headers"][dead_letters.ORIGINAL_OFFSET]
    assert where == ("2", "41")
    assert dead_letters.OMITTED not in producer.sent[0]["headers"]


def test_a_letter_the_broker_refuses_as_too_large_is_sent_again_as_a_reference() -> None:
    producer = FakeProducer(refuse=KafkaError(KafkaError.MSG_SIZE_TOO_LARGE))
    dead_letters.produce(producer, "g", [_letter(b"x" * 10)])  # type: ignore[arg-type]
    assert [s["value"] for s in producer.sent] == [b"x" * 10, None]
    assert producer.sent[1]["headers"][dead_letters.OMITTED] == str(36 + 10)


def test_a_letter_the_broker_refuses_otherwise_fails_the_batch_for_a_retry() -> None:
    # flush() returned 0 for it (nothing left queued): the batch committed and the letter was lost.
    producer = FakeProducer(refuse=KafkaError(KafkaError.TOPIC_AUTHORIZATION_FAILED))
    with pytest.raises(RetryableError, match="refused"):
        dead_letters.produce(producer, "g", [_letter(b"x")])  # type: ignore[arg-type]


@pytest.mark.parametrize("key", [None, b"", b"not-a-uuid", b"\xff\x00", b"k" * 500_000])
def test_a_key_that_is_no_uuid_leaves_the_aggregate_unknown_and_the_event_applies(key: bytes | None) -> None:
    record = _record(_headers(uuid.uuid4()))
    record._key = key
    batch = parse(customer_stats, [record])
    assert batch.poison == [] and [p.ctx.aggregate_id for p in batch.parsed] == [None]


@pytest.mark.parametrize("spelling", ["NaN", "nan", "-NaN", "sNaN", "nAn"])
def test_an_amount_that_is_not_a_number_is_poison_not_a_sum_spoilt_for_good(spelling: str) -> None:
    # PostgreSQL's numeric stores NaN, and NaN + anything is NaN: one such order.created made the customer's
    # total_spent and the day's and the product's sales NaN for good.
    created = payload_as_dict(order_created(str(uuid.uuid4())))
    spoilers: tuple[Callable[[dict[str, Any]], None], ...] = (
        lambda p: p.update(total_amount=spelling),
        lambda p: p["items"][0].update(unit_price=spelling),
    )
    for spoil in spoilers:
        payload = json.loads(json.dumps(created))
        spoil(payload)
        batch = parse(customer_stats, [_record(_headers(uuid.uuid4()), json.dumps(payload).encode())])
        assert batch.parsed == [] and len(batch.poison) == 1
        assert "is not a number" in batch.poison[0].error


def test_a_payload_that_only_spells_nan_in_a_text_is_applied() -> None:
    created = order_created("nancy-NaN")
    batch = parse(customer_stats, [_record(_headers(uuid.uuid4()), encode_payload(created))])
    assert batch.poison == [] and len(batch.parsed) == 1


@pytest.mark.parametrize("depth", [1_200, 100_000])
def test_json_nested_past_the_recursion_limit_is_poison_even_in_a_field_nobody_reads(depth: int) -> None:
    # msgspec raised RecursionError, which parse() let out of the prefetch thread: the consumer exited.
    payload = b'{"junk": ' + b"[" * depth + b"]" * depth + b", " + encode_payload(order_created("c"))[1:]
    batch = parse(customer_stats, [_record(_headers(uuid.uuid4()), payload)])
    assert batch.parsed == [] and len(batch.poison) == 1 and "nested too deep" in batch.poison[0].error


def test_a_refusal_among_letters_too_large_for_the_producer_still_fails_the_batch() -> None:
    # One letter too large (sent again as a reference) must not hide another one the broker refused.
    producer = FakeProducer(limit=1000, refuse=KafkaError(KafkaError.TOPIC_AUTHORIZATION_FAILED))
    with pytest.raises(RetryableError, match="refused"):
        dead_letters.produce(producer, "g", [_letter(b"x" * 5000), _letter(b"x")])  # type: ignore[arg-type]


def test_types_no_group_handles_are_counted_by_name_only_when_the_project_defines_them() -> None:
    # The ignored count is a metric label: any header value made a time series of its own in every consumer.
    records = [_record(_headers(uuid.uuid4(), event_type=f"junk.{uuid.uuid4().hex}")) for _ in range(3)]
    records.append(_record(_headers(uuid.uuid4(), event_type="order.status_changed")))
    batch = parse(customer_stats, records)
    assert batch.ignored == {"?": 3, "order.status_changed": 1}


@pytest.mark.parametrize(
    ("code", "waits"),
    [
        (KafkaError._TRANSPORT, True),
        (KafkaError._ALL_BROKERS_DOWN, True),
        (KafkaError._TIMED_OUT, True),
        (KafkaError.TOPIC_AUTHORIZATION_FAILED, False),
        (KafkaError.INVALID_CONFIG, False),
    ],
)
def test_a_consumer_waits_for_a_broker_that_does_not_answer_not_for_a_refusal(code: int, waits: bool) -> None:
    # Started while Kafka was down, a consumer exited on its first metadata request and stayed down.
    assert unreachable(KafkaException(KafkaError(code))) is waits


def test_a_rejected_events_dead_letter_names_the_constraint_not_the_values_the_database_refused() -> None:
    # Its error goes to Kafka (dlq.error) and to `just dlq list`, read like a log line.
    refusal = IntegrityError(
        "INSERT INTO t (id, street) VALUES ($1, $2)",
        (7, "12 Baker Street"),
        Exception('new row violates check constraint "t_street"\nDETAIL:  Failing row contains (7, 12 Baker Street).'),
    )
    letter = Poison.of(_record(_headers(uuid.uuid4())), refusal, None).dead_letter()
    assert 'violates check constraint "t_street"' in letter.error and "INSERT INTO t" in letter.error
    assert "Baker" not in letter.error
