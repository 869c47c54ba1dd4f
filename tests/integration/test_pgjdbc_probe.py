"""The PostgreSQL driver's socket factory in Debezium's plugin folder (infra/maven/pgjdbc-probe): with it on
the class path the driver answers an empty replication read at once instead of waiting out its 1 ms probe,
a change still arrives, and ordinary queries are untouched. Run against the stack's PostgreSQL with the
driver Debezium resolves, by a small Java program (tests/integration/java/PgjdbcProbeCheck.java)."""

from __future__ import annotations

import os
import re
import subprocess
import uuid
from pathlib import Path

import pytest

from apps.common.topology import cdc_password, pg_host, pg_port
from infra import jars, kafka

pytestmark = pytest.mark.usefixtures("stack")

CHECK = Path(__file__).parent / "java" / "PgjdbcProbeCheck.java"


def _check(with_probe: bool) -> dict[str, str]:
    driver = next(jars.resolve("debezium").glob("postgresql-*.jar"))
    classpath = [str(driver), *([str(jars.build(jars.PROBE))] if with_probe else [])]
    url = f"jdbc:postgresql://{pg_host()}:{pg_port()}/order_db"
    slot = f"probe_check_{uuid.uuid4().hex[:8]}"
    java = [kafka._java(kafka.CONNECT), "-cp", os.pathsep.join(classpath), str(CHECK)]
    out = subprocess.run(
        [*java, url, "debezium", cdc_password(), slot],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return dict(re.findall(r"(\w+)=(\S+)", out.stdout.strip().splitlines()[-1]))


def test_the_plugin_folder_carries_the_probe_next_to_the_driver() -> None:
    plugin = jars.connect_plugin_path() / "debezium-connector-postgres"
    assert (plugin / f"{jars.PROBE}.jar").is_file()
    assert list(plugin.glob("postgresql-*.jar"))


def test_an_empty_replication_read_returns_at_once_and_a_change_still_arrives() -> None:
    result = _check(with_probe=True)
    assert result["query"] == "42"
    assert result["empty_reads"] == "200"
    # The driver's own probe waits 1 ms per empty read (>= 200 ms for these 200); answered at once they take
    # a few microseconds each.
    assert int(result["empty_ms"]) < 100
    assert "pgjdbc-probe-check" in result["change"] and "hello" in result["change"]


def test_without_the_probe_the_driver_waits_on_every_empty_read() -> None:
    """The control: what the check above would see if the factory were not the driver's default."""
    result = _check(with_probe=False)
    assert result["empty_reads"] == "200"
    assert int(result["empty_ms"]) >= 200
    assert "hello" in result["change"]
