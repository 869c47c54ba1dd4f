"""postgres-exporter as the stack runs it (infra/monitoring.py's argv and DATA_SOURCE_NAME), a second one on
its own port: against the live PostgreSQL it reports pg_up 1 and the custom queries; against a server that
takes the connection and never answers (a frozen PostgreSQL), each scrape still answers, with pg_up 0,
within Prometheus' 4 s scrape timeout; without a connect timeout the first scrape hung for good and every
later one queued behind it. Its readiness page answers at once meanwhile: `just status` asks that, not a
whole scrape.
"""

from __future__ import annotations

import contextlib
import socket
import subprocess
import threading
import time
import urllib.request
from collections.abc import Iterator

import pytest

from infra import monitoring

pytestmark = pytest.mark.usefixtures("stack")

SCRAPE_TIMEOUT_S = 4.0  # infra/monitoring.py's scrape_timeout


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def get(port: int, path: str, timeout: float = 15.0) -> tuple[str, float]:
    started = time.monotonic()
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=timeout) as resp:
        return resp.read().decode(), time.monotonic() - started


@contextlib.contextmanager
def exporter(pg_port: int | None) -> Iterator[int]:
    """A postgres-exporter started as the stack starts its own, on a free port; that port once it serves."""
    port = free_port()
    child = subprocess.Popen(
        monitoring.pg_exporter_argv(port),
        env=monitoring.pg_exporter_env(pg_port),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                get(port, "/", timeout=1)
                break
            except OSError:
                assert time.monotonic() < deadline, "the exporter did not serve"
                time.sleep(0.1)
        yield port
    finally:
        child.terminate()
        child.wait(timeout=10)


@contextlib.contextmanager
def frozen_server() -> Iterator[tuple[int, list[socket.socket]]]:
    """A port that accepts connections and never answers on them (held open until the end), and those held."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.2)
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                held.append(listener.accept()[0])

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield int(listener.getsockname()[1]), held
    finally:
        stop.set()
        thread.join()
        for conn in held:
            conn.close()
        listener.close()


def series(body: str, name: str) -> list[str]:
    return [line for line in body.splitlines() if line.startswith(name)]


def test_against_the_live_postgres_it_reports_up_and_the_custom_queries() -> None:
    with exporter(None) as port:
        body, _ = get(port, "/metrics")
    assert series(body, "pg_up ") == ["pg_up 1"]
    assert series(body, "pg_connection_usage_ratio")


def test_a_frozen_postgres_fails_each_scrape_in_time_and_the_ready_page_answers_meanwhile() -> None:
    with frozen_server() as (pg_port, held), exporter(pg_port) as port:
        waiting: list[float] = []
        before = len(held)
        scrape = threading.Thread(target=lambda: waiting.append(get(port, "/metrics")[1]))
        scrape.start()
        # The scrape is waiting on the frozen server once its connection is held there (a fixed 0.2 s was
        # assumed: on a busy machine the ready page could be asked before the scrape hung).
        deadline = time.monotonic() + 30
        while len(held) == before:
            assert time.monotonic() < deadline, "the scrape never reached the frozen server"
            time.sleep(0.01)
        _, ready_s = get(port, "/")
        assert ready_s < 0.5
        scrape.join()
        for _ in range(2):  # each scrape in time, none queued behind a hung one
            body, took = get(port, "/metrics")
            assert took < SCRAPE_TIMEOUT_S
            assert series(body, "pg_up ") == ["pg_up 0"]
        assert waiting and waiting[0] < SCRAPE_TIMEOUT_S
