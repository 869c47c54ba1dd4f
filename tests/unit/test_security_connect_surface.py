"""What Kafka Connect's REST API lets its caller do (session 29, S). The API has no authentication (README,
Security: operator surfaces), so what a submitted connector may touch is what the worker allows: the FileStream
connectors (on the classpath through connect-file) read and write any file as the worker's user (root on this
stack: the keyrings, the token issuer's key), and config providers without an allowlist hand any environment
variable or file to a connector config, which a connector pointed at another host sends there."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from infra.paths import REPO

pytestmark = pytest.mark.unit

PROPERTIES = REPO / "infra" / "config" / "connect-distributed.properties"


def _settings() -> dict[str, str]:
    pairs = (line.split("=", 1) for line in PROPERTIES.read_text().splitlines() if "=" in line and line[0] != "#")
    return {key.strip(): value.strip() for key, value in pairs}


def test_the_worker_carries_no_file_connectors() -> None:
    pom = (REPO / "infra" / "maven" / "kafka" / "pom.xml").read_text()
    dependencies = re.findall(r"<dependency>.*?<artifactId>([^<]+)</artifactId>", pom)
    assert dependencies and "connect-file" not in dependencies


def test_config_providers_hand_out_only_the_cdc_password() -> None:
    settings = _settings()
    assert settings["config.providers"] == "env"
    assert settings["config.providers.env.param.allowlist.pattern"] == "DEBEZIUM_DB_PASSWORD"


def test_every_placeholder_in_the_connectors_is_allowed() -> None:
    allowed = re.compile(_settings()["config.providers.env.param.allowlist.pattern"])
    named = {
        match
        for path in Path(REPO / "connectors").glob("*.json")
        for value in json.loads(path.read_text())["config"].values()
        for match in re.findall(r"\$\{env:([^}:]+)}", str(value))
    }
    assert named and all(allowed.fullmatch(name) for name in named)
