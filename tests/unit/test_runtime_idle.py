"""An idle consumer's prefetch thread keeps its empty polls to itself (outbox.runtime.IDLE_HAND_OVER_S, session 32,
K): each empty 0.5-s poll used to wake the event loop, which asked for the next one. An empty poll still goes
to the loop on a stop, for a stranded member, and at least every IDLE_HAND_OVER_S. Offsets waiting to be
committed are sent by the thread itself, before each poll (session 33).

Pure logic: ConsumerRuntime._fetch against a scripted stand-in for KafkaSide (no broker, no database)."""

from __future__ import annotations

import dataclasses
import time
import uuid
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine

from apps.customer.consumers import group as customer_stats
from outbox import runtime as runtime_module
from outbox.runtime import ConsumerRuntime
from tests.unit.test_consumer_plan import _message


class IdleKafka:
    """KafkaSide's fetch, commit_due, report_lag and stranded: ``empty`` polls of ``poll`` seconds with nothing,
    then ``then``. ``log`` records the calls in order."""

    def __init__(self, empty: int, then: list[Any], *, stranded: bool = False) -> None:
        self.empty, self.then, self.is_stranded = empty, then, stranded
        self.calls = 0
        self.log: list[str] = []

    def commit_due(self) -> None:
        self.log.append("commit_due")

    def report_lag(self) -> None:
        self.log.append("report_lag")

    def stranded(self, within: float) -> bool:
        return self.is_stranded

    def fetch(self, batch_size: int, timeout: float) -> list[Any]:
        self.calls += 1
        self.log.append("fetch")
        if self.calls <= self.empty:
            time.sleep(timeout)
            return []
        return self.then[:batch_size]


def runtime(kafka: IdleKafka) -> ConsumerRuntime:
    group = dataclasses.replace(customer_stats, linger_ms=0)
    never_used = create_async_engine("postgresql+asyncpg://nobody@127.0.0.1:1/none")  # connects on first use only
    rt = ConsumerRuntime(group, async_sessionmaker(never_used), poll_timeout=0.01)
    rt.kafka = kafka  # type: ignore[assignment]  # _fetch uses only these four
    return rt


def test_empty_polls_stay_in_the_thread_until_a_record_comes() -> None:
    kafka = IdleKafka(5, [_message(uuid.uuid4(), offset=7)])
    batch, plan = runtime(kafka)._fetch()
    assert [m.offset() for m in batch.messages] == [7] and plan is not None
    assert kafka.calls == 6  # one hand-over, not six


def test_the_polling_thread_sends_offsets_before_every_poll_and_keeps_its_empty_polls() -> None:
    """A commit sent from the event loop while this thread polled waited for its polls (librdkafka): an idle
    consumer's first commit held the loop ~5 s. The thread sends them itself, between polls."""
    kafka = IdleKafka(3, [_message(uuid.uuid4(), offset=7)])
    batch, _ = runtime(kafka)._fetch()
    assert [m.offset() for m in batch.messages] == [7]
    assert kafka.log == ["commit_due", "report_lag", "fetch"] * 4


def test_a_stranded_member_hands_its_empty_poll_over_at_once() -> None:
    """The loop rejoins a member left without partitions (KafkaSide.stranded): waiting IDLE_HAND_OVER_S for it
    delayed every rejoin by up to 5 s (test_consumer_runtime's rejoin cases took 16-21 s instead of ~7)."""
    kafka = IdleKafka(1_000, [], stranded=True)
    batch, _ = runtime(kafka)._fetch()
    assert not batch.messages and kafka.calls == 1


def test_a_stop_is_handed_over_after_the_poll_in_flight() -> None:
    kafka = IdleKafka(1_000, [])
    rt = runtime(kafka)
    rt.stop()
    started = time.monotonic()
    batch, _ = rt._fetch()
    assert not batch.messages and kafka.calls == 1 and time.monotonic() - started < 0.5


def test_an_idle_consumer_still_hands_over_every_idle_hand_over_s(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(runtime_module, "IDLE_HAND_OVER_S", 0.1)
    kafka = IdleKafka(1_000, [])
    started = time.monotonic()
    batch, _ = runtime(kafka)._fetch()
    took = time.monotonic() - started
    assert not batch.messages and 0.1 <= took < 0.5  # the lag gauges, the stranded check
    assert kafka.calls > 1


def test_run_ending_without_a_stop_hands_over_after_the_poll_in_flight() -> None:
    """run() ending on an error (no stop requested) awaits the fetch in flight: it must not idle on."""
    kafka = IdleKafka(1_000, [])
    rt = runtime(kafka)
    rt._closing = True
    batch, _ = rt._fetch()
    assert not batch.messages and kafka.calls == 1
