"""connectors/*.json agree with the topology the migrations and the stack use."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from apps.common.topology import SERVICES

CONNECTORS = Path(__file__).resolve().parents[2] / "connectors"


@pytest.mark.parametrize("spec", SERVICES, ids=lambda spec: spec.name)
def test_each_service_database_has_its_own_outbox_connector(spec: object) -> None:
    from apps.common.topology import ServiceSpec

    assert isinstance(spec, ServiceSpec)
    body = json.loads((CONNECTORS / f"{spec.name}.json").read_text())
    config = body["config"]
    assert body["name"] == f"{spec.name}-outbox"
    assert config["database.dbname"] == spec.database
    assert config["slot.name"] == spec.slot
    assert config["publication.name"] == spec.publication
    assert config["publication.autocreate.mode"] == "disabled"
    assert config["plugin.name"] == "pgoutput"
    assert config["table.include.list"] == "public.event_store"
    assert config["transforms.outbox.type"] == "io.debezium.transforms.outbox.EventRouter"
    assert config["transforms.outbox.table.expand.json.payload"] == "true"
    assert "heartbeat.action.query" in config
    assert config["topic.creation.default.cleanup.policy"] == "delete"


def test_no_connector_file_holds_a_literal_password() -> None:
    for path in CONNECTORS.glob("*.json"):
        config = json.loads(path.read_text())["config"]
        assert config["database.password"].startswith("${env:"), path.name
