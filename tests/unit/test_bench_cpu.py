"""bench/cpu.py's accounting over fake /proc trees: a component restarted between two snapshots (its root
reaped by pid 1, outside the stack) is reported restarted, with no negative figure for it and no earlier
life of it counted as CPU outside the stack; short lives reaped inside a component still count there."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from bench.cpu import LOAD, OTHER, TICKS, cpu_accounting, cpu_report, cpu_snapshot

NOT_US = 999_999_999  # the load's pid: none of the fake processes


@dataclass(frozen=True)
class P:
    """A fake process: parent, start time (ticks after boot), CPU and reaped children's CPU in seconds."""

    parent: int
    cpu: float
    reaped: float = 0.0
    started: int = 1


def fake_proc(root: Path, processes: dict[int, P], components: dict[str, int]) -> tuple[Path, Path]:
    """/proc/PID/stat files and the stack's pid files, as the kernel and infra/proc.py write them."""
    proc, pids = root / "proc", root / "pids"
    proc.mkdir()
    pids.mkdir()
    for pid, p in processes.items():
        (proc / str(pid)).mkdir()
        ticks = [round(p.cpu * TICKS), 0, round(p.reaped * TICKS), 0]  # utime stime cutime cstime
        fields = ["S", str(p.parent), *["0"] * 9, *map(str, ticks), *["0"] * 4, str(p.started), "0"]
        (proc / str(pid) / "stat").write_text(f"{pid} (some (odd) name) {' '.join(fields)}\n")
    for name, pid in components.items():
        (pids / f"{name}.pid").write_text(f"{pid}\n")
    return proc, pids


def snapshots(
    tmp_path: Path,
    before: tuple[dict[int, P], dict[str, int]],
    after: tuple[dict[int, P], dict[str, int]],
) -> tuple[dict[str, float], set[str], str]:
    first, second = tmp_path / "before", tmp_path / "after"
    first.mkdir()
    second.mkdir()
    proc, pids = fake_proc(first, *before)
    then = cpu_snapshot(proc=proc, pids=pids, load=NOT_US)
    proc, pids = fake_proc(second, *after)
    now = cpu_snapshot(proc=proc, pids=pids, load=NOT_US)
    used, restarted = cpu_accounting(now, then)
    return used, restarted, cpu_report(now, then, per=1, unit="run")


def test_a_component_restarted_between_snapshots_is_reported_restarted_not_negative(tmp_path: Path) -> None:
    # returns-api: a root (30 s so far, 2 s of reaped children) and its worker (40 s); postgres: its
    # postmaster and a backend. pid 1 is outside the stack (process_api, a container's init).
    before = (
        {
            1: P(0, 5.0, reaped=50.0),
            100: P(1, 30.0, reaped=2.0),
            101: P(100, 40.0),
            300: P(1, 10.0),
            301: P(300, 1.0),
        },
        {"returns-api": 100, "postgres": 300},
    )
    # `just restart returns-api`: the worker ends (41 s in all, reaped by its root), then the root (31 s
    # of its own): pid 1 reaps the root's whole life, 31 + 2 + 41 = 74 s. A new root and worker use 2 s.
    # postgres: the backend ended (1.2 s in all, reaped by the postmaster), a new one used 0.3 s.
    after = (
        {
            1: P(0, 5.0, reaped=50.0 + 74.0),
            200: P(1, 0.5, started=9),
            201: P(200, 1.5, started=9),
            300: P(1, 10.5, reaped=1.2),
            302: P(300, 0.3, started=9),
        },
        {"returns-api": 200, "postgres": 300},
    )
    used, restarted, report = snapshots(tmp_path, before, after)

    assert restarted == {"returns-api"}
    # The new root and worker; the old ones' 1 + 1 s since the start went to their reaper, outside.
    assert used["returns-api"] == pytest.approx(2.0)
    assert used[OTHER] == pytest.approx(2.0)  # not the root's 74 s lifetime
    # Reaped inside its component: the ended backend's 0.2 s since the start counts for postgres.
    assert used["postgres"] == pytest.approx(0.5 + 0.2 + 0.3)
    assert all(seconds >= 0 for seconds in used.values())
    assert "restarted during the run: returns-api" in report


def test_an_orphaned_worker_keeps_its_component_and_a_reused_pid_is_a_new_process(tmp_path: Path) -> None:
    # The root of returns-consumer ends, its worker lives on under pid 1; pid 500 (a cron job outside the
    # stack) ended and the kernel gave its number to a new backend of postgres.
    before = (
        {1: P(0, 1.0), 100: P(1, 3.0), 101: P(100, 8.0), 300: P(1, 4.0), 500: P(1, 6.0)},
        {"returns-consumer": 100, "postgres": 300},
    )
    after = (
        {1: P(0, 1.0, reaped=3.5 + 6.0), 101: P(1, 9.0), 300: P(1, 4.0), 500: P(300, 0.7, started=7)},
        {"returns-consumer": 100, "postgres": 300},
    )
    used, restarted, _ = snapshots(tmp_path, before, after)

    assert used["returns-consumer"] == pytest.approx(1.0)  # the orphan's second, not "other"
    assert used["postgres"] == pytest.approx(0.7)
    assert used[OTHER] == pytest.approx(0.5)  # the ended root's 0.5 s since the start
    assert restarted == {"returns-consumer"}
    assert LOAD not in used or used[LOAD] == 0
