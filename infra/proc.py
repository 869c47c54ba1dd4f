"""Start, stop and watch the stack's background processes by pid file."""

from __future__ import annotations

import contextlib
import contextvars
import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path

from infra import priority
from infra.paths import ensure_dirs, log_file, pid_file


class StartError(RuntimeError):
    """A component did not become ready; the message names it and its log."""


# A process that started this long after its pid file was written is not the one the file names: the pid
# was reused (pid_max is 32768 here, and a busy session wraps it within the hour). The slack covers the
# boot time's whole-second rounding and a small clock step; a pid reused that soon would need that many forks.
_REUSED_AFTER_S = 10.0


def read_pid(component: str) -> int | None:
    """The pid the component's pid file names, or None without one or when that pid is another program's
    now: a component that ended on its own leaves its file, and stop/kill would signal whatever took the pid."""
    path = pid_file(component)
    try:
        pid = int(path.read_text().strip())
        written = path.stat().st_mtime
    except (FileNotFoundError, ValueError):
        return None
    started = _started_at(pid)
    if started is not None and started > written + _REUSED_AFTER_S:
        return None
    return pid


def _started_at(pid: int) -> float | None:
    """When the process started (epoch seconds), None if there is no such process."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        boot = next(line for line in Path("/proc/stat").read_text().splitlines() if line.startswith("btime "))
    except (OSError, IndexError, StopIteration):
        return None
    return int(boot.split()[1]) + int(fields[19]) / os.sysconf("SC_CLK_TCK")


# Set by a caller that holds a lock only for spawning (infra.stack.start_component's machine-wide up.lock):
# called once, by the first wait in its block. A consumer's start waiting 60 s for a broker that was down
# held that lock all along, and the broker's own `just start kafka` queued behind it (session 30, E).
_RELEASE_BEFORE_WAIT: contextvars.ContextVar[Callable[[], None] | None] = contextvars.ContextVar(
    "release_before_wait", default=None
)


@contextlib.contextmanager
def released_before_waiting(release: Callable[[], None]) -> Iterator[None]:
    """In this block, the first wait (a readiness poll, or `waiting()` before a blocking lock) calls
    ``release`` first: what runs before it (checks, spawn, pid file) holds the caller's lock, the wait does not."""
    token = _RELEASE_BEFORE_WAIT.set(release)
    try:
        yield
    finally:
        _RELEASE_BEFORE_WAIT.reset(token)


def waiting() -> None:
    """About to wait (for readiness, for another starter's lock): let go of a lock held only for spawning."""
    release = _RELEASE_BEFORE_WAIT.get()
    if release is not None:
        _RELEASE_BEFORE_WAIT.set(None)
        release()


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie still answers kill(0); it is not running.
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError, IndexError):
        # Reaped before the open (no such file) or between the open and the read (the kernel answers the
        # read with ESRCH): two `just restart X` at once, one stop reaping the process while the other polls
        # it, raised ProcessLookupError out of the second (CI at bbc2e5f); init reaps at any moment too.
        return False
    return state != "Z"


def running(component: str) -> bool:
    pid = read_pid(component)
    return pid is not None and pid_alive(pid)


def spawn(
    component: str,
    argv: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    user: str | None = None,
) -> int:
    """Run argv detached in its own session, output appended to the component's log.

    The session is its own autogroup, given the component's CPU priority class (infra/priority.py) here:
    Popen returns once the child has exec'd, so it has called setsid already. A kernel without autogroups
    (or a refused negative nice) starts it anyway, with one line in its log saying so.
    """
    ensure_dirs()
    full_env = {**os.environ, **(env or {})}
    if user is not None:
        argv = ["runuser", "-u", user, "--", *argv]
    running_pid = read_pid(component)
    if running_pid is not None and pid_alive(running_pid) and _command_of(running_pid) == list(argv):
        # Overwriting it would lose the live process: a second start of the same command fails on its port
        # or data directory and leaves its own dead pid in the file (`just status` DOWN, `just stop`
        # unable to reach the one that serves).
        raise StartError(f"{component} already runs as pid {running_pid}")
    with log_file(component).open("ab") as log:
        log.write(f"\n--- starting {component} at {time.strftime('%Y-%m-%d %H:%M:%S')}\n".encode())
        log.flush()
        process = subprocess.Popen(
            list(argv),
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=full_env,
            cwd=cwd,
            start_new_session=True,
        )
        refused = priority.apply(component, process.pid)
        if refused is not None:
            log.write(f"--- {component}: {refused}\n".encode())
    pid_file(component).write_text(f"{process.pid}\n")
    return process.pid


def _command_of(pid: int) -> list[str] | None:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return None
    return [part.decode(errors="replace") for part in raw.split(b"\0")[:-1]]


def forget(component: str, pid: int) -> None:
    """Remove the component's pid file if it still names ``pid``.

    A stop or a kill that outlived its process must not delete the file of the one started meanwhile:
    two `just restart X` at once both signalled the old process, the first started the new one, the
    second then removed its pid file and started a third that failed on the port, whose dead pid
    `just status` then read (the live one served on, untracked)."""
    path = pid_file(component)
    if read_pid(component) == pid:
        path.unlink(missing_ok=True)


def stop(component: str, timeout: float = 30.0) -> bool:
    """SIGTERM the component's process group, then SIGKILL if it outlives the timeout."""
    pid = read_pid(component)
    if pid is None or not pid_alive(pid):
        if pid is not None:
            forget(component, pid)
        return False
    _signal_group(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and pid_alive(pid):
        _reap(pid)
        time.sleep(0.1)
    if pid_alive(pid):
        _signal_group(pid, signal.SIGKILL)
        time.sleep(0.2)
    _reap(pid)
    forget(component, pid)
    return True


def _signal_group(pid: int, sig: signal.Signals) -> None:
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)


def _reap(pid: int) -> None:
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)


def wait_until(
    component: str,
    probe: Callable[[], bool],
    *,
    timeout: float,
    pid: int | None = None,
    interval: float = 0.5,
) -> None:
    """Poll a real readiness probe; fail early if the process died, naming its log."""
    waiting()
    deadline = time.monotonic() + timeout
    while True:
        try:
            if probe():
                return
        except Exception:
            pass
        if pid is not None and not pid_alive(pid):
            forget(component, pid)  # its dead pid would read as the component's
            raise StartError(f"{component} exited during start-up; see its log: {log_file(component)}")
        if time.monotonic() > deadline:
            raise StartError(f"{component} was not ready after {timeout:.0f}s; see its log: {log_file(component)}")
        time.sleep(interval)


def tail(component: str, lines: int = 40) -> str:
    path = log_file(component)
    if not path.exists():
        return ""
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


def kill(component: str, timeout: float = 10.0) -> None:
    """SIGKILL the component's process group: a crash, not a shutdown (used by failure tests).

    Returns once no process of the group is left, zombies included: a killed postmaster that init has not
    reaped yet still passes `pg_ctl status`, and a start in that moment would wait for it instead of
    starting a new one.
    """
    pid = read_pid(component)
    if pid is None:
        return
    # Descendants too, found before the kill (once their parent is gone they belong to init): a process
    # that left the group, e.g. a PostgreSQL backend, would otherwise outlive its postmaster and keep the
    # shared memory that the next start refuses to take over.
    descendants = _descendants(pid)
    _signal_group(pid, signal.SIGKILL)
    for child in descendants:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(child, signal.SIGKILL)
    deadline = time.monotonic() + timeout
    while (
        pid_alive(pid) or _group_members(pid) or any(pid_alive(child) for child in descendants)
    ) and time.monotonic() < deadline:
        _reap(pid)
        time.sleep(0.05)
    forget(component, pid)


def _descendants(root: int) -> list[int]:
    """Every process below root in the process tree (children, their children, ...)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            ppid = int(stat.read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(stat.parent.name))
    found, todo = [], [root]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def _group_members(pgid: int) -> list[int]:
    """Pids whose process group is pgid, zombies included (they are listed until their parent reaps them)."""
    members = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            state_ppid_pgrp = stat.read_text().rsplit(")", 1)[1].split()[:3]
        except (OSError, IndexError):
            continue
        if len(state_ppid_pgrp) == 3 and int(state_ppid_pgrp[2]) == pgid:
            members.append(int(stat.parent.name))
    return members
