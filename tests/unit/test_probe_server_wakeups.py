"""A consumer's probe server sleeps until a connection or shutdown() (outbox.probes.ProbeServer, session 32, K):
socketserver's serve_forever woke every 0.5 s only to see whether shutdown() had been called."""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path

import pytest

from outbox import probes

pytestmark = pytest.mark.unit


def _voluntary_switches(thread: threading.Thread) -> int:
    with Path(f"/proc/self/task/{thread.native_id}/status").open() as status:
        return next(int(line.split()[1]) for line in status if line.startswith("voluntary_ctxt_switches"))


def _serving_thread() -> threading.Thread:
    return next(t for t in threading.enumerate() if t.name == "probes")


@pytest.mark.skipif(not Path("/proc/self/task").exists(), reason="reads a thread's switches from /proc")
def test_an_idle_probe_server_does_not_wake() -> None:
    server = probes.serve_probes(0, lambda: (True, {"ok": True}))
    try:
        time.sleep(0.2)
        thread = _serving_thread()
        before = _voluntary_switches(thread)
        time.sleep(1.6)
        assert _voluntary_switches(thread) - before <= 1  # serve_forever's 0.5-s poll: 3
    finally:
        server.shutdown()
        server.server_close()


def test_it_answers_and_shutdown_returns_at_once() -> None:
    server = probes.serve_probes(0, lambda: (False, {"why": "not yet"}))
    port = server.server_address[1]
    for path, status in (("/health", b"200"), ("/ready", b"503"), ("/nope", b"404")):
        with socket.create_connection(("127.0.0.1", port), timeout=5) as conn:
            conn.sendall(b"GET " + path.encode() + b" HTTP/1.1\r\nHost: t\r\n\r\n")
            assert conn.recv(100).split(b" ")[1] == status
    thread = _serving_thread()
    time.sleep(0.7)  # well inside what was serve_forever's poll
    started = time.monotonic()
    server.shutdown()
    took = time.monotonic() - started
    server.server_close()
    thread.join(2)
    assert not thread.is_alive()
    assert took < 0.2, took
