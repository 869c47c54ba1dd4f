"""The test session's `up` (infra.stack.up_for_tests): it starts what is down and says so, one line per
component, but leaves a deliberate `just stop NAME` alone, except for what every test needs."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Collection
from pathlib import Path

import pytest

from infra import postgres, proc, stack

NAMES = ["postgres", "kafka", "prometheus", "customer-consumer", "order-api"]


@pytest.fixture
def machine(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> dict[str, object]:
    """A stack of NAMES whose processes are the set `running`; `up` starts all it is not told to leave."""
    running: set[str] = set(NAMES)
    seen: dict[str, object] = {"running": running}

    def up(*, infra_only: bool = False, leave: Collection[str] = ()) -> None:
        seen["leave"] = set(leave)
        running.update(n for n in NAMES if n not in leave)

    monkeypatch.setattr(stack, "HELD", tmp_path / "held")
    monkeypatch.setattr(postgres, "DATA", tmp_path / "data")
    monkeypatch.setattr(stack, "components", lambda: dict.fromkeys(NAMES))
    monkeypatch.setattr(proc, "running", lambda name: name in running)
    monkeypatch.setattr(stack, "up", up)
    return seen


def test_a_component_that_crashed_is_started_and_named(machine: dict[str, object]) -> None:
    running = machine["running"]
    assert isinstance(running, set)
    running.discard("customer-consumer")
    assert stack.up_for_tests() == ["stack: customer-consumer was down; started"]
    assert "customer-consumer" in running


def test_a_just_stop_is_left_alone_and_said_but_kafka_is_started_anyway(machine: dict[str, object]) -> None:
    running = machine["running"]
    assert isinstance(running, set)
    for name in ("customer-consumer", "kafka"):
        running.discard(name)
        stack.hold(name, True)
    lines = stack.up_for_tests()
    assert machine["leave"] == {"customer-consumer"}
    assert "customer-consumer" not in running and "kafka" in running
    assert [line.split("(")[0] for line in lines] == [
        "stack: kafka was down ",
        "stack: customer-consumer left stopped ",
    ]
    assert lines[1].endswith("tests that need it fail; `just start customer-consumer`")
    # Once it runs again (a `just start`, or a test's own start), the stop no longer holds.
    running.add("customer-consumer")
    assert stack.held() == {}


def test_a_cold_stack_is_one_line(machine: dict[str, object]) -> None:
    running = machine["running"]
    assert isinstance(running, set)
    running.clear()
    assert stack.up_for_tests() == ["stack: everything was down; started it"]
    assert running == set(NAMES)


def test_nothing_down_says_nothing(machine: dict[str, object]) -> None:
    assert stack.up_for_tests() == []
    assert machine["leave"] == set()


def test_up_refuses_a_postgres_started_from_another_checkout_before_touching_anything(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    data.mkdir()
    monkeypatch.setattr(postgres, "DATA", data)
    ran: list[bool] = []
    monkeypatch.setattr(stack, "exclusive", contextlib.nullcontext)
    monkeypatch.setattr(stack, "_up", lambda **_: ran.append(True))
    live, dead = os.getpid(), 2**22 + 1  # above pid_max's default: no such process
    (data / "postmaster.pid").write_text(f"{live}\n/elsewhere/.stack/pg/data\n1764226000\n")
    with pytest.raises(SystemExit, match=r"another checkout \(/elsewhere/.stack/pg/data"):
        stack.up()
    assert ran == []
    (data / "postmaster.pid").write_text(f"{dead}\n/elsewhere/.stack/pg/data\n1764226000\n")  # a crash's leftover
    stack.up()
    (data / "postmaster.pid").write_text(f"{live}\n{data}\n1764226000\n")
    stack.up()
    assert ran == [True, True]


def test_any_start_ends_a_just_stop(machine: dict[str, object], monkeypatch: pytest.MonkeyPatch) -> None:
    """A stop held by `just stop`, then started by something else (a test, `just replay --restart`): a later
    crash of it is not that stop, so the next session starts it again."""
    running = machine["running"]
    assert isinstance(running, set)
    monkeypatch.setattr(stack, "exclusive", contextlib.nullcontext)
    monkeypatch.setattr(stack, "component", lambda name: stack.Component(name, lambda: running.add(name), bool))
    running.discard("order-api")
    stack.hold("order-api", True)
    stack.start_component("order-api")
    running.discard("order-api")  # it crashes later
    assert stack.up_for_tests() == ["stack: order-api was down; started"]
