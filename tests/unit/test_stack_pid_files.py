"""Pid files survive racing starts and stops: the live process is the one its pid file names.

Two `just restart X` at once both signalled the old process; the first started the new one, the second
then deleted its pid file and started a third, which died on the port while the probe (answered by the
second) called it ready: the file named a dead pid, `just status` said DOWN, and `just stop` could not
reach the process that served (session 29, C). No stack here: a throwaway HTTP server under a throwaway
component name, with the stack's state directory in tmp_path."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
import traceback
from collections.abc import Iterator
from pathlib import Path, PosixPath

import pytest

from infra import paths, proc, stack
from tests.support import stack_state

NAME = "pid-file-test"

# An HTTP server that takes a second to exit after SIGTERM, as a consumer finishing its batch does: both
# restarts see it alive, and whichever sees it gone second does so after the first started the new one.
SERVER = textwrap.dedent(
    """
    import http.server, signal, sys, threading
    server = http.server.HTTPServer(("127.0.0.1", int(sys.argv[1])), http.server.SimpleHTTPRequestHandler)
    signal.signal(signal.SIGTERM, lambda *_: threading.Timer(1.0, server.shutdown).start())
    server.serve_forever()
    """
)


@pytest.fixture
def state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    yield stack_state.isolate(tmp_path, monkeypatch)
    proc.kill(NAME)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _server(port: int) -> stack.Process:
    url = f"http://127.0.0.1:{port}"
    return stack.Process(NAME, [sys.executable, "-c", SERVER, str(port)], stack._http_ok(url + "/"), url)


def _servers(port: int) -> list[int]:
    """Pids of every live process running this test's server on ``port``."""
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            argv = cmdline.read_bytes().split(b"\0")
        except OSError:
            continue
        if SERVER.encode() in argv and str(port).encode() in argv and proc.pid_alive(int(cmdline.parent.name)):
            found.append(int(cmdline.parent.name))
    return found


def _restart(process: stack.Process, errors: list[BaseException]) -> None:
    """What `just restart X` does: stop, then start."""
    try:
        proc.stop(process.name)
        stack.start_process(process)
    except BaseException as exc:
        errors.append(exc)


def test_two_restarts_at_once_leave_the_pid_file_naming_the_live_process(
    state: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    port = _free_port()
    process = _server(port)
    stack.start_process(process)
    first = proc.read_pid(NAME)
    real_pid_alive = proc.pid_alive

    def pid_alive(pid: int) -> bool:
        # The second restart notices the old process gone only once the first one has started the new:
        # the order that lost the pid file (it happens by chance too, half the time here).
        if threading.current_thread().name == "second" and pid == first and not real_pid_alive(pid):
            deadline = time.monotonic() + 30
            while proc.read_pid(NAME) in (first, None) and time.monotonic() < deadline:
                time.sleep(0.02)
        return real_pid_alive(pid)

    monkeypatch.setattr(proc, "pid_alive", pid_alive)
    errors: list[BaseException] = []
    try:
        threads = [threading.Thread(target=_restart, args=(process, errors), name=n) for n in ("first", "second")]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        live = _servers(port)
        assert errors == [], "".join(traceback.format_exception(errors[0]))  # where it was raised, if it was
        assert len(live) == 1 and live[0] != first, live
        assert proc.read_pid(NAME) == live[0]  # before: the pid of a start that died on the port, or none
    finally:
        for pid in _servers(port):
            proc._signal_group(pid, signal.SIGKILL)


def test_a_process_reaped_between_the_open_and_the_read_of_its_stat_is_not_alive(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """What a stop's wait sees when another stop reaps the process under it (the two restarts above): the
    kernel answers the read of an opened /proc/PID/stat with ESRCH once the process is reaped. Raised
    ProcessLookupError out of one of two concurrent restarts (CI at bbc2e5f)."""
    child = subprocess.Popen(["sleep", "30"])
    child.kill()
    while Path(f"/proc/{child.pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z":
        time.sleep(0.01)

    class ReapedAfterTheOpen(PosixPath):
        def read_text(self, encoding: str | None = None, errors: str | None = None) -> str:
            with self.open(encoding=encoding, errors=errors) as opened:
                child.wait()  # reaped now, as the other stop's waitpid (or init) does
                return opened.read()

    monkeypatch.setattr(proc, "Path", ReapedAfterTheOpen)
    assert proc.pid_alive(child.pid) is False
    assert child.returncode == -signal.SIGKILL  # reaped inside the read, so the open came first


def test_a_stop_that_outlived_its_process_leaves_a_newer_pid_file_alone(state: Path) -> None:
    paths.ensure_dirs()
    paths.pid_file(NAME).write_text("999999999\n")  # the newer start's pid, whatever it is
    proc.forget(NAME, 12345)  # what a stop of the old process 12345 does at its end
    assert proc.read_pid(NAME) == 999999999
    proc.forget(NAME, 999999999)
    assert not paths.pid_file(NAME).exists()


def test_a_second_spawn_of_a_live_command_is_refused_and_its_pid_kept(state: Path) -> None:
    port = _free_port()
    process = _server(port)
    stack.start_process(process)
    live = proc.read_pid(NAME)
    try:
        with pytest.raises(proc.StartError, match="already runs as pid"):
            proc.spawn(NAME, process.argv)
        assert proc.read_pid(NAME) == live and _servers(port) == [live]
    finally:
        proc.kill(NAME)


def test_a_start_refuses_a_port_taken_by_a_process_no_pid_file_names(state: Path) -> None:
    port = _free_port()
    process = _server(port)
    stack.start_process(process)
    orphan = proc.read_pid(NAME)
    paths.pid_file(NAME).unlink()  # its pid file lost: started by hand, or removed by an older stop
    try:
        with pytest.raises(proc.StartError, match=f"127.0.0.1:{port} is already taken"):
            stack.start_process(process)
        assert _servers(port) == [orphan]  # nothing else started
        assert not paths.pid_file(NAME).exists()  # nor a dead pid written for the component
    finally:
        assert orphan is not None
        proc._signal_group(orphan, signal.SIGKILL)
