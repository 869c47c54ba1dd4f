"""`just replay --restart` shows the re-read's progress once the consumers are started again: a broker away
meanwhile (a crash, a restart) is waited for, as the consumers wait for it, instead of ending the command
with a traceback while the replay goes on."""

from __future__ import annotations

import time

import pytest
from confluent_kafka import KafkaError, KafkaException

from infra import replay
from outbox.replay import PartitionPlan


def test_the_progress_waits_out_a_broker_that_does_not_answer(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    answers: list[list[PartitionPlan] | KafkaException] = [
        [PartitionPlan("t", 0, current=10, target=0, end=100)],
        KafkaException(KafkaError(KafkaError._TRANSPORT)),
        [PartitionPlan("t", 0, current=100, target=0, end=100)],
    ]

    def current_plans(group: str, bootstrap: str) -> list[PartitionPlan]:
        answer = answers.pop(0)
        if isinstance(answer, KafkaException):
            raise answer
        return answer

    monkeypatch.setattr(replay, "current_plans", current_plans)
    monkeypatch.setattr(time, "sleep", lambda _: None)
    assert replay.show_progress("g", "broker", {("t", 0): 100}, timeout=60)
    out = capsys.readouterr().out
    assert "the broker does not answer" in out and "lag        0" in out, out


def test_a_broker_away_past_the_timeout_is_a_failure_not_a_traceback(monkeypatch: pytest.MonkeyPatch) -> None:
    def current_plans(group: str, bootstrap: str) -> list[PartitionPlan]:
        raise KafkaException(KafkaError(KafkaError._TRANSPORT))

    monkeypatch.setattr(replay, "current_plans", current_plans)
    monkeypatch.setattr(time, "sleep", lambda _: None)
    assert replay.show_progress("g", "broker", {("t", 0): 100}, timeout=0) is False
