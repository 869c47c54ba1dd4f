"""A consumer process's HTTP endpoints: Prometheus metrics and a readiness probe.

GET /metrics   Prometheus exposition (every outbox_consumer_* metric)
GET /ready     200 once the consumer owns partitions and its database answered, 503 before (and while
               a batch is retried); the body says which, and what a retried batch waits for
GET /health    200 while the process serves HTTP at all (liveness)
"""

from __future__ import annotations

import asyncio
import json
import selectors
import signal
import socket
import threading
from collections.abc import Awaitable, Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest

__all__ = ["ProbeServer", "ReadinessState", "run_until_signalled", "serve_probes"]

# () -> (ready, details for the body)
ReadinessState = Callable[[], tuple[bool, dict[str, object]]]

# A connection is a thread here: one that sends half a request would hold its thread for good (300 such
# held 300 threads of a consumer, session 29, S). Prometheus and the stack's probes send a whole request at once.
READ_TIMEOUT_S = 5.0


class ProbeServer(ThreadingHTTPServer):
    """The probe server, waking only for a connection or for shutdown().

    socketserver's serve_forever wakes every ``poll_interval`` (0.5 s) just to see whether shutdown() was
    called: two wake-ups a second of a thread of every consumer, sweeper and worker process, idle or not
    (0.3-0.7 ms/s of CPU each, measured idle). Here the loop waits on the listening socket and on a socket
    pair that shutdown() writes to, with no timeout; shutdown() still returns once the loop has ended."""

    daemon_threads = True

    def __init__(self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler]) -> None:
        super().__init__(address, handler)
        self._wake_read, self._wake_write = socket.socketpair()
        self._stopping = False
        self._stopped = threading.Event()

    def serve_forever(self, poll_interval: float = 0.5) -> None:  # poll_interval: unused, no timeout
        try:
            with selectors.DefaultSelector() as selector:
                selector.register(self, selectors.EVENT_READ)
                selector.register(self._wake_read, selectors.EVENT_READ)
                while not self._stopping:
                    for key, _ in selector.select():
                        if key.fileobj is self and not self._stopping:
                            self.handle_request()  # a connection is waiting: accepted without a wait
        finally:
            self._stopped.set()

    def shutdown(self) -> None:
        """Stop serve_forever and wait until it has returned (it must be running, as for the base class)."""
        self._stopping = True
        self._wake_write.send(b"\0")
        self._stopped.wait()

    def server_close(self) -> None:
        super().server_close()
        self._wake_read.close()
        self._wake_write.close()


def serve_probes(port: int, readiness: ReadinessState, host: str = "127.0.0.1") -> ThreadingHTTPServer:
    """Serve /metrics, /ready and /health from a daemon thread; returns the server (shutdown() stops it)."""

    class Handler(BaseHTTPRequestHandler):
        timeout = READ_TIMEOUT_S

        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            if path == "/ready":
                ready, details = readiness()
                self._send(200 if ready else 503, "application/json", json.dumps(details).encode())
            elif path == "/health":
                self._send(200, "application/json", b'{"status": "ok"}')
            elif path in ("/metrics", "/"):
                self._send(200, CONTENT_TYPE_LATEST, generate_latest(REGISTRY))
            else:
                self._send(404, "text/plain", b"not found\n")

        def _send(self, status: int, content_type: str, body: bytes) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass  # probes every half second would drown the consumer's log

    server = ProbeServer((host, port), Handler)
    threading.Thread(target=server.serve_forever, name="probes", daemon=True).start()
    return server


async def run_until_signalled(
    run: Callable[[], Awaitable[None]],
    stop: Callable[[], None],
    *,
    port: int | None,
    readiness: ReadinessState,
    cleanup: Callable[[], Awaitable[None]] | None = None,
) -> None:
    """A long-running process: ``run()`` until SIGTERM/SIGINT call ``stop()``, serving probes on ``port``.

    ``run`` is expected to return soon after ``stop`` (finishing its work in flight); the probe server
    goes down and ``cleanup`` (e.g. an engine's dispose) runs whatever happens.
    """
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop)
    probes = serve_probes(port, readiness) if port else None
    try:
        await run()
    finally:
        if probes is not None:
            probes.shutdown()
        if cleanup is not None:
            await cleanup()
