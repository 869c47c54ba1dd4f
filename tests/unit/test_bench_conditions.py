"""The bench's phase conditions: PostgreSQL's counters read and reported per phase, and the JIT warm-up's verdict."""

from __future__ import annotations

import pytest

from bench.conditions import (
    PgCounters,
    compiler_ms_per_s,
    describe_machine,
    describe_phase,
    jit_settled,
    warmed_up,
)


def counters(**changes: float) -> PgCounters:
    base = {
        "checkpoints_timed": 3,
        "checkpoints_req": 1,
        "buffers_checkpoint": 1000,
        "buffers_backend": 50,
        "wal_records": 10_000,
        "wal_fpi": 500,
        "wal_bytes": 4_000_000,
        "since_checkpoint_s": 1.5,
    }
    base.update(changes)
    return PgCounters(**base)  # type: ignore[arg-type]


def test_counters_parse_psql_row() -> None:
    parsed = PgCounters.parse("3|1|1000|50|10000|500|4000000|1.523456\n")
    assert parsed == counters(since_checkpoint_s=1.523456)


def test_counters_parse_refuses_a_short_row() -> None:
    with pytest.raises(ValueError, match="expected 8 counters"):
        PgCounters.parse("3|1|1000")


def test_phase_line_is_per_unit() -> None:
    after = counters(wal_records=10_000 + 400, wal_fpi=500 + 25, wal_bytes=4_000_000 + 102_400, buffers_backend=52)
    line = describe_phase("pgbench", counters(), after, per=10, unit="tx")
    assert "WAL 10.0 kB, 40.0 records, 2.50 full-page images per tx" in line
    assert "checkpoints: none" in line
    assert "by backends 2" in line


def test_phase_line_names_a_checkpoint_inside_the_phase() -> None:
    line = describe_phase("max rate", counters(), counters(checkpoints_timed=4), per=100, unit="order")
    assert "checkpoints: 1 timed, 0 requested (inside the phase)" in line


def test_phase_line_survives_no_units() -> None:
    assert "per order" in describe_phase("fixed rate", counters(), counters(), per=0, unit="order")


@pytest.mark.parametrize(
    ("used", "settled"),
    [
        ({"kafka": 10.0, "connect": 30.0}, True),
        ({"kafka": 10.0, "connect": 80.0}, False),  # one JVM still compiling holds the measurement back
        ({"kafka": 50.0, "connect": 0.0}, False),  # the threshold itself is not below it
        ({}, True),  # no JVM running: nothing to wait for
    ],
)
def test_jit_settled_needs_every_jvm_below_the_threshold(used: dict[str, float], settled: bool) -> None:
    assert jit_settled(used, below_ms_per_s=50.0) is settled


def test_machine_line_in_cores() -> None:
    from bench.cpu import TICKS

    before = [0] * 8
    # 10 s: 12 s of user, 3 of system, 4 idle, 1 stolen (in ticks)
    after = [12 * TICKS, 0, 3 * TICKS, 4 * TICKS, 0, 0, 0, 1 * TICKS]
    assert describe_machine(before, after, 10.0) == "cores: 1.50 busy, 0.40 idle, 0.00 I/O wait, 0.10 stolen"


@pytest.mark.parametrize(
    ("ages", "used", "done"),
    [
        ({"kafka": 600.0, "connect": 400.0}, {"kafka": 20.0, "connect": 30.0}, True),
        ({"kafka": 600.0, "connect": 120.0}, {"kafka": 20.0, "connect": 30.0}, False),  # Connect restarted 2 min ago
        ({"kafka": 600.0, "connect": 400.0}, {"kafka": 20.0, "connect": 180.0}, False),  # old but still compiling
        ({}, {}, True),  # no JVM: nothing to warm up
    ],
)
def test_warmed_up_needs_age_and_a_settled_compiler(ages: dict[str, float], used: dict[str, float], done: bool) -> None:
    assert warmed_up(ages, used, min_age_s=300, below_ms_per_s=100) is done


def test_compiler_rate_per_jvm_and_a_restarted_one_counts_as_compiling() -> None:
    before = {"kafka": (100, 20.0), "connect": (200, 10.0)}
    after = {"kafka": (100, 21.5), "connect": (201, 0.3)}  # Connect restarted during the window
    rates = compiler_ms_per_s(before, after, 15.0)
    assert rates["kafka"] == pytest.approx(100.0)
    assert rates["connect"] == float("inf")
    assert not jit_settled(rates, below_ms_per_s=150)


def test_a_child_of_the_bench_is_the_load_while_it_runs() -> None:
    """wrk and pgbench are the load: before they are reaped their CPU counted as 'other', which the phase
    report calls CPU used outside the stack."""
    import subprocess
    import sys

    from bench.cpu import LOAD, cpu_by_component, cpu_snapshot

    # The child says when its 0.3 CPU-s are burnt: a fixed wall-time wait for them failed 5 of 5 runs beside
    # 4 busy processes on 2 CPUs (the child had burnt 0.20-0.24 s by then).
    burn = "import time\nt = time.process_time()\nwhile time.process_time() - t < 0.3: pass\n"
    burn += "print(flush=True)\ntime.sleep(5)"
    before = cpu_snapshot()
    child = subprocess.Popen([sys.executable, "-c", burn], stdout=subprocess.PIPE)
    try:
        assert child.stdout is not None and child.stdout.readline() == b"\n"
        used = cpu_by_component(cpu_snapshot(), before)
    finally:
        child.kill()
        child.wait()
    assert used.get(LOAD, 0.0) >= 0.25
