"""The JSON log line, the access log's sampling rule and the batching handler."""

from __future__ import annotations

import datetime as dt
import io
import json
import logging
import threading
import time
import uuid
from collections.abc import Callable
from decimal import Decimal
from functools import partial

import pytest

from apps.common.logs import BatchingHandler, JsonLogFormatter, should_log


def test_a_record_is_one_json_line_with_its_extras_as_text_when_not_json() -> None:
    record = logging.makeLogRecord({"name": "apps.http", "levelname": "INFO", "msg": "request %s", "args": ("x",)})
    record.order_id = uuid.UUID(int=7)
    record.amount = Decimal("1.50")
    record.at = dt.datetime(2026, 1, 2, tzinfo=dt.UTC)
    line = JsonLogFormatter("order").format(record)
    entry = json.loads(line)
    assert "\n" not in line
    assert entry["msg"] == "request x" and entry["service"] == "order" and entry["level"] == "info"
    assert entry["order_id"] == str(uuid.UUID(int=7)) and entry["amount"] == "1.50"
    assert entry["at"].startswith("2026-01-02T00:00:00")


def test_extras_the_encoder_has_no_json_for_or_nested_in_lists_and_dicts_are_redacted_too() -> None:
    record = logging.makeLogRecord({"name": "apps.http", "levelname": "ERROR", "msg": "failed"})
    record.error = ValueError("DETAIL:  Failing row contains (7, 12 Baker Street, null).")
    record.reasons = ["Key (name)=(Ada Lovelace) already exists.", {"to": "ada@example.com"}]
    line = JsonLogFormatter("order").format(record)
    for value in ("Baker", "Lovelace", "ada@example.com"):
        assert value not in line
    entry = json.loads(line)
    assert entry["error"] == "DETAIL:  Failing row contains (<redacted>)."
    assert entry["reasons"] == ["Key (name)=(<redacted>) already exists.", {"to": "<email>"}]


@pytest.mark.parametrize(
    ("status", "duration_ms", "sample", "draw", "logged"),
    [
        (200, 3.0, 1.0, 0.99, True),  # the default logs everything
        (200, 3.0, 0.1, 0.5, False),  # an ordinary request outside the sampled share
        (200, 3.0, 0.1, 0.05, True),
        (201, 3.0, 0.0, 0.0, False),  # sampling off
        (404, 3.0, 0.0, 0.9, True),  # client errors always
        (503, 3.0, 0.0, 0.9, True),  # server errors always
        (200, 800.0, 0.0, 0.9, True),  # slow requests always
    ],
)
def test_errors_and_slow_requests_are_always_logged_the_rest_sampled(
    status: int, duration_ms: float, sample: float, draw: float, logged: bool
) -> None:
    assert should_log(status, duration_ms, sample, 500.0, draw) is logged


class _CountingStream(io.StringIO):
    def __init__(self) -> None:
        super().__init__()
        self.writes = 0

    def write(self, text: str) -> int:
        self.writes += 1
        return super().write(text)


def test_records_are_written_in_order_a_batch_per_write_and_on_close() -> None:
    """The request path only appends; the writer thread formats (JSON, redacted) and writes many lines at
    once; closing writes what is still pending."""
    stream = _CountingStream()
    handler = BatchingHandler(stream, flush_ms=60_000)  # nothing is written until close
    handler.setFormatter(JsonLogFormatter("order"))
    args = ["a@example.com"]
    for i in range(100):
        handler.handle(logging.makeLogRecord({"name": "apps.http", "msg": "line %s %s", "args": (i, args)}))
    args.append("changed after logging")
    assert stream.getvalue() == ""
    handler.close()
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert [line["msg"] for line in lines] == [f"line {i} ['<email>']" for i in range(100)]
    assert stream.writes == 1


class _CountingEvent(threading.Event):
    """Counts its timed waits: the writer's gathering sleeps (a plain wait() is the idle one)."""

    def __init__(self) -> None:
        super().__init__()
        self.timed_waits = 0

    def wait(self, timeout: float | None = None) -> bool:
        if timeout is not None:
            self.timed_waits += 1
        return super().wait(timeout)


def _written(stream: io.StringIO) -> list[str]:
    return [json.loads(line)["msg"] for line in stream.getvalue().splitlines()]


def _has_lines(stream: io.StringIO, count: int) -> bool:
    return len(_written(stream)) == count


def _wait_for(condition: Callable[[], bool], within_s: float = 5.0) -> bool:
    deadline = time.monotonic() + within_s
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.005)
    return True


def test_an_idle_writer_sleeps_until_a_record_arrives(monkeypatch: pytest.MonkeyPatch) -> None:
    """No timer while nothing is logged (each wake-up cost an idle API ~130 us, 20 a second); a record still
    reaches the stream within about one interval, after any idle time, batch after batch."""
    monkeypatch.setattr("apps.common.logs.threading.Event", _CountingEvent)
    stream = io.StringIO()
    handler = BatchingHandler(stream, flush_ms=1)
    handler.setFormatter(JsonLogFormatter("order"))
    events = [handler._wake, handler._stop]

    def timed_waits() -> int:
        return sum(event.timed_waits for event in events if isinstance(event, _CountingEvent))

    assert all(isinstance(event, _CountingEvent) for event in events)
    time.sleep(0.3)  # ~300 wake-ups with a timer
    assert timed_waits() == 0
    for batch in range(3):
        handler.handle(logging.makeLogRecord({"name": "apps.http", "msg": f"batch {batch}"}))
        assert _wait_for(partial(_has_lines, stream, batch + 1))
        time.sleep(0.05)
    assert _written(stream) == ["batch 0", "batch 1", "batch 2"]
    assert timed_waits() <= 4
    started = time.monotonic()
    handler.close()
    assert time.monotonic() - started < 1  # an idle writer is woken to end


def test_no_record_is_left_behind_by_a_drain_racing_new_records() -> None:
    """Records appended while the writer drains are written without a later record or close() to push them
    out (the writer clears its wake-up before it drains; a record appended after that sets it again)."""
    stream = io.StringIO()
    handler = BatchingHandler(stream, flush_ms=0.05)
    handler.setFormatter(JsonLogFormatter("order"))

    def log_many(thread: int) -> None:
        for i in range(2000):
            handler.handle(logging.makeLogRecord({"name": "apps.http", "msg": f"{thread} {i}"}))
            if i % 97 == 0:
                time.sleep(0.0005)

    threads = [threading.Thread(target=log_many, args=(t,)) for t in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert _wait_for(lambda: len(_written(stream)) == 8000)
    for t in range(4):  # each thread's lines in its order
        assert [m for m in _written(stream) if m.startswith(f"{t} ")] == [f"{t} {i}" for i in range(2000)]
    handler.close()
