"""A component started by the stack gets its class's autogroup nice; a process outside its own session is left
alone (renicing it would renice the caller's group)."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from infra import priority, proc
from infra.paths import log_file

AUTOGROUPS = Path("/proc/self/autogroup").exists()
pytestmark = pytest.mark.skipif(not AUTOGROUPS, reason="the kernel has no autogroups (sched_autogroup_enabled)")


@pytest.fixture
def started() -> Iterator[list[str]]:
    names: list[str] = []
    yield names
    for name in names:
        proc.stop(name, timeout=2)
        log_file(name).unlink(missing_ok=True)


@pytest.mark.parametrize(("component", "cls"), [("cpu-test-consumer", "pipeline"), ("cpu-test-api", "request")])
def test_a_started_component_runs_at_its_class_nice(started: list[str], component: str, cls: str) -> None:
    started.append(component)  # `-consumer` and `-api` name their class as they do for the stack's own
    pid = proc.spawn(component, ["sleep", "30"])
    assert priority.class_of(component).name == cls
    nice = priority.CLASSES[cls].nice()
    if nice < 0 and os.geteuid() != 0:  # a negative nice needs CAP_SYS_NICE: started anyway, at 0, and logged
        assert priority.autogroup_nice(pid) == 0
        assert "not applied" in log_file(component).read_text()
    else:
        assert priority.autogroup_nice(pid) == nice
    assert Path(f"/proc/{pid}/autogroup").read_text() != Path("/proc/self/autogroup").read_text()


def test_a_process_in_our_session_is_not_reniced() -> None:
    # Read as text, not parsed: a process in the kernel's root autogroup (one whose session never called
    # setsid, as a CI runner's may be) reads an empty file.
    ours = Path("/proc/self/autogroup").read_text()
    child = subprocess.Popen(["sleep", "30"])
    try:
        refused = priority.apply("cpu-test-consumer", child.pid)
        assert refused is not None and "not a session leader" in refused
        assert Path("/proc/self/autogroup").read_text() == ours
    finally:
        child.kill()
        child.wait()
