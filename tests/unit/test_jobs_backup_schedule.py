"""The jobs runner's `backups` job keeps the seed's schedule by age (infra/jobs.py, backup_due): a full
backup a day, an incremental every 4 hours, checked at each hourly run."""

from __future__ import annotations

import datetime as dt
import logging
import subprocess
from typing import Any

import pytest

from infra import backup_physical, jobs, postgres, proc

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


# What pgBackRest 2.45 answered the second of two backups of one stanza at once (/tmp/s34/D/lock_repro.py).
LOCK_HELD = (
    "ERROR: [050]: unable to acquire lock on file '/work/main/.stack/pg/pgbackrest/lock/commerce-backup.lock': "
    "Resource temporarily unavailable\n       HINT: is another pgBackRest process running?\n"
)


@pytest.mark.parametrize(
    ("returncode", "stderr", "held"), [(50, LOCK_HELD, True), (1, "ERROR: [056]: no primary", False)]
)
def test_a_refusal_for_the_held_lock_is_told_apart_from_a_failure(
    monkeypatch: pytest.MonkeyPatch, returncode: int, stderr: str, held: bool
) -> None:
    monkeypatch.setattr(
        postgres, "as_pg", lambda argv, **_: subprocess.CompletedProcess(argv, returncode, stdout="", stderr=stderr)
    )
    with pytest.raises(proc.StartError) as raised:
        backup_physical.pgbackrest("--type=full", "backup")
    assert isinstance(raised.value, backup_physical.LockHeld) is held


async def test_a_backup_refused_by_an_operators_backup_skips_the_round_without_a_failure(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """`just backup --full` by hand while the job's backup was due: pgBackRest's lock refuses the job's, which
    counted a failed run (JobFailing for two hours). Now: skipped, logged, no failure, and no success either
    (JobNotSucceeding still fires if every round for three hours is refused)."""
    monkeypatch.setattr(backup_physical, "backups", lambda: [_backup("full", 1000)])  # run_job's now: the clock's
    monkeypatch.setattr(proc, "running", lambda name: False)

    def refused(kind: str) -> dict[str, Any]:
        raise backup_physical.LockHeld(f"pgbackrest --type={kind} backup failed:\n\n{LOCK_HELD}")

    monkeypatch.setattr(backup_physical, "backup", refused)
    outcomes = {outcome: jobs.RUNS.labels("backups", outcome) for outcome in ("ok", "failed", "skipped")}
    before = {outcome: counter._value.get() for outcome, counter in outcomes.items()}
    last_success = jobs.LAST_SUCCESS.labels("backups")._value.get()
    with caplog.at_level(logging.INFO, logger="infra.jobs"):
        assert await jobs.run_job("backups") == {}
    after = {outcome: counter._value.get() - before[outcome] for outcome, counter in outcomes.items()}
    assert after == {"ok": 0, "failed": 0, "skipped": 1}
    assert jobs.LAST_SUCCESS.labels("backups")._value.get() == last_success
    assert "job backups skipped: full backup due, and another pgBackRest process holds the lock" in caplog.text

    def broken(kind: str) -> dict[str, Any]:
        raise proc.StartError("pgbackrest --type=full backup failed: ERROR: [056]: unable to find primary cluster")

    monkeypatch.setattr(backup_physical, "backup", broken)
    assert await jobs.run_job("backups") is None  # any other refusal is still a failure
    assert outcomes["failed"]._value.get() - before["failed"] == 1
