"""CPU time per stack component over a run: where the machine's cores went, load-independent.

    snapshot = cpu_snapshot()
    ...  # the load
    print(cpu_report(cpu_snapshot(), snapshot, per=orders_placed, unit="order"))

Each component is a pid file in .stack/pids/ (`just status` lists them); its CPU is utime + stime of that
process and all its descendants (uvicorn workers, the JVM's threads, PostgreSQL's backends, which are
children of the postmaster), read from /proc. A process that ended during the run is counted through its
parent: the kernel adds a reaped child's whole CPU time to the parent's cutime + cstime, which each
snapshot keeps (under the key (component, -pid)), and what the child had used before the run is taken
off again. Without that, the short
lives (PostgreSQL's parallel workers and new connections' backends, pgBackRest's archive-push) went
uncounted: 36-192 ms/s of PostgreSQL's CPU while tests ran.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections import defaultdict
from pathlib import Path

from infra.paths import PIDS

TICKS = os.sysconf("SC_CLK_TCK")
# This process and what it runs (wrk, pgbench): the load, not the stack.
LOAD = "bench"


def stat_fields(raw: str) -> list[str]:
    """The fields of a /proc/PID/stat (or task stat) line after the command name, from its state on (so
    ``[1]`` is the parent pid, ``[11]``/``[12]`` utime/stime, ``[19]`` the start time): the name may hold
    spaces and parentheses; what follows its last ")" does not."""
    return raw[raw.rindex(")") + 2 :].split()


def _stat(pid: int) -> tuple[int, float, float] | None:
    """(parent pid, utime + stime, reaped children's cutime + cstime), in seconds, or None when it is gone."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat_fields(raw)
    return int(fields[1]), (int(fields[11]) + int(fields[12])) / TICKS, (int(fields[13]) + int(fields[14])) / TICKS


def _processes() -> dict[int, tuple[int, float, float]]:
    found: dict[int, tuple[int, float, float]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (stat := _stat(int(entry.name))) is not None:
            found[int(entry.name)] = stat
    return found


def _component_pids() -> dict[int, str]:
    roots: dict[int, str] = {}
    for pid_file in PIDS.glob("*.pid"):
        try:
            roots[int(pid_file.read_text().split()[0])] = pid_file.stem
        except (OSError, ValueError, IndexError):
            continue
    return roots


def cpu_snapshot() -> dict[tuple[str, int], float]:
    """CPU seconds so far of every process of every component, keyed by (component, pid), and of the
    children each has reaped, keyed by (component, -pid)."""
    processes = _processes()
    # This process's children (wrk, pgbench, psql) are the load while they run too, not "other".
    roots = {**_component_pids(), os.getpid(): LOAD}
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

    snapshot: dict[tuple[str, int], float] = {}
    for pid, (_, cpu, reaped) in processes.items():
        name = component_of(pid) or "other"
        snapshot[(name, pid)] = cpu
        snapshot[(name, -pid)] = reaped
    return snapshot


def cpu_by_component(after: dict[tuple[str, int], float], before: dict[tuple[str, int], float]) -> dict[str, float]:
    """CPU seconds each component used between two snapshots."""
    used: dict[str, float] = defaultdict(float)
    for key, cpu in after.items():
        used[key[0]] += cpu - before.get(key, 0.0)
    for (name, pid), cpu in before.items():
        if pid > 0 and (name, pid) not in after:
            # Ended: its whole life is now in its parent's reaped time; only what followed `before` counts.
            used[name] -= cpu
    return dict(used)


def cpu_report(
    after: dict[tuple[str, int], float], before: dict[tuple[str, int], float], *, per: int, unit: str
) -> str:
    """A table: each component's CPU milliseconds per ``unit`` (``per`` of them happened), biggest first."""
    used = cpu_by_component(after, before)
    load = used.pop(LOAD, 0.0)
    total = sum(used.values())
    lines = [f"CPU per {unit} ({per} {unit}s), by component:"]
    for name, seconds in sorted(used.items(), key=lambda kv: -kv[1]):
        if seconds * 1000 / max(per, 1) >= 0.05:
            lines.append(f"  {name:22s} {seconds * 1000 / max(per, 1):7.2f} ms  {seconds / total * 100:5.1f} %")
    lines.append(f"  {'total':22s} {total * 1000 / max(per, 1):7.2f} ms")
    lines.append(f"  {'(the load: ' + LOAD + ')':22s} {load * 1000 / max(per, 1):7.2f} ms  not in the total")
    return "\n".join(lines)


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
        used = sum(seconds for name, seconds in by_component.items() if name not in (LOAD, "other")) / window_s
        waited = time.monotonic() - started
        if used < below_cores:
            return f"stack quiet: {used:.2f} cores after {waited:.0f} s"
        if waited >= within_s:
            return f"warning: the stack still used {used:.2f} cores after {waited:.0f} s; measuring anyway"
