"""The running Kafka Connect offers no file connector and resolves no variable but the CDC password
(session 29, S; the configuration is checked in tests/unit/test_security_connect_surface.py). Connect
reads its configuration at start: a worker started before 'infra/config/connect-distributed.properties'
and the kafka pom changed fails this until `just restart connect`."""

from __future__ import annotations

import json
import urllib.request

import pytest

from apps.common.topology import connect_url

pytestmark = pytest.mark.usefixtures("stack")


def test_connect_offers_only_the_debezium_connector() -> None:
    with urllib.request.urlopen(f"{connect_url()}/connector-plugins", timeout=10) as response:
        plugins = [plugin["class"] for plugin in json.load(response)]
    assert plugins, "Connect lists no connector plugin"
    assert [p for p in plugins if "FileStream" in p] == []
    assert "io.debezium.connector.postgresql.PostgresConnector" in plugins
