"""Review (W, session 30): a stale pid file must not make another program's process the component's.

A component that ends on its own (a consumer that exits, a crash, first-backup when its backup is done)
leaves its pid file. This machine's pid_max is 32768 and the session's pids wrapped within the hour, so the
file's pid is soon another program's: Kafka's JVM, a PostgreSQL backend, a test's server. `proc.running`
then calls the component up, and `proc.stop` / `proc.kill` (`just stop X`, `just restart X`, the soak's and
the fault tests' kills) signal that other process's whole group (6fcf4c6 compared the command line before a
start only). proc.read_pid now refuses a pid whose process started after its file was written. No stack
here: the state directory is tmp_path and the "other program" is a sleep of ours."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Callable, Iterator

import pytest

from infra import paths, proc
from tests.unit.test_stack_pid_files import state  # noqa: F401 (the fixture: the stack's state in tmp_path)

NAME = "review-stale-pid"


@pytest.fixture
def other_program() -> Iterator[subprocess.Popen[bytes]]:
    """A process of another program, its own group's leader as every component's is (a reused pid)."""
    other = subprocess.Popen(["sleep", "120"], start_new_session=True)
    yield other
    other.kill()
    other.wait()


def _stale_pid_file_naming(pid: int) -> None:
    """The component's pid file as its process left it when it ended (written at its start, a while ago),
    its pid since taken by ``pid``."""
    path = paths.pid_file(NAME)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"{pid}\n")
    written = time.time() - 600
    os.utime(path, (written, written))


@pytest.mark.usefixtures("state")
def test_a_reused_pid_is_not_the_component_running(other_program: subprocess.Popen[bytes]) -> None:
    _stale_pid_file_naming(other_program.pid)
    assert not proc.running(NAME), "a stale pid file's pid, now another program's, read as the component up"


@pytest.mark.usefixtures("state")
@pytest.mark.parametrize("end", [proc.stop, proc.kill], ids=["stop", "kill"])
def test_ending_a_component_whose_pid_was_reused_leaves_the_other_program_alone(
    end: Callable[..., object], other_program: subprocess.Popen[bytes]
) -> None:
    _stale_pid_file_naming(other_program.pid)
    end(NAME, timeout=2)
    assert other_program.poll() is None, f"proc.{end.__name__} signalled another program's process group"
