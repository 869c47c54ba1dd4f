"""The stack exporter survives what killed it once: a failed librdkafka assertion, which calls abort() in the
process holding the Kafka clients. A second exporter (its own port, counting dead letters every second) runs
against the live stack under the stack's keeper (`python -m infra.keep`, as `just up` starts
stack-exporter). Its dead-letter counter, the only process with librdkafka clients, is sent SIGABRT (what
the assertion does): the exporter lives on, a new counter counts, the loss is counted. Then the exporter
itself is sent SIGABRT (what the assertion did to it before): the keeper starts it again. A stop (SIGTERM
to the process group, as `just stop` sends it) ends them all, and nothing starts again.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

pytestmark = pytest.mark.usefixtures("stack")

WITHIN_S = 60.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def metrics(port: int) -> str | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as resp:
            return str(resp.read().decode())
    except OSError:
        return None


def children(pid: int) -> list[int]:
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(OSError):
            found += [int(child) for child in (task / "children").read_text().split()]
    return found


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_text().replace("\0", " ")
    except OSError:
        return ""


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def wait_for(check: Callable[[], object], what: str) -> object:
    deadline = time.monotonic() + WITHIN_S
    while not (found := check()):
        assert time.monotonic() < deadline, f"{what} not within {WITHIN_S} s"
        time.sleep(0.3)
    return found


def only_child(pid: int, module: str) -> int | None:
    found = [child for child in children(pid) if module in cmdline(child) and alive(child)]
    return found[0] if len(found) == 1 else None


def counting(port: int) -> bool:
    body = metrics(port)
    return body is not None and 'commerce_exporter_source_up{source="kafka"} 1.0' in body


def restarts(port: int) -> float:
    body = metrics(port) or ""
    [line] = [line for line in body.splitlines() if line.startswith("commerce_exporter_child_restarts ")]
    return float(line.split()[1])


@pytest.fixture
def kept_exporter() -> Iterator[tuple[subprocess.Popen[bytes], int]]:
    port = free_port()
    exporter = [sys.executable, "-m", "infra.stack_exporter", "--port", str(port), "--dead-letters-every", "1"]
    keeper = subprocess.Popen(
        [sys.executable, "-m", "infra.keep", "test-exporter", "--", *exporter], start_new_session=True
    )
    try:
        yield keeper, port
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(keeper.pid, signal.SIGKILL)
        keeper.wait()


def test_an_abort_in_the_kafka_clients_leaves_the_exporter_up_and_a_dead_exporter_is_started_again(
    kept_exporter: tuple[subprocess.Popen[bytes], int],
) -> None:
    keeper, port = kept_exporter
    wait_for(lambda: counting(port), "dead letters counted")
    exporter = wait_for(lambda: only_child(keeper.pid, "infra.stack_exporter"), "the exporter under its keeper")
    assert isinstance(exporter, int)
    counter = only_child(exporter, "infra.dead_letter_stats")
    assert counter is not None, "no dead-letter counter process: the exporter holds the Kafka clients itself"

    # librdkafka's failed assertion: abort() in the process holding the clients.
    os.kill(counter, signal.SIGABRT)
    wait_for(lambda: restarts(port) == 1.0, "the lost counter counted")
    new_counter = wait_for(lambda: only_child(exporter, "infra.dead_letter_stats"), "a new counter")
    assert new_counter != counter
    assert alive(exporter) and only_child(keeper.pid, "infra.stack_exporter") == exporter
    wait_for(lambda: counting(port), "dead letters counted by the new counter")

    # Were the exporter itself to die so (it did, before the counter had a process of its own), the keeper
    # starts it again.
    os.kill(exporter, signal.SIGABRT)
    again = wait_for(
        lambda: (pid := only_child(keeper.pid, "infra.stack_exporter")) not in (None, exporter) and pid,
        "the exporter started again",
    )
    wait_for(lambda: counting(port), "the new exporter counting")

    # A stop reaches the whole group; the keeper ends with the exporter and starts nothing.
    os.killpg(keeper.pid, signal.SIGTERM)
    assert keeper.wait(timeout=20) == 0
    assert isinstance(again, int) and not alive(again)
    time.sleep(1.5)
    assert metrics(port) is None
