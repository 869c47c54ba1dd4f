"""The conditions a measured phase starts from, made the same for every phase, and what PostgreSQL did in it.

    start = await start_phase("pgbench")      # quiet stack, then CHECKPOINT; prints what it did
    ...                                       # the measured phase
    print(phase_report("pgbench", start, per=transactions, unit="tx"))

Why a CHECKPOINT before each phase (session 23, issue 11): the first change to a page after a checkpoint's
redo point writes the whole page to the WAL (a full-page image), so the WAL a phase writes (and every walsender
reads, the replica applies and pgBackRest archives) depends on how long ago the last checkpoint was; and with
checkpoints 15 minutes apart (spread over 13.5 of them) a timed one could start inside any phase. A
checkpoint right before each phase gives every phase the same starting state and resets the 15-minute timer,
so none falls inside a bench shorter than that. It is hygiene, not the cure of pgbench's spread: pgbench
right after a checkpoint wrote 3.98 full-page images per transaction at 228 tps, 155 s after one 2.55 at 146;
alternated on one stack (20 s each), quiet-only starts gave 419, 351, 461, 468 tps and quiet + CHECKPOINT
404, 358, 463, 415. Neighbouring runs track each other: the stack drifts over minutes, and within a run
pgbench's rate moves 25 % between 5-s windows (printed) as the CDC pipeline (Connect, Kafka, the consumers'
fetches of pgbench's own events) takes its CPU in bursts. ``phase_report``'s lines are there to tell a
disturbed phase (a timed checkpoint, autovacuum, another user of the machine) from an undisturbed one.

The JIT warm-up: a JVM (Kafka, Connect) compiles its hot code for minutes after it starts, on the same two
cores; a bench started then measured the compilation too (commit-to-stats p99 at the fixed rate 252 ms on a
stack 2 minutes old, 73-84 ms at 5-8 minutes; 212.8 ms with Kafka 2-5 minutes old, session 23). A restarted
broker's compiler threads used 411 ms/s in its first 15 s and 50-160 ms/s in bursts through its 7th minute
(33 s of CPU in all). ``warmed_up`` decides, from the JVMs' ages and their compiler threads' CPU over a window
of load, when the measurement may start (as JMH's warm-up iterations do); on a broker 5.3 minutes old the
bench's warm-up saw 163 then 49 ms/s and started measuring after 31 s.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from bench.cpu import (
    OTHER,
    TICKS,
    CpuSnapshot,
    cpu_accounting,
    cpu_snapshot,
    restarted_note,
    stat_fields,
    wait_until_quiet,
)
from infra.paths import PIDS
from infra.postgres import psql_admin

_COUNTERS_SQL = (
    "SELECT b.checkpoints_timed, b.checkpoints_req, b.buffers_checkpoint, b.buffers_backend,"
    " w.wal_records, w.wal_fpi, w.wal_bytes,"
    " extract(epoch FROM now() - (pg_control_checkpoint()).checkpoint_time)"
    " FROM pg_stat_bgwriter b, pg_stat_wal w"
)
_AUTOVACUUM_SQL = (
    "SELECT datname || ': ' || regexp_replace(query, '^autovacuum: ', '') FROM pg_stat_activity"
    " WHERE backend_type = 'autovacuum worker' AND query <> ''"
)


@dataclass(frozen=True)
class PgCounters:
    """PostgreSQL's cluster-wide counters at one moment (pg_stat_bgwriter, pg_stat_wal, pg_control)."""

    checkpoints_timed: int
    checkpoints_req: int
    buffers_checkpoint: int
    buffers_backend: int
    wal_records: int
    wal_fpi: int
    wal_bytes: int
    since_checkpoint_s: float  # since the last checkpoint started (its redo point)

    @classmethod
    def parse(cls, row: str) -> PgCounters:
        """From psql -At's line: eight |-separated values in the order of ``_COUNTERS_SQL``."""
        values = row.strip().split("|")
        if len(values) != 8:
            raise ValueError(f"expected 8 counters, got {row!r}")
        timed, req, by_checkpointer, by_backends, records, fpi, size = (int(float(v)) for v in values[:7])
        return cls(timed, req, by_checkpointer, by_backends, records, fpi, size, float(values[7]))


def pg_counters() -> PgCounters:
    return PgCounters.parse(psql_admin(_COUNTERS_SQL))


def machine_ticks() -> list[int]:
    """The machine's CPU time so far by state, in clock ticks (/proc/stat's first line: user nice system idle
    iowait irq softirq steal)."""
    return [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]


def describe_machine(before: list[int], after: list[int], elapsed_s: float) -> str:
    """Cores busy, idle, waiting on I/O and stolen by the hypervisor over a phase: a phase the machine could
    not give its cores to (steal) or that left them idle is not comparable with one that saturated them."""
    used = [(a - b) / TICKS / max(elapsed_s, 1e-9) for a, b in zip(after, before, strict=True)]
    user, nice, system, idle, iowait, irq, softirq, steal = used
    busy = user + nice + system + irq + softirq
    return f"cores: {busy:.2f} busy, {idle:.2f} idle, {iowait:.2f} I/O wait, {steal:.2f} stolen"


@dataclass
class PhaseStart:
    counters: PgCounters
    autovacuum: set[str]
    ticks: list[int]
    started: float
    cpu: CpuSnapshot
    watcher: asyncio.Task[None] | None = None


def describe_phase(name: str, before: PgCounters, after: PgCounters, *, per: int, unit: str) -> str:
    """What PostgreSQL did during a phase, per ``unit``: WAL bytes and records, full-page images, checkpoints."""
    n = max(per, 1)
    timed = after.checkpoints_timed - before.checkpoints_timed
    requested = after.checkpoints_req - before.checkpoints_req
    checkpoints = "none" if timed == requested == 0 else f"{timed} timed, {requested} requested (inside the phase)"
    return (
        f"PostgreSQL during {name} ({per} {unit}s): WAL {(after.wal_bytes - before.wal_bytes) / n / 1024:.1f} kB,"
        f" {(after.wal_records - before.wal_records) / n:.1f} records,"
        f" {(after.wal_fpi - before.wal_fpi) / n:.2f} full-page images per {unit};"
        f" checkpoints: {checkpoints}; buffers written by the checkpointer"
        f" {after.buffers_checkpoint - before.buffers_checkpoint}, by backends"
        f" {after.buffers_backend - before.buffers_backend}"
    )


async def _watch_autovacuum(seen: set[str], every_s: float = 1.0) -> None:
    while True:
        out = await asyncio.to_thread(psql_admin, _AUTOVACUUM_SQL)
        seen.update(line for line in out.splitlines() if line)
        await asyncio.sleep(every_s)


async def start_phase(name: str) -> PhaseStart:
    """Wait for a quiet stack, then CHECKPOINT; print both; watch autovacuum until ``phase_report``."""
    print(f"{name}: {await wait_until_quiet()}", flush=True)
    started = time.perf_counter()
    await asyncio.to_thread(psql_admin, "CHECKPOINT")
    print(
        f"{name}: CHECKPOINT in {time.perf_counter() - started:.1f} s, so that every phase starts from the same"
        " WAL state and no timed checkpoint falls inside one",
        flush=True,
    )
    counters = await asyncio.to_thread(pg_counters)
    start = PhaseStart(counters, set(), machine_ticks(), time.monotonic(), cpu_snapshot())
    start.watcher = asyncio.create_task(_watch_autovacuum(start.autovacuum))
    return start


async def phase_report(name: str, start: PhaseStart, *, per: int, unit: str) -> str:
    """The phase's PostgreSQL line, the autovacuum workers seen and the machine's cores (stops the watcher)."""
    elapsed = time.monotonic() - start.started
    machine = describe_machine(start.ticks, machine_ticks(), elapsed)
    used, restarted = cpu_accounting(cpu_snapshot(), start.cpu)
    outside = used.get(OTHER, 0.0) / max(elapsed, 1e-9)
    after = await asyncio.to_thread(pg_counters)
    if start.watcher is not None:
        start.watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await start.watcher
    line = describe_phase(name, start.counters, after, per=per, unit=unit)
    vacuumed = ", ".join(sorted(start.autovacuum)) or "none"
    outside_line = f"{outside:.2f} of them outside the stack and the load (other users of the machine)"
    if restarted:
        outside_line += f"; {restarted_note(restarted)}"
    return f"{line}; autovacuum seen: {vacuumed}\n{name}: {machine}; {outside_line}"


# --- JIT warm-up -------------------------------------------------------------------------------------------

JVMS = ("kafka", "connect")


def compiler_cpu_s(pid: int) -> float:
    """CPU seconds so far of a JVM's JIT compiler threads (C1/C2 'CompilerThre...' in /proc/PID/task/*/comm)."""
    total = 0.0
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            if not (task / "comm").read_text().startswith(("C1 Compil", "C2 Compil")):
                continue
            raw = (task / "stat").read_text()
        except OSError:
            continue  # a compiler thread may end between the listing and the read
        fields = stat_fields(raw)
        total += (int(fields[11]) + int(fields[12])) / TICKS
    return total


def jvm_pids(names: Iterable[str] = JVMS) -> dict[str, int]:
    pids: dict[str, int] = {}
    for name in names:
        try:
            pids[name] = int((PIDS / f"{name}.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            continue
    return {name: pid for name, pid in pids.items() if Path(f"/proc/{pid}").exists()}


def compiler_snapshot() -> dict[str, tuple[int, float]]:
    """Each running JVM's (pid, compiler threads' CPU seconds so far)."""
    return {name: (pid, compiler_cpu_s(pid)) for name, pid in jvm_pids().items()}


def compiler_ms_per_s(
    before: Mapping[str, tuple[int, float]], after: Mapping[str, tuple[int, float]], window_s: float
) -> dict[str, float]:
    """Each JVM's compiler threads' CPU over a window, in ms per second; a JVM that is new since ``before``
    (restarted: another pid) counts as compiling flat out (infinity): its window says nothing yet."""
    rates: dict[str, float] = {}
    for name, (pid, cpu) in after.items():
        earlier = before.get(name)
        rates[name] = (cpu - earlier[1]) * 1000 / window_s if earlier and earlier[0] == pid else float("inf")
    return rates


def jvm_ages_s(pids: Mapping[str, int]) -> dict[str, float]:
    """Seconds since each JVM process started (its /proc/PID/stat start time against the boot clock)."""
    uptime = float(Path("/proc/uptime").read_text().split()[0])
    ages: dict[str, float] = {}
    for name, pid in pids.items():
        raw = Path(f"/proc/{pid}/stat").read_text()
        started = int(stat_fields(raw)[19]) / TICKS
        ages[name] = uptime - started
    return ages


def jit_settled(compiler_ms_per_s: Mapping[str, float], *, below_ms_per_s: float) -> bool:
    """Whether every JVM's compiler threads used less than ``below_ms_per_s`` over the last window of load."""
    return all(used < below_ms_per_s for used in compiler_ms_per_s.values())


def warmed_up(
    ages_s: Mapping[str, float], compiler_ms_per_s: Mapping[str, float], *, min_age_s: float, below_ms_per_s: float
) -> bool:
    """Whether the measurement may start: every JVM at least ``min_age_s`` old and its compiler threads under
    ``below_ms_per_s`` over the last warm-up window (a JVM that restarted during the window is young again)."""
    return all(age >= min_age_s for age in ages_s.values()) and jit_settled(
        compiler_ms_per_s, below_ms_per_s=below_ms_per_s
    )
