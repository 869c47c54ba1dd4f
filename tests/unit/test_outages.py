"""An outage is logged once when it starts, then once per interval, then when it ends (infra/outages.py); the
stack exporter's dead-letter counter turns librdkafka's connection failures into such an outage."""

from __future__ import annotations

import logging
import os
import subprocess
import sys

import pytest

from infra.dead_letter_stats import LibrdkafkaLogs
from infra.outages import OutageLog

pytestmark = pytest.mark.unit


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_an_outage_is_logged_at_its_start_once_per_interval_and_at_its_end(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = Clock()
    outage = OutageLog(logging.getLogger("test.outages"), "broker away", every_s=300, clock=clock)
    with caplog.at_level(logging.INFO, "test.outages"):
        for _ in range(100):  # 20 a second for 5 s
            outage.failed("Connection refused")
            clock.now += 0.05
        assert [r.getMessage() for r in caplog.records] == [
            "broker away: Connection refused (while it lasts, logged once per 300 s)"
        ]
        clock.now += 300
        outage.failed("Connection refused")
        clock.now += 10
        outage.failed("Connection refused")
        outage.recovered()
        outage.recovered()  # no outage: nothing
    assert [r.getMessage() for r in caplog.records[1:]] == [
        "broker away for 305 s: Connection refused (99 more failures not logged)",
        "broker away: over after 315 s (1 failures since the last line)",
    ]
    caplog.clear()
    with caplog.at_level(logging.INFO, "test.outages"):
        outage.failed("again")  # a new outage starts with a line of its own
    assert [r.getMessage() for r in caplog.records] == ["broker away: again (while it lasts, logged once per 300 s)"]


def test_librdkafka_connection_failures_make_the_outage_and_other_lines_pass(
    caplog: pytest.LogCaptureFixture,
) -> None:
    outage = OutageLog(logging.getLogger("test.outages"), "Kafka unreachable", clock=Clock())
    logs = LibrdkafkaLogs(outage)
    with caplog.at_level(logging.INFO):
        for _ in range(20):
            logs.log(logging.ERROR, "%s [%s] %s", "FAIL", "rdkafka#consumer-1", "Connect to 127.0.0.1:9092 failed")
        logs.log(logging.WARNING, "%s [%s] %s", "CONFWARN", "rdkafka#consumer-1", "unknown property")
    assert [(r.levelno, r.getMessage()) for r in caplog.records] == [
        (
            logging.WARNING,
            "Kafka unreachable: librdkafka: FAIL [rdkafka#consumer-1] Connect to 127.0.0.1:9092 failed "
            "(while it lasts, logged once per 300 s)",
        ),
        (logging.WARNING, "CONFWARN [rdkafka#consumer-1] unknown property"),
    ]


def test_the_dead_letter_counter_logs_a_broker_outage_once_not_each_connection_attempt() -> None:
    """The child against a port nobody listens on, asked twice (each count waits out its 3 s timeout):
    librdkafka failed to connect hundreds of times (644 lines in 6 s before this change); one line says so,
    and each count answers an error (the exporter's commerce_exporter_source_up{source="kafka"} 0)."""
    child = subprocess.Popen(
        [sys.executable, "-m", "infra.dead_letter_stats", "serve"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, "KAFKA_BOOTSTRAP": "127.0.0.1:1"},
    )
    assert child.stdin is not None and child.stdout is not None
    answers = []
    for _ in range(2):
        child.stdin.write(b"count\n")
        child.stdin.flush()
        answers.append(child.stdout.readline())
    _, stderr = child.communicate(timeout=30)
    assert all(b'"error"' in answer for answer in answers), answers
    lines = stderr.decode().splitlines()
    assert len(lines) == 1 and "Kafka unreachable for the dead-letter counts" in lines[0], lines
