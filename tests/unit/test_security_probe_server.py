"""A consumer's probe server closes a half-sent request (session 29, S): each connection is a thread, and 300
connections that sent half a request held 300 threads of customer-consumer for good."""

from __future__ import annotations

import socket
import threading
import time

import pytest

from outbox import probes

pytestmark = pytest.mark.unit


def test_a_stalled_request_is_closed_and_its_thread_ends(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(probes, "READ_TIMEOUT_S", 0.5, raising=False)
    server = probes.serve_probes(0, lambda: (True, {"ok": True}))
    before = threading.active_count()
    port = server.server_address[1]
    try:
        stalled = [socket.create_connection(("127.0.0.1", port)) for _ in range(20)]
        for conn in stalled:
            conn.sendall(b"GET /metrics HTTP/1.1\r\nHost: t\r\n")
        time.sleep(0.2)
        started = time.monotonic()
        for conn in stalled:
            conn.settimeout(5)
            assert conn.recv(100) == b""  # closed by the server, nothing answered
            conn.close()
        assert time.monotonic() - started < 3
        time.sleep(0.3)
        assert threading.active_count() <= before
        with socket.create_connection(("127.0.0.1", port)) as whole:
            whole.sendall(b"GET /ready HTTP/1.1\r\nHost: t\r\n\r\n")
            assert whole.recv(100).startswith(b"HTTP/1.0 200")
    finally:
        server.shutdown()
        server.server_close()
