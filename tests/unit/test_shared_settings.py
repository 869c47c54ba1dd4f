"""The variables every service's shared modules read (apps/common: logs, the collector's threshold, ...) are
settings too (apps/common/settings.py): read when the app is built, and a bad value stops that start naming
its variable instead of being ignored or failing a request later."""

from __future__ import annotations

import pytest

from apps.common.heap import HeapSettings
from apps.common.logs import AccessLog, BatchingHandler, LogSettings
from apps.common.settings import SettingError, forget_settings

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
    monkeypatch.setenv("ACCESS_LOG_SAMPLE", "3")  # kept within 0 to 1, as before
    monkeypatch.setenv("ACCESS_LOG_SLOW_MS", "250")
    monkeypatch.setenv("LOG_FLUSH_MS", "20")
    forget_settings()
    access = AccessLog()
    assert (access.sample, access.slow_ms) == (1.0, 250.0)
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

