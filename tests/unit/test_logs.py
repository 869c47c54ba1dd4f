"""The JSON log line, the access log's sampling rule and the batching handler."""

from __future__ import annotations

import datetime as dt
import io
import json
import logging
import uuid
from decimal import Decimal

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
