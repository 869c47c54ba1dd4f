"""Every API's server ticks once a second, not ten times (apps.common.http_server.QuietServer, session 32, K):
uvicorn's main loop woke every 100 ms only to see whether its signal handler had asked it to exit, ten
wake-ups a second of every idle API's event loop. The Date header stays at most a second old, and a SIGTERM
ends the server at once, also in a real process (the signal handler wakes the loop)."""

from __future__ import annotations

import contextlib
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from email.utils import parsedate_to_datetime
from pathlib import Path

import pytest
import uvicorn
from litestar import Litestar, get

from apps.common import http_server
from apps.common.http_server import QuietServer

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
APP = "tests.unit.test_quiet_server"  # this module, as the subprocess (cwd ROOT) imports it


@get("/ping", sync_to_thread=False)
def ping() -> str:
    return "pong"


def create_app() -> Litestar:
    """The app factory the subprocess test serves (python -m apps.common.http_server this:create_app)."""
    return Litestar([ping])


class _Counting(QuietServer):
    ticks = 0

    async def on_tick(self, counter: int) -> bool:
        self.ticks += 1
        return await super().on_tick(counter)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def serving() -> Iterator[tuple[_Counting, int, threading.Thread]]:
    """A server in a thread of its own (its own loop; uvicorn installs signal handlers only on the main
    thread, so handle_exit is called by hand here)."""
    port = _free_port()
    server = _Counting(uvicorn.Config(Litestar([ping]), port=port, lifespan="off", log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    for _ in range(500):
        if server.started:
            break
        time.sleep(0.01)
    assert server.started
    try:
        yield server, port, thread
    finally:
        server.handle_exit(signal.SIGTERM, None)
        thread.join(5)


def _date(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/ping", timeout=5) as answer:
        return str(answer.headers["date"])


def test_an_idle_server_ticks_once_a_second() -> None:
    with serving() as (server, _, _):
        before = server.ticks
        time.sleep(2.5)
        ticks = server.ticks - before
    assert 1 <= ticks <= 4, ticks  # uvicorn's own server: ~25


def test_the_date_header_is_at_most_a_second_old() -> None:
    with serving() as (_, port, _):
        first = _date(port)
        started = time.monotonic()
        while (date := _date(port)) == first:
            assert time.monotonic() - started < 2.5, "the Date header did not move on"
            time.sleep(0.05)
        assert abs(parsedate_to_datetime(date).timestamp() - time.time()) < 2.5


def test_an_exit_request_ends_a_waiting_tick_at_once() -> None:
    with serving() as (server, _, thread):
        time.sleep(1.3)  # inside a tick's wait
        started = time.monotonic()
        server.handle_exit(signal.SIGTERM, None)
        thread.join(5)
        took = time.monotonic() - started
    assert not thread.is_alive()
    assert took < 0.5, took  # the tick is 1 s


def test_a_sigterm_ends_a_served_process_at_once() -> None:
    """The stack's own launch line (python -m apps.common.http_server), a real signal, uvloop's loop."""
    port = _free_port()
    argv = [sys.executable, "-m", http_server.__name__, f"{APP}:create_app", "--port", str(port)]
    proc = subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(300):
            with contextlib.suppress(OSError):
                assert _date(port)
                break
            time.sleep(0.05)
        else:
            pytest.fail("the server did not start")
        time.sleep(1.3)
        started = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(5)
        took = time.monotonic() - started
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert code in (0, -signal.SIGTERM), code  # uvicorn re-raises the signal it handled once it is down
    assert took < 0.8, took


def test_one_worker_is_served_by_the_quiet_server(monkeypatch: pytest.MonkeyPatch) -> None:
    served: list[tuple[type[uvicorn.Server], uvicorn.Config]] = []

    def run(self: uvicorn.Server, sockets: object = None) -> None:
        served.append((type(self), self.config))
        self.started = True

    monkeypatch.setattr(QuietServer, "run", run)
    http_server.main([f"{APP}:create_app", "--port", "1"])
    ((kind, config),) = served
    assert kind is QuietServer
    assert config.http == "apps.common.http_server:BoundedHttpToolsProtocol"
    assert config.factory and not config.access_log and config.workers == 1
