"""The outbox library's own readers of its variables (outbox/config.py): OUTBOX_* numbers and durations are
finite, within their bounds, and refused naming the variable, without apps/common (the library stands alone)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from outbox import runner
from outbox.config import DAY_S, ConfigError, duration_s, read_duration, read_number

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("abc", "EXAMPLE_BATCH='abc': not an integer"),
        ("2.5", "EXAMPLE_BATCH='2.5': not an integer"),
        ("0", "EXAMPLE_BATCH='0': not an integer from 1 to 1000000"),
        ("-4", "EXAMPLE_BATCH='-4': not an integer from 1 to 1000000"),
        ("1000001", "EXAMPLE_BATCH='1000001': not an integer from 1 to 1000000"),
        ("9" * 400, f"EXAMPLE_BATCH='{'9' * 400}': not an integer from 1 to 1000000"),
    ],
)
def test_an_integer_out_of_its_bounds_is_refused_naming_it(
    monkeypatch: pytest.MonkeyPatch, value: str, message: str
) -> None:
    monkeypatch.setenv("EXAMPLE_BATCH", value)
    with pytest.raises(ConfigError) as refused:
        read_number("EXAMPLE_BATCH", 1000, minimum=1, maximum=1_000_000)
    assert str(refused.value) == message
    assert refused.value.__context__ is None or refused.value.__suppress_context__  # no int() traceback under it


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("30s", "EXAMPLE_WAIT_S='30s': not a number"),
        ("nan", "EXAMPLE_WAIT_S='nan': not a finite number"),
        ("inf", "EXAMPLE_WAIT_S='inf': not a finite number"),
        ("0", "EXAMPLE_WAIT_S='0': not a number above 0 and of at most 86400"),
        ("-1", "EXAMPLE_WAIT_S='-1': not a number above 0 and of at most 86400"),
        ("1e300", "EXAMPLE_WAIT_S='1e300': not a number above 0 and of at most 86400"),
    ],
)
def test_a_number_not_finite_or_out_of_its_bounds_is_refused_naming_it(
    monkeypatch: pytest.MonkeyPatch, value: str, message: str
) -> None:
    monkeypatch.setenv("EXAMPLE_WAIT_S", value)
    with pytest.raises(ConfigError) as refused:
        read_number("EXAMPLE_WAIT_S", 30.0, above=0, maximum=DAY_S)
    assert str(refused.value) == message


def test_a_number_unset_is_its_default_and_the_edges_are_taken(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("EXAMPLE_WAIT_S", raising=False)
    assert read_number("EXAMPLE_WAIT_S", 30.0, above=0, maximum=DAY_S) == 30.0
    for value, read in [("0.001", 0.001), ("86400", 86400.0), ("2", 2.0)]:
        monkeypatch.setenv("EXAMPLE_WAIT_S", value)
        taken = read_number("EXAMPLE_WAIT_S", 30.0, above=0, maximum=DAY_S)
        assert taken == read and isinstance(taken, float)
    monkeypatch.setenv("EXAMPLE_PORT", "0")
    assert read_number("EXAMPLE_PORT", 8000, minimum=0, maximum=65535) == 0
    monkeypatch.setenv("EXAMPLE_PORT", "65535")
    assert read_number("EXAMPLE_PORT", 8000, minimum=0, maximum=65535) == 65535


@pytest.mark.parametrize(("value", "seconds"), [("10s", 10.0), ("500ms", 0.5), ("0", 0.0), ("1d", 86400.0)])
def test_a_duration_postgresql_takes_up_to_a_day_is_read_as_written(
    monkeypatch: pytest.MonkeyPatch, value: str, seconds: float
) -> None:
    monkeypatch.setenv("EXAMPLE_LOCK_TIMEOUT", value)
    assert read_duration("EXAMPLE_LOCK_TIMEOUT", "10s") == value
    assert duration_s(value) == seconds


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("10 sec", "not a duration such as 5s, 500ms or 1min (0: no limit)"),
        ("-1s", "not a duration such as 5s, 500ms or 1min (0: no limit)"),
        ("10s'; DROP TABLE x; --", "not a duration such as 5s, 500ms or 1min (0: no limit)"),
        ("25h", "not a duration of at most 86400 s"),
        ("1e9", "not a duration such as 5s, 500ms or 1min (0: no limit)"),
    ],
)
def test_a_duration_postgresql_would_not_take_or_past_a_day_is_refused_naming_it(
    monkeypatch: pytest.MonkeyPatch, value: str, message: str
) -> None:
    monkeypatch.setenv("EXAMPLE_LOCK_TIMEOUT", value)
    with pytest.raises(ConfigError) as refused:
        read_duration("EXAMPLE_LOCK_TIMEOUT", "10s")
    assert str(refused.value) == f"EXAMPLE_LOCK_TIMEOUT={value!r}: {message}"


def test_the_consumer_runner_refuses_a_bad_batch_size_naming_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OUTBOX_BATCH_SIZE", raising=False)
    assert runner.batch_size() == 1000
    monkeypatch.setenv("OUTBOX_BATCH_SIZE", "0")
    with pytest.raises(ConfigError, match=r"^OUTBOX_BATCH_SIZE='0': not an integer from 1 to 1000000$"):
        runner.batch_size()


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("OUTBOX_METRICS_PORT", "70000", "OUTBOX_METRICS_PORT='70000': not an integer from 0 to 65535"),
        ("OUTBOX_MAX_BACKOFF_S", "nan", "OUTBOX_MAX_BACKOFF_S='nan': not a finite number"),
        ("OUTBOX_LOCK_TIMEOUT", "2d", "OUTBOX_LOCK_TIMEOUT='2d': not a duration of at most 86400 s"),
    ],
)
def test_the_consumer_runner_does_not_start_with_a_bad_value(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, message: str
) -> None:
    """Read when main() builds its arguments, before the module is loaded or anything connects."""
    monkeypatch.setenv(variable, value)
    monkeypatch.setattr(sys, "argv", ["outbox.runner", "apps.customer.consumers"])
    monkeypatch.setattr(runner, "serve", lambda *_, **__: pytest.fail("the consumer started"))
    with pytest.raises(ConfigError) as refused:
        runner.main()
    assert str(refused.value) == message


def test_the_metadata_timeout_is_refused_at_import_naming_it() -> None:
    """outbox.topics reads it when imported (tests replace the constant): a bad value stops that import."""
    env = {"OUTBOX_KAFKA_METADATA_TIMEOUT_S": "0", "PATH": "/usr/bin:/bin"}
    done = subprocess.run(
        [sys.executable, "-c", "import outbox.topics"], cwd=ROOT, env=env, capture_output=True, text=True, check=False
    )
    assert done.returncode == 1
    last = done.stderr.strip().splitlines()[-1]
    assert last == (
        "outbox.config.ConfigError: OUTBOX_KAFKA_METADATA_TIMEOUT_S='0': not a number above 0 and of at most 86400"
    )


def test_the_library_reads_its_variables_without_apps() -> None:
    """outbox/ stands alone: no module of it imports apps (its readers are its own)."""
    importers = sorted(
        str(path.relative_to(ROOT))
        for path in (ROOT / "outbox").rglob("*.py")
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.ImportFrom | ast.Import)
        and any(
            name.split(".")[0] == "apps"
            for name in ([node.module or ""] if isinstance(node, ast.ImportFrom) else [a.name for a in node.names])
        )
    )
    assert importers == []
