"""The jobs runner's `backups` job keeps the seed's schedule by age (infra/jobs.py, backup_due): a full
backup a day, an incremental every 4 hours, checked at each hourly run."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from infra import backup_physical, jobs, proc

NOW = dt.datetime(2026, 11, 28, 12, 0, tzinfo=dt.UTC)


def _backup(kind: str, hours_ago: float) -> dict[str, Any]:
    stop = (NOW - dt.timedelta(hours=hours_ago)).timestamp()
    return {"type": kind, "timestamp": {"start": stop - 60, "stop": stop}}


@pytest.mark.parametrize(
    ("entries", "due"),
    [
        ([], "full"),  # none at all
        ([_backup("full", 30)], "full"),  # the dev stack's case: a day and more since the last `just backup`
        ([_backup("full", 23.8)], "full"),  # the hourly run just before the day is up (15 min of slack)
        ([_backup("full", 5), _backup("incr", 4.5)], "incr"),
        ([_backup("full", 3.8)], "incr"),
        ([_backup("full", 20), _backup("incr", 1)], None),
        ([_backup("full", 2)], None),
        ([_backup("full", 26), _backup("incr", 1)], "full"),  # incrementals do not stand in for the daily full
    ],
)
def test_the_schedule_asks_for_a_full_daily_and_an_incremental_every_4_hours(
    entries: list[dict[str, Any]], due: str | None
) -> None:
    assert jobs.backup_due(entries, NOW) == due


async def test_the_job_takes_what_is_due_and_nothing_while_the_first_backup_runs(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    taken: list[str] = []
    monkeypatch.setattr(backup_physical, "backups", lambda: [_backup("full", 5)])

    def backup(kind: str) -> dict[str, Any]:
        taken.append(kind)
        return {}

    monkeypatch.setattr(backup_physical, "backup", backup)
    running: set[str] = set()
    monkeypatch.setattr(proc, "running", lambda name: name in running)
    assert await jobs.backups(NOW) == {"incr": 1} and taken == ["incr"]
    running.add(backup_physical.FIRST_BACKUP)
    assert await jobs.backups(NOW) == {} and taken == ["incr"]
    assert "backups" in jobs.JOBS
