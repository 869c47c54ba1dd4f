"""`just start X` holds the machine-wide up.lock for its spawn and pid file, not for its readiness wait.

A consumer restarted while Kafka was down waited up to 60 s for its /ready holding up.lock, and the
broker's own `just start kafka` queued behind it until that wait timed out (session 30, E: Kafka killed
15:55:53 started 15:57:52). Here: two throwaway components, a "consumer" whose probe is ready only once
the "broker" runs, and the broker, started while the consumer's start waits. No stack: the stack's state
directory in tmp_path.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from infra import connectors, monitoring, proc, stack
from tests.support import stack_state

CONSUMER = "lock-scope-consumer"
BROKER = "lock-scope-broker"
SLEEPER = [sys.executable, "-c", "import time; time.sleep(120)"]


@pytest.fixture
def state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    yield stack_state.isolate(tmp_path, monkeypatch)
    for name in (CONSUMER, BROKER):
        proc.kill(name)


def _start_broker() -> None:
    """As kafka.start_kafka: spawn unless running, then wait for readiness."""
    pid = None if proc.running(BROKER) else proc.spawn(BROKER, SLEEPER)
    proc.wait_until(BROKER, lambda: proc.running(BROKER), timeout=10, pid=pid)


def _components(monkeypatch: pytest.MonkeyPatch, consumer: stack.Process) -> None:
    known = {
        BROKER: stack.Component(BROKER, _start_broker, lambda: proc.stop(BROKER)),
        CONSUMER: stack.Component(CONSUMER, lambda: stack.start_process(consumer), lambda: proc.stop(CONSUMER)),
    }
    monkeypatch.setattr(stack, "components", lambda: known)


def _in_thread(name: str, errors: list[BaseException]) -> threading.Thread:
    def run() -> None:
        try:
            stack.start_component(name)
        except BaseException as exc:  # SystemExit from a failed start included
            errors.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def _spawned(name: str) -> None:
    deadline = time.monotonic() + 10
    while not proc.running(name) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert proc.running(name), f"the start of {name} did not spawn"


def test_a_start_waiting_for_its_dependency_does_not_keep_that_dependency_out(
    state: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    consumer = stack.Process(CONSUMER, SLEEPER, probe=lambda: proc.running(BROKER))
    _components(monkeypatch, consumer)
    errors: list[BaseException] = []
    waiting = _in_thread(CONSUMER, errors)
    _spawned(CONSUMER)

    t0 = time.monotonic()
    stack.start_component(BROKER)  # before: queued behind the consumer's 60-s wait for this very broker
    took = time.monotonic() - t0

    waiting.join(timeout=15)
    assert not errors, errors
    assert not waiting.is_alive()
    assert took < 5, f"the broker's start waited {took:.1f}s for the consumer's readiness wait"
    assert proc.running(BROKER) and proc.running(CONSUMER)


def test_a_second_start_of_the_same_component_waits_without_the_machine_lock(
    state: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two starts of one consumer: the second waits on the first's per-component lock, and does not hold
    up.lock meanwhile (else the broker's start would queue behind it just the same)."""
    consumer = stack.Process(CONSUMER, SLEEPER, probe=lambda: proc.running(BROKER))
    _components(monkeypatch, consumer)
    errors: list[BaseException] = []
    first = _in_thread(CONSUMER, errors)
    _spawned(CONSUMER)
    second = _in_thread(CONSUMER, errors)
    time.sleep(0.5)  # the second is now queued on the consumer's own start lock

    t0 = time.monotonic()
    stack.start_component(BROKER)
    took = time.monotonic() - t0

    first.join(timeout=15)
    second.join(timeout=15)
    assert not errors, errors
    assert took < 5, f"the broker's start waited {took:.1f}s behind a queued start of the consumer"
    # One consumer process: the second start found the first's running and waited for its readiness.
    assert len(list((state / "pids").glob(f"{CONSUMER}.pid"))) == 1
    assert proc.running(CONSUMER)


def test_the_lock_is_held_through_the_spawn(state: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The spawn and pid file are still under up.lock: an `up` holding it keeps a start from spawning."""
    consumer = stack.Process(CONSUMER, SLEEPER, probe=lambda: True)
    _components(monkeypatch, consumer)
    errors: list[BaseException] = []
    with stack.exclusive():
        starting = _in_thread(CONSUMER, errors)
        time.sleep(1.0)
        assert not proc.running(CONSUMER), "a start spawned while another held up.lock"
    starting.join(timeout=15)
    assert not errors, errors
    assert proc.running(CONSUMER)


def _up_in_thread(monkeypatch: pytest.MonkeyPatch) -> tuple[threading.Thread, list[BaseException]]:
    """`up` of stack.STEPS (as the test set them), without monitoring, apps or the URLs, in a thread."""
    monkeypatch.setattr(monitoring, "start_all", lambda *_, **__: None)
    monkeypatch.setattr(stack, "app_processes", list)
    monkeypatch.setattr(stack, "print_urls", lambda: None)
    monkeypatch.setattr(stack, "_postgres_of_another_checkout", lambda: None)
    errors: list[BaseException] = []

    def run_up() -> None:
        try:
            stack.up()
        except BaseException as exc:
            errors.append(exc)

    upping = threading.Thread(target=run_up, daemon=True)
    upping.start()
    return upping, errors


def test_a_start_during_an_up_does_not_wait_for_the_whole_up(state: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`up` holds up.lock for each step until its first wait, not through every readiness wait: E saw a
    PostgreSQL start wait ~47 s for the lock in a soak (session 32). Here an `up` whose one step waits 3 s
    for its component's readiness, and a `just start` of another component meanwhile."""
    ready_at = time.monotonic() + 3

    def slow_step() -> None:  # as a broker's start: spawn, then wait for readiness
        pid = None if proc.running(CONSUMER) else proc.spawn(CONSUMER, SLEEPER)
        proc.wait_until(CONSUMER, lambda: time.monotonic() > ready_at, timeout=10, pid=pid, interval=0.1)

    _components(monkeypatch, stack.Process(CONSUMER, SLEEPER, probe=lambda: True))
    monkeypatch.setattr(stack, "STEPS", [("slow", slow_step)])
    upping, errors = _up_in_thread(monkeypatch)
    _spawned(CONSUMER)  # the step's spawn is done; its readiness wait has begun

    t0 = time.monotonic()
    stack.start_component(BROKER)  # before: queued behind the up's lock until the step was ready (~3 s)
    took = time.monotonic() - t0

    upping.join(timeout=15)
    assert not errors, errors
    assert took < 1.5, f"the broker's start waited {took:.1f}s for the `up`"
    assert time.monotonic() >= ready_at, "the up ended before its step was ready"


def test_a_start_during_the_connectors_wait_does_not_wait_for_it(state: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`up`'s connectors step deploys under up.lock but waits for RUNNING without it: the wait took up to its
    120 s with the lock held, and a `just start X` meanwhile waited all of it. Here the connectors report
    RUNNING 3 s after the deploy, and a `just start` of another component comes meanwhile."""
    ready_at = time.monotonic() + 3
    asked = threading.Event()

    def status(name: str, base_url: str) -> tuple[str, list[dict[str, str]]]:
        asked.set()
        state = "RUNNING" if time.monotonic() > ready_at else "UNASSIGNED"
        return state, [{"state": state}]

    monkeypatch.setattr(connectors, "ensure_event_topics", lambda bootstrap: None)
    monkeypatch.setattr(connectors, "retire", lambda base_url: None)
    monkeypatch.setattr(connectors, "deploy", lambda name, config, base_url: None)
    monkeypatch.setattr(connectors, "status", status)
    _components(monkeypatch, stack.Process(CONSUMER, SLEEPER, probe=lambda: True))
    monkeypatch.setattr(stack, "STEPS", [step for step in stack.STEPS if step[0] == "connectors"])
    upping, errors = _up_in_thread(monkeypatch)
    assert asked.wait(10), "the connectors step never asked for their status"

    t0 = time.monotonic()
    stack.start_component(BROKER)  # before: queued behind the up's lock until the connectors ran (~3 s)
    took = time.monotonic() - t0

    upping.join(timeout=15)
    assert not errors, errors
    assert took < 1.5, f"the broker's start waited {took:.1f}s for the connectors' wait"
    assert time.monotonic() >= ready_at, "the up ended before its connectors were RUNNING"
