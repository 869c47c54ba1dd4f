"""`up` starts the app processes together, not one after another (~1.1 s each, ~24 s of a cold `up` for 22:
session 33, T), each under `just start`'s rules: up.lock for its spawn, not for its readiness wait; its own
timeout and message; every start ends before a failure is reported. Throwaway sleepers stand in for the
apps, the stack's state directory is in tmp_path: no stack."""

from __future__ import annotations

import fcntl
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from infra import proc, stack
from tests.support import stack_state

NAMES = [f"parallel-start-{i}" for i in range(4)]
SLEEPER = [sys.executable, "-c", "import time; time.sleep(120)"]
READY_AFTER_S = 1.0


@pytest.fixture
def state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    yield stack_state.isolate(tmp_path, monkeypatch)
    for name in NAMES:
        proc.kill(name)


def _ready_after(seconds: float) -> Callable[[], bool]:
    """A process whose probe answers once it has run ``seconds`` (as an app's imports and readiness)."""
    since: dict[str, float] = {}

    def probe() -> bool:
        return time.monotonic() - since.setdefault("t", time.monotonic()) >= seconds

    return probe


def _processes() -> list[stack.Process]:
    return [stack.Process(name, SLEEPER, probe=_ready_after(READY_AFTER_S)) for name in NAMES]


def test_every_start_runs_at_once_and_each_end_is_reported_once() -> None:
    began: list[float] = []

    def start(item: int) -> None:
        began.append(time.monotonic())
        time.sleep(0.5)

    t0 = time.monotonic()
    ended = list(stack.started_together(range(10), start))
    took = time.monotonic() - t0

    assert sorted(item for item, _, _ in ended) == list(range(10))
    assert all(error is None for _, _, error in ended)
    assert took < 1.5, f"10 starts of 0.5 s took {took:.1f}s: not together"
    assert max(began) - min(began) < 0.4


def test_a_start_that_raises_is_handed_back_and_the_others_still_end() -> None:
    def start(item: int) -> None:
        if item == 1:
            raise proc.StartError("one was not ready after 60s")
        time.sleep(0.2)

    ended = {item: error for item, _, error in stack.started_together([0, 1, 2], start)}

    assert ended[0] is None and ended[2] is None
    assert isinstance(ended[1], proc.StartError)


def test_the_apps_start_together_each_spawn_under_up_lock_not_its_wait(state: Path) -> None:
    """Four apps each ready 1 s after its spawn: ~1 s in all (one after another: > 4 s). While they wait
    for readiness, up.lock is free (a `just start kafka` meanwhile does not queue behind them)."""
    lock_free_while_waiting: list[bool] = []

    def try_lock() -> None:
        time.sleep(0.5)
        with (state / "up.lock").open("w") as lock:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                lock_free_while_waiting.append(False)
            else:
                lock_free_while_waiting.append(True)

    checker = threading.Thread(target=try_lock, daemon=True)
    t0 = time.monotonic()
    checker.start()
    stack._start_apps(_processes())
    took = time.monotonic() - t0
    checker.join(timeout=5)

    assert all(proc.running(name) for name in NAMES)
    assert took < READY_AFTER_S * 2.5, f"4 apps ready 1 s after spawn took {took:.1f}s: not together"
    assert lock_free_while_waiting == [True]


def test_a_failed_app_is_reported_after_the_others_are_up(state: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    dies = stack.Process(NAMES[0], [sys.executable, "-c", "print('no config'); raise SystemExit(3)"], lambda: False)
    others = [stack.Process(name, SLEEPER, probe=_ready_after(READY_AFTER_S)) for name in NAMES[1:]]

    with pytest.raises(SystemExit) as failed:
        stack._start_apps([dies, *others])

    message = str(failed.value)
    assert message.startswith(f"FAILED {NAMES[0]}: {NAMES[0]} exited during start-up; see its log:")
    assert "no config" in message  # its log's tail, as the one-at-a-time start printed it
    assert all(proc.running(name) for name in NAMES[1:])
