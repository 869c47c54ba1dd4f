"""The variables every service's shared modules read (apps/common: logs, the collector's threshold, ...) are
settings too (apps/common/settings.py): read when the app is built, and a bad value stops that start naming
its variable instead of being ignored or failing a request later."""

from __future__ import annotations

import pytest

from apps.common import access_log
from apps.common.auth_tokens import ASYMMETRIC, AuthSettings
from apps.common.heap import HeapSettings
from apps.common.logs import AccessLog, BatchingHandler, LogSettings
from apps.common.migrations_env import MigrationSettings, duration_s
from apps.common.rate_limit import RateLimitSettings
from apps.common.read_routing import ReplicaSettings
from apps.common.security_headers import SecurityHeaderSettings, SecurityHeadersPlugin
from apps.common.settings import SettingError, forget_settings, read_env
from apps.common.topology import BY_NAME, PROCESSES, pg_port, replica_port

pytestmark = pytest.mark.unit


def test_the_logs_settings_read_their_variables() -> None:
    read = LogSettings.from_env(
        {"LOG_LEVEL": "debug", "LOG_FLUSH_MS": "5", "ACCESS_LOG_SAMPLE": "0.25", "ACCESS_LOG_SLOW_MS": "200"}
    )
    assert read == LogSettings(level="debug", flush_ms=5.0, access_log_sample=0.25, access_log_slow_ms=200.0)
    assert LogSettings.from_env({}) == LogSettings("INFO", 50.0, 1.0, 500.0)
    assert HeapSettings.from_env({"GC_SLOW_MS": "7.5"}).slow_collection_ms == 7.5
    assert HeapSettings.from_env({}).slow_collection_ms == 20.0


def test_the_access_log_and_the_writer_take_the_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ACCESS_LOG_SAMPLE", "0.5")
    monkeypatch.setenv("ACCESS_LOG_SLOW_MS", "250")
    monkeypatch.setenv("LOG_FLUSH_MS", "20")
    forget_settings()
    access = AccessLog()
    assert (access.sample, access.slow_ms) == (0.5, 250.0)
    handler = BatchingHandler()
    try:
        assert handler.interval_s == 0.02
    finally:
        handler.close()


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        # Until session 34 the three numbers of logs.py fell back to their defaults on a bad value, silently.
        ("LOG_FLUSH_MS", "fast", "LOG_FLUSH_MS='fast': not a number"),
        ("ACCESS_LOG_SAMPLE", "10%", "ACCESS_LOG_SAMPLE='10%': not a number"),
        ("ACCESS_LOG_SLOW_MS", "1s", "ACCESS_LOG_SLOW_MS='1s': not a number"),
        ("LOG_LEVEL", "LOUD", "LOG_LEVEL='LOUD': not a level (DEBUG, INFO, WARNING, ERROR, CRITICAL)"),
        ("GC_SLOW_MS", "20ms", "GC_SLOW_MS='20ms': not a number"),
        # Until session 34 these two meant "no header" and "on", silently.
        ("SECURITY_HSTS_MAX_AGE", "1y", "SECURITY_HSTS_MAX_AGE='1y': not an integer"),
        ("SECURITY_HSTS_MAX_AGE", "-1", "SECURITY_HSTS_MAX_AGE='-1': not an integer from 0 to 2147483648"),
        # Until session 34 a share above 1 was taken as 1, below 0 as 0, silently; nan and inf were taken.
        ("ACCESS_LOG_SAMPLE", "3", "ACCESS_LOG_SAMPLE='3': not a number from 0 to 1"),
        ("ACCESS_LOG_SAMPLE", "-0.1", "ACCESS_LOG_SAMPLE='-0.1': not a number from 0 to 1"),
        ("ACCESS_LOG_SAMPLE", "nan", "ACCESS_LOG_SAMPLE='nan': not a finite number"),
        ("LOG_FLUSH_MS", "-5", "LOG_FLUSH_MS='-5': not a number from 0 to 86400000"),
        ("GC_SLOW_MS", "inf", "GC_SLOW_MS='inf': not a finite number"),
        ("DB_POOL_SIZE", "-4", "DB_POOL_SIZE='-4': not an integer from 1 to 262143"),
        ("DB_POOL_TIMEOUT_S", "nan", "DB_POOL_TIMEOUT_S='nan': not a finite number"),
        ("DB_POOL_IDLE_TIMEOUT_S", "0", "DB_POOL_IDLE_TIMEOUT_S='0': not a number above 0 and of at most 86400"),
        ("AUTH_JWKS_REFRESH_S", "0", "AUTH_JWKS_REFRESH_S='0': not a number above 0 and of at most 86400"),
        # Until session 34 no duration had a maximum: 1e300 was taken, and overflowed where it was used.
        (
            "DB_POOL_IDLE_TIMEOUT_S",
            "1e300",
            "DB_POOL_IDLE_TIMEOUT_S='1e300': not a number above 0 and of at most 86400",
        ),
        (
            "SECURITY_HSTS_MAX_AGE",
            "2147483649",
            "SECURITY_HSTS_MAX_AGE='2147483649': not an integer from 0 to 2147483648",
        ),
        ("DB_POOL_SIZE", "9" * 400, f"DB_POOL_SIZE='{'9' * 400}': not an integer from 1 to 262143"),
        ("READ_REPLICA", "of", "READ_REPLICA='of': neither on nor off"),
        ("RATE_LIMIT_WRITES", "lots", "RATE_LIMIT_WRITES='lots': not a limit such as '50/5s' or '120/minute'"),
        ("RATE_LIMIT_READS", "600/0s", "RATE_LIMIT_READS='600/0s': the window is at least one second"),
        ("AUTH_JWKS_REFRESH_S", "1m", "AUTH_JWKS_REFRESH_S='1m': not a number"),  # was float()'s message
        (
            "AUTH_ALGORITHMS",
            "EdDSA,HS256",
            f"AUTH_ALGORITHMS='EdDSA,HS256': not asymmetric algorithms among {sorted(ASYMMETRIC)}",
        ),
    ],
)
def test_a_service_app_does_not_start_with_a_bad_shared_value(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, message: str
) -> None:
    from apps.catalog.app import create_app

    monkeypatch.setenv(variable, value)
    forget_settings()
    with pytest.raises(SettingError) as raised:
        create_app()
    assert str(raised.value) == message


def test_the_security_headers_replica_and_rate_limit_settings_read_their_variables() -> None:
    assert SecurityHeaderSettings.from_env({}).hsts_max_age is None
    assert SecurityHeaderSettings.from_env({"SECURITY_HSTS_MAX_AGE": "31536000"}).hsts_max_age == 31536000
    assert ReplicaSettings.from_env({}).enabled
    assert [ReplicaSettings.from_env({"READ_REPLICA": v}).enabled for v in ("OFF", "0", "false", "on", "1")] == [
        False,
        False,
        False,
        True,
        True,
    ]
    limits = RateLimitSettings.from_env({"RATE_LIMIT_WRITES": "3/minute"})
    assert (limits.write_limit, limits.read_limit) == ((3, 60), (600, 10))


@pytest.mark.parametrize(("value", "header"), [("0", None), ("600", b"max-age=600; includeSubDomains")])
def test_the_hsts_header_follows_its_variable(
    monkeypatch: pytest.MonkeyPatch, value: str, header: bytes | None
) -> None:
    monkeypatch.setenv("SECURITY_HSTS_MAX_AGE", value)
    assert dict(SecurityHeadersPlugin().headers).get(b"strict-transport-security") == header


@pytest.mark.parametrize("value", ["5s", "500ms", "1min", "0", "2 s", "1.5h", "250"])
def test_a_migration_lock_timeout_postgresql_takes_is_read(value: str) -> None:
    assert MigrationSettings.from_env({"MIGRATION_LOCK_TIMEOUT": value}).lock_timeout == value


@pytest.mark.parametrize("value", ["5 sec", "", "5s'; DROP TABLE orders; --", "-1s"])
def test_a_migration_lock_timeout_postgresql_would_not_take_is_refused(value: str) -> None:
    with pytest.raises(SettingError, match=r"^MIGRATION_LOCK_TIMEOUT=.*: not a duration such as 5s"):
        MigrationSettings.from_env({"MIGRATION_LOCK_TIMEOUT": value})


@pytest.mark.parametrize(
    ("value", "seconds"),
    [("5s", 5.0), ("500ms", 0.5), ("1min", 60.0), ("0", 0.0), ("2 s", 2.0), ("1.5h", 5400.0), ("250", 0.25)],
)
def test_a_migration_lock_timeout_reads_as_seconds_as_postgresql_reads_it(value: str, seconds: float) -> None:
    """The bound a test holds a migration's locks to (tests/integration/test_order_migrations.py); ``0`` is no
    limit, a number without a unit milliseconds."""
    assert duration_s(MigrationSettings.from_env({"MIGRATION_LOCK_TIMEOUT": value}).lock_timeout) == seconds


def test_the_access_log_retention_is_read_once_and_refused_when_not_a_number(monkeypatch: pytest.MonkeyPatch) -> None:
    assert access_log.retention_days() == 730
    monkeypatch.setenv("ACCESS_LOG_RETENTION_DAYS", "365")
    forget_settings()
    assert access_log.retention_days() == 365
    monkeypatch.setenv("ACCESS_LOG_RETENTION_DAYS", "two years")
    forget_settings()
    with pytest.raises(SettingError, match=r"^ACCESS_LOG_RETENTION_DAYS='two years': not an integer$"):
        access_log.retention_days()


def test_the_token_settings_read_their_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("AUTH_ISSUER", "AUTH_AUDIENCE", "AUTH_JWKS_URL", "AUTH_ALGORITHMS", "AUTH_JWKS_REFRESH_S"):
        monkeypatch.delenv(name, raising=False)
    default = AuthSettings.from_env()
    assert (default.issuer, default.audience, default.jwks_url, default.refresh_s) == (
        "commerce-outbox-dev",
        "commerce-outbox",
        None,
        60.0,
    )
    assert default.algorithms == {"EdDSA", "RS256", "ES256"}
    monkeypatch.setenv("AUTH_ISSUER", "https://id.example")
    monkeypatch.setenv("AUTH_AUDIENCE", "shop")
    monkeypatch.setenv("AUTH_JWKS_URL", "https://id.example/jwks")
    monkeypatch.setenv("AUTH_ALGORITHMS", " ES256 , RS256 ")
    monkeypatch.setenv("AUTH_JWKS_REFRESH_S", "30")
    read = AuthSettings.from_env()
    assert (read.issuer, read.audience, read.jwks_url, read.refresh_s) == (
        "https://id.example",
        "shop",
        "https://id.example/jwks",
        30.0,
    )
    assert read.algorithms == {"ES256", "RS256"}
    monkeypatch.setenv("AUTH_JWKS_URL", "")  # set but empty: the file, as before
    assert AuthSettings.from_env().jwks_url is None


def test_a_variable_named_at_run_time_is_read_as_its_defaults_type(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("EXAMPLE_PORT", raising=False)
    assert read_env("EXAMPLE_PORT", 8001) == 8001
    monkeypatch.setenv("EXAMPLE_PORT", "9001")
    assert read_env("EXAMPLE_PORT", 8001) == 9001
    assert read_env("EXAMPLE_PORT", 1.5) == 9001.0 and read_env("EXAMPLE_PORT", "x") == "9001"
    monkeypatch.setenv("EXAMPLE_PORT", "90o1")
    with pytest.raises(SettingError, match=r"^EXAMPLE_PORT='90o1': not an integer$"):
        read_env("EXAMPLE_PORT", 8001)
    monkeypatch.setenv("EXAMPLE_PORT", "nan")
    with pytest.raises(SettingError, match=r"^EXAMPLE_PORT='nan': not a finite number$"):
        read_env("EXAMPLE_PORT", 1.5)
    monkeypatch.setenv("EXAMPLE_PORT", "0")
    with pytest.raises(SettingError, match=r"^EXAMPLE_PORT='0': not an integer from 1 to 65535$"):
        read_env("EXAMPLE_PORT", 8001, minimum=1, maximum=65535)


@pytest.mark.parametrize("value", ["0", "-1", "65536"])
def test_a_port_of_the_topology_outside_1_to_65535_is_refused_naming_it(
    monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    sandbox = next(p for p in PROCESSES if p.name == "payment-sandbox")
    readers = {
        "PG_PORT": pg_port,
        "PG_REPLICA_PORT": replica_port,
        "ORDER_PORT": BY_NAME["order"].local_port,
        "PAYMENT_SANDBOX_PORT": sandbox.local_port,
    }
    for name, read in readers.items():
        monkeypatch.setenv(name, value)
        with pytest.raises(SettingError, match=rf"^{name}='{value}': not an integer from 1 to 65535$"):
            read()
        monkeypatch.setenv(name, "65535")
        assert read() == 65535


def test_the_topologys_numbers_are_read_when_asked_and_refused_naming_their_variable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    sandbox = next(p for p in PROCESSES if p.name == "payment-sandbox")
    for name in ("PG_PORT", "PG_REPLICA_PORT", "ORDER_PORT", "ORDER_WORKERS", "PAYMENT_SANDBOX_PORT"):
        monkeypatch.delenv(name, raising=False)
    assert (pg_port(), replica_port(), BY_NAME["order"].local_port(), BY_NAME["order"].worker_count()) == (
        5432,
        5433,
        8004,
        1,
    )
    assert sandbox.local_port() == 8009
    monkeypatch.setenv("PG_PORT", "15432")  # a scratch cluster's, within one process (infra's commands, tests)
    monkeypatch.setenv("ORDER_WORKERS", "2")
    monkeypatch.setenv("PAYMENT_SANDBOX_PORT", "18009")
    assert (pg_port(), BY_NAME["order"].worker_count(), sandbox.local_port()) == (15432, 2, 18009)
    for workers in ("0", "-1"):  # 0 was taken as 1, silently, until session 34
        monkeypatch.setenv("ORDER_WORKERS", workers)
        with pytest.raises(SettingError) as refused:
            BY_NAME["order"].worker_count()
        assert str(refused.value) == f"ORDER_WORKERS='{workers}': not an integer of at least 1"
    for name, value, read in [
        ("PG_PORT", "5432x", pg_port),
        ("PG_REPLICA_PORT", "", replica_port),
        ("ORDER_PORT", "80o4", BY_NAME["order"].local_port),
        ("ORDER_WORKERS", "two", BY_NAME["order"].worker_count),
        ("PAYMENT_SANDBOX_PORT", "8009/tcp", sandbox.local_port),
    ]:
        monkeypatch.setenv(name, value)
        with pytest.raises(SettingError) as raised:
            read()
        assert str(raised.value) == f"{name}={value!r}: not an integer"
