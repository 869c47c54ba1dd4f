"""`just dlq list|redrive|ack` on a throwaway group's dead-letter topic: what is pending, what is done.

"Pending" must mean what the DeadLettersPending alert counts (infra/dead_letter_stats.py: past the
`<group>.redrive` group's committed offset), so an operator who reads `list` after the alert sees the same
letters, and `ack` (for letters that can never apply) is what clears it without sending them back.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient

from apps.common.topology import kafka_bootstrap
from outbox import dead_letters as dl
from outbox import dlq
from outbox.dead_letters import dead_letter_topic
from outbox.topics import ensure_topics
from tests.support.kafka import TopicTail, delete_topics

pytestmark = pytest.mark.usefixtures("stack")

MULTI_LINE_ERROR = (
    'value too long for type character varying(36)\n[SQL: INSERT INTO customer_stats ...]\n[parameters: ("x")]'
)


def dead_letter(
    producer: Producer, group: str, source: str, offset: int, event_id: uuid.UUID | None = None
) -> uuid.UUID:
    event_id = event_id or uuid.uuid4()
    producer.produce(
        dead_letter_topic(group),
        key=str(uuid.uuid4()).encode(),
        value=b'{"order_id": "not-a-uuid"}',
        headers=[
            ("id", str(event_id).encode()),
            ("event_type", b"order.created"),
            (dl.ORIGINAL_TOPIC, source.encode()),
            (dl.ORIGINAL_OFFSET, str(offset).encode()),
            (dl.ERROR_TYPE, b"DBAPIError"),
            (dl.ERROR, MULTI_LINE_ERROR.encode()),
        ],
    )
    assert producer.flush(10) == 0
    return event_id


@pytest.fixture
def group() -> Iterator[str]:
    name = f"dlq-cli-{uuid.uuid4().hex[:10]}"
    source = f"{name}.source"
    ensure_topics(kafka_bootstrap(), [dead_letter_topic(name), source], partitions=1)
    yield name
    delete_topics([dead_letter_topic(name), source])
    admin = AdminClient({"bootstrap.servers": kafka_bootstrap()})
    for future in admin.delete_consumer_groups([f"{name}.redrive"], request_timeout=10).values():
        future.result()


@pytest.fixture
def letter(group: str) -> Callable[[int], uuid.UUID]:
    """Dead-letter one message of ``group`` that came from its source topic's given offset."""
    producer = Producer({"bootstrap.servers": kafka_bootstrap()})
    return lambda offset: dead_letter(producer, group, f"{group}.source", offset)


def test_list_marks_pending_letters_and_ack_clears_them_without_sending(
    group: str, letter: Callable[[int], uuid.UUID], capsys: pytest.CaptureFixture[str]
) -> None:
    source = f"{group}.source"
    first = [letter(offset) for offset in (10, 11)]

    assert dlq.list_dead_letters(group) == 2
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[1] for line in lines[:-1]] == ["pending", "pending"]
    assert all("[SQL" not in line for line in lines), "one line per letter, without the statement"
    assert lines[-1].startswith(f"2 dead letters in {group}.dlq, 2 pending")

    tail = TopicTail(source)
    assert dlq.redrive(group) == 2
    sent = tail.read_until(lambda seen: {str(e) for e in first} <= {r.event_id for r in seen})
    tail.close()
    assert {r.headers["redrive.group"] for r in sent} == {group}
    assert capsys.readouterr().out == f"redrove 2 dead letters of {group}\n"
    assert dlq.list_dead_letters(group) == 0
    assert [line.split()[1] for line in capsys.readouterr().out.splitlines()[:-1]] == ["done", "done"]

    letter(12)
    letter(13)
    assert dlq.list_dead_letters(group, pending_only=True) == 2
    assert len(capsys.readouterr().out.splitlines()) == 3  # the two pending letters and the summary

    assert dlq.acknowledge(group) == 2
    assert dlq.list_dead_letters(group) == 0
    assert dlq.acknowledge(group) == 0
    assert dlq.redrive(group) == 0, "acknowledged letters are not sent back by a later redrive"


def test_ack_of_some_events_moves_over_their_letters_and_stops_at_anyone_elses(
    group: str, letter: Callable[[int], uuid.UUID], capsys: pytest.CaptureFixture[str]
) -> None:
    mine = [letter(offset) for offset in (1, 2)]
    theirs = letter(3)
    mine_later = letter(4)

    # A test's letters behind someone else's stay pending: one offset per partition marks progress.
    assert dlq.acknowledge(group, {*mine, mine_later}) == 2
    assert "stopped at another event's pending letter" in capsys.readouterr().out
    assert dlq.list_dead_letters(group, pending_only=True) == 2
    pending = [line.split()[3] for line in capsys.readouterr().out.splitlines()[:-1]]
    assert pending == [f"id={theirs}", f"id={mine_later}"]

    assert dlq.main(["ack", group, "--event-id", str(theirs), "--event-id", str(mine_later)]) == 0
    assert capsys.readouterr().out == f"acknowledged 2 dead letters of {group} without redriving them\n"
    assert dlq.list_dead_letters(group) == 0
    assert dlq.acknowledge(group, {theirs}) == 0


def test_a_redrive_of_some_events_marks_their_letters_done_up_to_anyone_elses(
    group: str, letter: Callable[[int], uuid.UUID], capsys: pytest.CaptureFixture[str]
) -> None:
    mine, theirs, mine_later = letter(1), letter(2), letter(3)
    tail = TopicTail(f"{group}.source")
    assert dlq.redrive(group, {mine, mine_later}) == 2
    sent = tail.read_until(lambda seen: {str(mine), str(mine_later)} <= {r.event_id for r in seen})
    tail.close()
    assert {r.event_id for r in sent} == {str(mine), str(mine_later)}
    assert capsys.readouterr().out.startswith(f"redrove 2 dead letters of {group}; 1 marked done (stopped at")
    assert dlq.list_dead_letters(group, pending_only=True) == 2
    pending = [line.split()[3] for line in capsys.readouterr().out.splitlines()[:-1]]
    assert pending == [f"id={theirs}", f"id={mine_later}"]


def test_a_redrive_by_id_leaves_pending_a_letter_of_that_event_it_did_not_send(
    group: str, letter: Callable[[int], uuid.UUID], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The redriven event fails again (the cause is not fixed yet) and its new letter lands right behind
    the one sent before the redrive marks its letters done: that letter was never sent, so it stays pending
    (marked done, nothing would ever redrive it and the alert would not count it)."""
    mine = letter(1)
    producer = Producer({"bootstrap.servers": kafka_bootstrap()})
    real_read = dlq.read
    reads = 0

    def read_then_fail_again(*args: Any, **kwargs: Any) -> Iterator[tuple[Any, dlq.DeadLetter]]:
        nonlocal reads
        yield from real_read(*args, **kwargs)
        reads += 1
        if reads == 1:
            dead_letter(producer, group, f"{group}.source", 1, event_id=mine)

    monkeypatch.setattr(dlq, "read", read_then_fail_again)
    assert dlq.redrive(group, {mine}) == 1
    monkeypatch.undo()
    assert dlq.list_dead_letters(group, pending_only=True) == 1, "the second letter was marked done unsent"
