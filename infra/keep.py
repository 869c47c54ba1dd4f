"""The stack's one supervision: ``python -m infra.keep NAME -- ARGV...`` runs ARGV and starts it again
whenever it ends without being asked to (after 1, 2, 5, 10, then 30 s while it keeps failing; a run of a
minute resets that), and passes SIGTERM/SIGINT on. infra/monitoring.py runs a daemon marked ``kept`` (the
stack exporter) under it: its pid file names the keeper, and `just stop` signals the whole process group,
the keeper and the daemon alike. Standard library only: the keeper stays small (~10 MB) for as long as
the stack runs.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence

__all__ = ["ended_by", "keep"]


# Seconds before the next start after the 1st, 2nd, ... failure in a row; a run of KEEP_STEADY_S resets them.
KEEP_BACKOFF_S = (1.0, 2.0, 5.0, 10.0, 30.0)
KEEP_STEADY_S = 60.0


def ended_by(code: int) -> str:
    """A child's returncode in words: its exit code, or the signal that killed it (SIGABRT: an abort())."""
    if code >= 0:
        return f"exit code {code}"
    try:
        return f"signal {signal.Signals(-code).name}"
    except ValueError:
        return f"signal {-code}"


def keep(name: str, argv: Sequence[str], *, backoff_s: Sequence[float] = KEEP_BACKOFF_S) -> int:
    """Run ``argv`` and start it again whenever it ends on its own, until SIGTERM or SIGINT, which it passes
    on; then its exit code."""
    stopping = threading.Event()  # set by the signal handler, read by the loop (a flag mypy sees change)
    running: list[subprocess.Popen[bytes]] = []

    def stop(signum: int, _frame: object) -> None:
        stopping.set()
        if running and running[0].poll() is None:
            running[0].send_signal(signum)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    failures = 0
    while not stopping.is_set():
        started = time.monotonic()
        running[:] = [subprocess.Popen(argv)]
        code = running[0].wait()
        if stopping.is_set():
            return code
        failures = 0 if time.monotonic() - started >= KEEP_STEADY_S else failures + 1
        delay = backoff_s[min(max(failures, 1), len(backoff_s)) - 1]
        print(f"keep: {name} (pid {running[0].pid}) ended ({ended_by(code)}); again in {delay:g} s", flush=True)
        until = time.monotonic() + delay
        while not stopping.is_set() and time.monotonic() < until:
            time.sleep(0.1)
    return 0


def _main(args: Sequence[str]) -> int:
    if len(args) >= 3 and args[1] == "--":
        return keep(args[0], args[2:])
    raise SystemExit("usage: python -m infra.keep NAME -- ARGV...")


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
