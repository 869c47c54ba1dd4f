"""A service role's password never reaches PostgreSQL in clear (session 29, S): bootstrap sent
``CREATE/ALTER ROLE ... PASSWORD '<password>'``, and PostgreSQL logs a statement that fails (every one under
``log_statement = ddl``): .stack/logs/postgres.log, readable by every local user, held the CDC role's password
from a bootstrap that ran while the cluster was still in recovery. It now sends the SCRAM-SHA-256 verifier."""

from __future__ import annotations

import uuid

import asyncpg
import pytest

from apps.common.topology import SERVICES, pg_host, pg_port
from infra import postgres

pytestmark = pytest.mark.usefixtures("stack")


def test_bootstrap_sends_verifiers_not_passwords(monkeypatch: pytest.MonkeyPatch) -> None:
    sent: list[str] = []

    def psql_admin(sql: str, database: str = "postgres") -> str:
        sent.append(sql)
        return ""

    monkeypatch.setattr(postgres, "psql_admin", psql_admin)
    monkeypatch.setattr(postgres, "tune", lambda: None)
    secret = f"s29-{uuid.uuid4().hex}"
    monkeypatch.setenv("DEBEZIUM_DB_PASSWORD", secret)
    for spec in SERVICES:
        monkeypatch.setenv(spec.password_env, f"{secret}-{spec.name}")
    postgres.bootstrap()
    roles = [sql for sql in sent if "PASSWORD" in sql]
    assert len(roles) == len(SERVICES) + 1
    assert all("SCRAM-SHA-256$4096:" in sql for sql in roles)
    assert not [sql for sql in sent if secret in sql or "local-pw" in sql]


async def test_a_role_made_from_a_verifier_logs_in_with_its_password() -> None:
    role, password = f"s29_probe_{uuid.uuid4().hex[:12]}", f"pw-{uuid.uuid4().hex}"
    postgres.psql_admin(f"CREATE ROLE {role} LOGIN PASSWORD {postgres._literal(postgres.scram_verifier(password))}")
    try:
        connection = await asyncpg.connect(
            host=pg_host(), port=pg_port(), user=role, password=password, database="postgres"
        )
        assert await connection.fetchval("SELECT current_user") == role
        await connection.close()
        with pytest.raises(asyncpg.InvalidPasswordError):
            await asyncpg.connect(
                host=pg_host(), port=pg_port(), user=role, password=password + "x", database="postgres"
            )
    finally:
        postgres.psql_admin(f"DROP ROLE IF EXISTS {role}")


def test_the_verifier_is_postgresqls_own_form() -> None:
    """The server's own verifier for a password it was given in clear, rebuilt from its salt."""
    import base64

    role, password = f"s29_probe_{uuid.uuid4().hex[:12]}", f"pw-{uuid.uuid4().hex}-\u00e9t\u00e9"
    postgres.psql_admin(f"CREATE ROLE {role} PASSWORD {postgres._literal(password)}")
    try:
        stored = postgres.psql_admin(f"SELECT rolpassword FROM pg_authid WHERE rolname = '{role}'").strip()
    finally:
        postgres.psql_admin(f"DROP ROLE IF EXISTS {role}")
    iterations, salt = stored.split("$")[1].split(":")
    assert postgres.scram_verifier(password, base64.b64decode(salt), int(iterations)) == stored
