"""`just dlq` refuses a group that never ran here instead of reporting it clean.

Walking the on-call runbook, `just dlq list customer_stats` (a typo for customer-stats) answered "0 dead
letters ..., 0 pending": read as all clear. Every group's runtime creates `<group>.dlq` when it starts, so a
missing topic means no such group; `just replay` already refuses unknown groups.
"""

from __future__ import annotations

import types

import pytest

from outbox import dlq
from outbox.consumer import ConsumerGroup

pytestmark = pytest.mark.unit


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, str]]:
    made: list[tuple[str, str]] = []
    monkeypatch.setattr(dlq, "list_dead_letters", lambda group, pending_only=False: made.append(("list", group)))
    monkeypatch.setattr(dlq, "acknowledge", lambda group, ids=None: made.append(("ack", group)))
    monkeypatch.setattr(dlq, "redrive", lambda group, ids=None: made.append(("redrive", group)))
    stats = types.SimpleNamespace(group=ConsumerGroup("customer-stats"))
    monkeypatch.setattr(dlq, "consumer_modules", lambda: [stats, types.SimpleNamespace()])
    return made


@pytest.mark.parametrize("command", ["list", "ack", "redrive"])
def test_a_group_without_a_dead_letter_topic_is_refused_naming_the_projects_groups(
    command: str, calls: list[tuple[str, str]], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(dlq, "dead_letter_topic_exists", lambda group: False)

    assert dlq.main([command, "customer_stats"]) == 2

    err = capsys.readouterr().err
    assert "no dead-letter topic customer_stats.dlq" in err
    assert "the project's groups: customer-stats" in err
    assert calls == []


def test_a_group_that_ran_goes_on_as_before(calls: list[tuple[str, str]], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(dlq, "dead_letter_topic_exists", lambda group: True)

    assert dlq.main(["list", "customer-stats"]) == 0
    assert dlq.main(["ack", "customer-stats"]) == 0
    assert calls == [("list", "customer-stats"), ("ack", "customer-stats")]
