"""The stack's own commands: status sees every component up; a consumer is up once it owns partitions."""

from __future__ import annotations

import contextlib
import json
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from infra import proc, stack

pytestmark = pytest.mark.usefixtures("stack")


def test_status_reports_every_component_up(capsys: pytest.CaptureFixture[str]) -> None:
    code = stack.status()
    out = capsys.readouterr().out
    assert code == 0, out
    for component in ("postgres", "redis", "kafka", "connect", "connector order-outbox"):
        assert component in out
    assert "DOWN" not in out


CONSUMER = "customer-consumer"


def _consumer_processes(module: str) -> list[int]:
    """Pids of every `outbox.runner <module>` process on this machine, whoever started it."""
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        with contextlib.suppress(OSError):
            argv = cmdline.read_bytes().split(b"\0")
            if b"outbox.runner" in argv and module.encode() in argv:
                found.append(int(cmdline.parent.name))
    return found


@pytest.mark.slow
def test_a_started_consumer_is_up_only_once_it_owns_partitions(capsys: pytest.CaptureFixture[str]) -> None:
    stack.stop_component(CONSUMER)
    stack.start_component(CONSUMER)  # returns when the probe (/ready) answers 200
    with urllib.request.urlopen("http://127.0.0.1:8102/ready", timeout=5) as resp:
        body = json.load(resp)
    assert body["ready"] is True and body["partitions"] > 0 and body["database"] is True, body
    stack.status()
    row = next(line for line in capsys.readouterr().out.splitlines() if line.startswith(CONSUMER))
    assert row.split()[1] == "up", row


@pytest.mark.slow
def test_two_concurrent_starts_of_one_consumer_run_one_process() -> None:
    process = next(p for p in stack.app_processes() if p.name == CONSUMER)
    stack.stop_component(CONSUMER)
    try:
        with ThreadPoolExecutor(2) as pool:
            for future in [pool.submit(stack.start_process, process) for _ in range(2)]:
                future.result()
        pids = _consumer_processes("apps.customer.consumers")
        assert pids == [proc.read_pid(CONSUMER)], pids
    finally:
        stack.start_component(CONSUMER)
