"""What the stack says about pgBackRest's repository, and `just backup --expire`.

With one full backup and 30 days of time-based retention the WAL archive only grew (16 GB in session 29,
~1.5 GB an hour under benchmarks) and nothing said so before the disk filled. No pgBackRest here: its
`info` answer and the archive's files are made up in tmp_path; expire's arguments are read, not run (the
real expire was tried on a throwaway cluster, docs/operations.md, Backups)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from infra import backup, backup_physical, postgres, proc, stack

HOUR = 3600.0


def _backup(kind: str, start: str, stop_at: float) -> dict[str, Any]:
    return {"type": kind, "label": f"L{stop_at:.0f}", "archive": {"start": start}, "timestamp": {"stop": stop_at}}


def _archive(repo: Path, files: dict[str, int]) -> None:
    for name, size in files.items():
        folder = repo / "archive" / postgres.STANZA / "15-1" / name[:16]
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"{name}-0123456789abcdef0123456789abcdef01234567.zst").write_bytes(b"x" * size)
    (repo / "archive" / postgres.STANZA / "archive.info").write_text("not a segment, not in a segment folder")


def test_the_archive_and_the_wal_a_recovery_replays_are_measured(tmp_path: Path) -> None:
    _archive(
        tmp_path,
        {
            "000000010000000000000001": 100,  # before the newest backup: kept for the older one only
            "000000010000000000000003": 200,  # the newest backup's start
            "000000010000000100000000": 300,
            "000000020000000100000005": 400,  # a later timeline (after a recovery) sorts after
        },
    )
    stanzas = [
        {
            "backup": [
                _backup("full", "000000010000000000000001", 1000.0),
                _backup("incr", "000000010000000000000003", 2000.0),
            ]
        }
    ]
    repo = backup_physical.state(stanzas, repo=tmp_path)
    assert repo == backup_physical.RepoState(
        backups=2, last_full=1000.0, last_backup=2000.0, archive_bytes=1000, to_replay_bytes=900
    )
    assert repo.summary(now=2000.0 + 2 * HOUR).startswith("2 backups, last full 2.3 h ago, last backup 2.0 h ago; ")


def test_an_empty_repository_has_everything_to_replay(tmp_path: Path) -> None:
    _archive(tmp_path, {"000000010000000000000001": 10})
    repo = backup_physical.state([{"backup": []}], repo=tmp_path)
    assert (repo.backups, repo.last_full, repo.archive_bytes, repo.to_replay_bytes) == (0, None, 10, 10)
    assert repo.late(now=0.0)


def test_late_after_26_hours_as_the_alert() -> None:
    repo = backup_physical.RepoState(backups=1, last_full=0.0, last_backup=0.0, archive_bytes=0, to_replay_bytes=0)
    assert not repo.late(now=26 * HOUR)
    assert repo.late(now=26 * HOUR + 1)


def test_expire_keeps_the_newest_full_backups_whatever_the_retention(monkeypatch: pytest.MonkeyPatch) -> None:
    ran: list[tuple[str, ...]] = []

    def pgbackrest(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        ran.append(args)
        out = "P00   INFO: expire command begin 2.45: ...\nP00   INFO: repo1: expire full backup 20261127-020312F\n"
        return subprocess.CompletedProcess(args, 0, out, "")

    monkeypatch.setattr(backup_physical, "pgbackrest", pgbackrest)
    assert backup_physical.expire(1, dry_run=True) == "repo1: expire full backup 20261127-020312F"
    assert ran[-1] == (
        "--log-level-console=info",
        "--repo1-retention-full-type=count",
        "--repo1-retention-full=1",
        "--dry-run",
        "expire",
    )
    backup_physical.expire()
    assert list(ran[-1]) == ["--log-level-console=info", "expire"]  # the configured retention
    with pytest.raises(ValueError, match="at least one full backup"):
        backup_physical.expire(0)


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["--expire", "--keep-full", "0"], "--keep-full must be at least 1"),
        (["--keep-full", "2"], "--keep-full and --dry-run go with --expire"),
        (["--dry-run"], "--keep-full and --dry-run go with --expire"),
    ],
)
def test_expire_arguments_are_checked_before_anything_runs(
    argv: list[str], says: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(backup_physical, "pgbackrest", lambda *a, **k: pytest.fail("pgbackrest ran"))
    with pytest.raises(SystemExit) as exited:
        backup.main(argv)
    assert exited.value.code == 2 and says in capsys.readouterr().err


@pytest.mark.parametrize(
    ("last_backup", "archive", "free", "warned"),
    [
        (-2 * HOUR, 10 * 2**30, 30 * 2**30, None),
        (-27 * HOUR, 10 * 2**30, 30 * 2**30, "no backup in the last 26 hours"),
        (-2 * HOUR, 40 * 2**30, 30 * 2**30, "the WAL archive is larger than the disk's free space"),
    ],
)
def test_status_says_when_the_backups_need_an_operator(
    last_backup: float, archive: int, free: int, warned: str | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    import time

    now = time.time()
    repo = backup_physical.RepoState(1, now + last_backup, now + last_backup, archive, archive)
    monkeypatch.setattr(backup_physical, "state", lambda: repo)
    monkeypatch.setattr(proc, "running", lambda name: False)
    monkeypatch.setattr(
        os, "statvfs", lambda path: os.statvfs_result((4096, 4096, 0, 0, free // 4096, 0, 0, 0, 0, 255))
    )
    line = stack._backups_line()
    assert line.startswith("backups: ") and line.endswith("30.0 GiB free on its disk"), line
    assert ("WARNING" in line) == (warned is not None) and (warned is None or warned in line), line
