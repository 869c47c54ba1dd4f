"""The CDC role opens logical replication connections only (session 29, S): pg_hba's
`host replication debezium 127.0.0.1/32` let it open a physical one, i.e. pg_basebackup every database of
the cluster (the replica's copy too) with Debezium's password; Debezium's logical connections name their
database and never needed the line."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from apps.common.topology import CDC_ROLE, cdc_password, pg_host, pg_port, replica_port
from infra import postgres

pytestmark = pytest.mark.usefixtures("stack")


def _replication(port: int, mode: str, database: str = "") -> subprocess.CompletedProcess[str]:
    dsn = f"host={pg_host()} port={port} user={CDC_ROLE} replication={mode}"
    if database:
        dsn += f" dbname={database}"
    return subprocess.run(
        [str(postgres.BIN / "psql"), "-X", "-At", dsn, "-c", "IDENTIFY_SYSTEM"],
        capture_output=True,
        text=True,
        env={**os.environ, "PGPASSWORD": cdc_password()},
        timeout=20,
        check=False,
    )


@pytest.mark.parametrize("port", [pg_port(), replica_port()], ids=["primary", "replica"])
def test_the_cdc_role_gets_no_physical_replication_connection(port: int) -> None:
    refused = _replication(port, "true")
    assert refused.returncode != 0
    assert "no pg_hba.conf entry for replication connection" in refused.stderr


def test_the_cdc_role_still_opens_logical_replication_connections() -> None:
    logical = _replication(pg_port(), "database", "order_db")
    assert logical.returncode == 0, logical.stderr


def test_an_old_clusters_line_is_dropped_once(tmp_path: Path) -> None:
    hba = tmp_path / "pg_hba.conf"
    kept = "local   all          postgres                 peer\n"
    kept += "host    all          all        127.0.0.1/32  scram-sha-256\n"
    hba.write_text(kept + f"host    replication  {CDC_ROLE}   127.0.0.1/32  scram-sha-256\n")
    assert postgres.drop_cdc_physical_replication(tmp_path)
    assert hba.read_text() == kept
    assert not postgres.drop_cdc_physical_replication(tmp_path)
