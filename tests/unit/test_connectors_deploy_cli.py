"""`just connectors-deploy`'s failures read as what to fix, not as tracebacks (docs walked as an operator,
sessions 28-29): an unreachable Connect or Kafka, Connect refusing a config, a `--set` without '=', and a
deploy to a Connect cluster elsewhere from a machine that reaches no PostgreSQL (README, Connectors)."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any

import pytest

from infra import connectors


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class FakeConnect(BaseHTTPRequestHandler):
    """Kafka Connect's REST API as far as a deploy uses it; ``refuse`` makes every PUT a 400 in Connect's shape."""

    refuse = False
    puts: list[tuple[str, dict[str, Any]]] = []

    def _answer(self, code: int, body: object) -> None:
        raw = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)

    def do_PUT(self) -> None:
        config = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        if self.refuse:
            message = "Connector configuration is invalid and contains the following 1 error(s):\nbad hostname"
            self._answer(400, {"error_code": 400, "message": message})
            return
        FakeConnect.puts.append((self.path, config))
        self._answer(200, {"name": self.path.split("/")[2], "config": config})

    def do_DELETE(self) -> None:
        self._answer(404, {"error_code": 404, "message": "Connector analytics-outbox not found"})

    def do_GET(self) -> None:
        state = {"state": "RUNNING"}
        self._answer(200, {"name": self.path.split("/")[2], "connector": state, "tasks": [{"id": 0, **state}]})

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def fake_connect(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    FakeConnect.refuse = False
    FakeConnect.puts = []
    server = HTTPServer(("127.0.0.1", 0), FakeConnect)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    # The topics are Kafka's business, not under test here.
    monkeypatch.setattr(connectors, "ensure_event_topics", lambda bootstrap: None)
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()


def test_a_set_without_equals_names_the_form(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        connectors.main(["--set", "database.hostname"])
    assert exit_.value.code == 2
    assert "--set takes KEY=VALUE" in capsys.readouterr().err


def test_an_unreachable_connect_names_its_url(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(connectors, "ensure_event_topics", lambda bootstrap: None)
    url = f"http://127.0.0.1:{closed_port()}"
    assert connectors.main(["--connect-url", url]) == 1
    err = capsys.readouterr().err
    assert f"cannot reach Kafka Connect at {url}" in err and "--connect-url or $CONNECT_URL" in err
    assert "Traceback" not in err


def test_an_unreachable_kafka_names_its_bootstrap(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(connectors, "METADATA_TIMEOUT_S", 1.0)
    bootstrap = f"127.0.0.1:{closed_port()}"
    assert connectors.main(["--bootstrap", bootstrap, "--connect-url", "http://127.0.0.1:1"]) == 1
    assert f"cannot reach Kafka at {bootstrap} to create the event topics" in capsys.readouterr().err


def test_a_refused_config_shows_connects_own_message(
    fake_connect: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(connectors, "retire", lambda base_url: None)
    FakeConnect.refuse = True
    assert connectors.main(["--connect-url", fake_connect]) == 1
    err = capsys.readouterr().err
    assert "HTTP 400: Connector configuration is invalid" in err and "bad hostname" in err


def test_a_deploy_elsewhere_goes_on_without_a_local_postgresql(
    fake_connect: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # README's "Deploying to your own Kafka Connect cluster", from a machine with no PostgreSQL of its own.
    monkeypatch.setenv("PG_PORT", str(closed_port()))
    argv = ["--connect-url", fake_connect, "--set", "database.hostname=pg.internal", "--set", "database.port=5433"]
    assert connectors.main(argv) == 0
    out, err = capsys.readouterr()
    assert {path for path, _ in FakeConnect.puts} == {
        f"/connectors/{connectors.load(path, {})[0]}/config" for path in connectors.connector_files()
    }
    for _, config in FakeConnect.puts:
        assert config["database.hostname"] == "pg.internal" and config["database.port"] == "5433"
        assert config["database.password"] == "${env:DEBEZIUM_DB_PASSWORD}"  # resolved by the worker
    assert "slot analytics_outbox: not checked" in err and "pg_drop_replication_slot('analytics_outbox')" in err
    assert out.count(": RUNNING") == len(FakeConnect.puts)
