"""CPU time per stack component over a run: where the machine's cores went, load-independent.

    snapshot = cpu_snapshot()
    ...  # the load
    print(cpu_report(cpu_snapshot(), snapshot, per=orders_placed, unit="order"))

Each component is a pid file in .stack/pids/ (`just status` lists them); its CPU is utime + stime of that
process and all its descendants (uvicorn workers, the JVM's threads, PostgreSQL's backends, which are
children of the postmaster), read from /proc. A process that ended during the run is counted through its
parent: the kernel adds a reaped child's whole CPU time to the parent's cutime + cstime, which each
snapshot keeps, and what the child had used before the run is taken off again. Without that, the short
lives (PostgreSQL's parallel workers and new connections' backends, pgBackRest's archive-push) went
uncounted: 36-192 ms/s of PostgreSQL's CPU while tests ran. A component restarted during the run (its
root is reaped by pid 1, outside the stack) is reported as restarted (cpu_accounting): taken off its own
figure, its root's earlier life made it negative and showed as impossible cores outside the stack.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections import defaultdict
from pathlib import Path
from typing import NamedTuple

from infra.paths import PIDS

TICKS = os.sysconf("SC_CLK_TCK")
PROC = Path("/proc")
# This process and what it runs (wrk, pgbench): the load, not the stack.
LOAD = "bench"
# Processes of no component and not the load: other users of the machine.
OTHER = "other"


def stat_fields(raw: str) -> list[str]:
    """The fields of a /proc/PID/stat (or task stat) line after the command name, from its state on (so
    ``[1]`` is the parent pid, ``[11]``/``[12]`` utime/stime, ``[19]`` the start time): the name may hold
    spaces and parentheses; what follows its last ")" does not."""
    return raw[raw.rindex(")") + 2 :].split()


class Proc(NamedTuple):
    """One process in a snapshot: its component, parent, start time (clock ticks after boot: a pid the
    kernel gave again is another process), CPU seconds so far, and its reaped children's."""

    component: str
    parent: int
    started: int
    cpu: float
    reaped: float


# pid -> the process; what cpu_snapshot returns and cpu_by_component compares.
CpuSnapshot = dict[int, Proc]


def _stat(path: Path) -> tuple[int, int, float, float] | None:
    """(parent pid, start time, utime + stime, reaped children's cutime + cstime) of a /proc/PID/stat, the
    CPU in seconds, or None when the process is gone."""
    try:
        raw = path.read_text()
    except OSError:
        return None
    fields = stat_fields(raw)
    cpu = (int(fields[11]) + int(fields[12])) / TICKS
    return int(fields[1]), int(fields[19]), cpu, (int(fields[13]) + int(fields[14])) / TICKS


def _processes(proc: Path) -> dict[int, tuple[int, int, float, float]]:
    found: dict[int, tuple[int, int, float, float]] = {}
    for entry in proc.iterdir():
        if entry.name.isdigit() and (stat := _stat(entry / "stat")) is not None:
            found[int(entry.name)] = stat
    return found


def _component_pids(pids: Path) -> dict[int, str]:
    roots: dict[int, str] = {}
    for pid_file in pids.glob("*.pid"):
        try:
            roots[int(pid_file.read_text().split()[0])] = pid_file.stem
        except (OSError, ValueError, IndexError):
            continue
    return roots


def cpu_snapshot(*, proc: Path = PROC, pids: Path = PIDS, load: int | None = None) -> CpuSnapshot:
    """Every process of ``proc`` (/proc) with the component it belongs to: the one whose pid file (in
    ``pids``) names it or an ancestor; ``load`` (this process unless told) and its descendants are the load;
    the rest is "other"."""
    processes = _processes(proc)
    # This process's children (wrk, pgbench, psql) are the load while they run too, not "other".
    roots = {**_component_pids(pids), (os.getpid() if load is None else load): LOAD}
    owner: dict[int, str] = {}

    def component_of(pid: int) -> str | None:
        seen: list[int] = []
        while pid > 1 and pid not in owner and pid not in roots and pid in processes:
            seen.append(pid)
            pid = processes[pid][0]
        name = owner.get(pid) or roots.get(pid)
        for p in seen:
            owner[p] = name or ""
        return name

    return {
        pid: Proc(component_of(pid) or OTHER, parent, started, cpu, reaped)
        for pid, (parent, started, cpu, reaped) in processes.items()
    }


def _reaper(pid: int, before: CpuSnapshot, after: CpuSnapshot) -> int | None:
    """Who holds an ended process's CPU now: its nearest ancestor (as ``before`` knew them) still alive in
    ``after``. A process orphaned before it ended is reaped by pid 1 or a subreaper, an ancestor too."""
    seen: set[int] = set()
    while pid in before and pid not in seen:
        seen.add(pid)
        pid = before[pid].parent
        if _same(pid, before, after):
            return pid
    return None


def _same(pid: int, before: CpuSnapshot, after: CpuSnapshot) -> bool:
    return pid in before and pid in after and before[pid].started == after[pid].started


def cpu_accounting(after: CpuSnapshot, before: CpuSnapshot) -> tuple[dict[str, float], set[str]]:
    """CPU seconds each component used between two snapshots, and the components restarted in between.

    A process alive at both counts its own and its reaped children's growth, for the component it belonged
    to at the start (an orphaned worker keeps its component). A new one counts all of it. An ended one
    left its whole life in its reaper's reaped time, so what it had used by ``before`` is taken off the
    reaper's component. When that reaper is outside the ended process's component (a component's root,
    restarted, is reaped by pid 1: "other"), the ended process's CPU from ``before`` to its end stays with
    the reaper's component, mixed with whatever else that reaper reaped, and cannot be told apart: the
    component is reported restarted instead of losing its whole earlier life (a negative figure, and the
    same lifetime as impossible cores outside the stack).
    """
    used: dict[str, float] = defaultdict(float)
    restarted: set[str] = set()
    for pid, now in after.items():
        if _same(pid, before, after):
            then = before[pid]
            component = then.component if then.component != OTHER else now.component
            used[component] += now.cpu - then.cpu + now.reaped - then.reaped
        else:
            used[now.component] += now.cpu + now.reaped
    for pid, then in before.items():
        if _same(pid, before, after):
            continue
        reaper = _reaper(pid, before, after)
        # Not found (a chain broken by a pid reused): its CPU since the start went uncounted; nothing to take off.
        if reaper is None:
            continue
        holder = before[reaper].component if before[reaper].component != OTHER else after[reaper].component
        used[holder] -= then.cpu + then.reaped
        if holder != then.component and then.component not in (OTHER, LOAD):
            restarted.add(then.component)
    return dict(used), restarted


def cpu_by_component(after: CpuSnapshot, before: CpuSnapshot) -> dict[str, float]:
    """CPU seconds each component used between two snapshots (cpu_accounting without the restarts)."""
    return cpu_accounting(after, before)[0]


def cpu_report(after: CpuSnapshot, before: CpuSnapshot, *, per: int, unit: str) -> str:
    """A table: each component's CPU milliseconds per ``unit`` (``per`` of them happened), biggest first;
    then the components restarted in between, whose figures miss their ended process's share."""
    used, restarted = cpu_accounting(after, before)
    load = used.pop(LOAD, 0.0)
    total = sum(used.values())
    lines = [f"CPU per {unit} ({per} {unit}s), by component:"]
    for name, seconds in sorted(used.items(), key=lambda kv: -kv[1]):
        if seconds * 1000 / max(per, 1) >= 0.05:
            lines.append(f"  {name:22s} {seconds * 1000 / max(per, 1):7.2f} ms  {seconds / total * 100:5.1f} %")
    lines.append(f"  {'total':22s} {total * 1000 / max(per, 1):7.2f} ms")
    lines.append(f"  {'(the load: ' + LOAD + ')':22s} {load * 1000 / max(per, 1):7.2f} ms  not in the total")
    if restarted:
        lines.append(f"  {restarted_note(restarted)}")
    return "\n".join(lines)


def restarted_note(restarted: set[str]) -> str:
    """What a report says of components restarted during its run."""
    names = ", ".join(sorted(restarted))
    return f"restarted during the run: {names} (the ended process's CPU from the start to its end is in {OTHER})"


async def wait_until_quiet(*, below_cores: float = 0.6, window_s: float = 3.0, within_s: float = 120.0) -> str:
    """Wait until the stack's own components (not ``other``, not the load) use less than ``below_cores`` over
    ``window_s``; what was seen, as a line to print.

    Each measured phase starts from a stack at rest: a phase run while the pipeline still drains the previous
    one's events (sagas, analytics, returns) measured that drain too; pgbench's tps moved 159-274 between
    runs of one stack with one setting. An idle stack uses ~0.3 cores (more while its JVMs compile).
    """
    started = time.monotonic()
    used = 0.0
    while True:
        before = cpu_snapshot()
        await asyncio.sleep(window_s)
        by_component = cpu_by_component(cpu_snapshot(), before)
        used = sum(seconds for name, seconds in by_component.items() if name not in (LOAD, OTHER)) / window_s
        waited = time.monotonic() - started
        if used < below_cores:
            return f"stack quiet: {used:.2f} cores after {waited:.0f} s"
        if waited >= within_s:
            return f"warning: the stack still used {used:.2f} cores after {waited:.0f} s; measuring anyway"
