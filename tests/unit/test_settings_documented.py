"""Every environment variable the code reads by name is documented (docs/operations.md, "Settings").

A newcomer learns a setting from the docs, not by grepping for os.environ: a variable read under a
literal name in apps/, outbox/, infra/ or bench/ must appear in README.md, docs/operations.md or
docs/decisions.md. Names built at run time (``f"{service}_PORT"``) are documented as patterns there.
What a settings class reads (apps/common/settings.py: a service's settings.py, the pool's, Redis') is in
operations' table itself.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import re
from pathlib import Path

import pytest

from apps.common.security_headers import SecurityHeaderSettings
from apps.common.settings import DAY_S, Bounds
from outbox.config import read_duration
from tests.support.settings import settings_classes

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
CODE = ("apps", "outbox", "infra", "bench")
DOCS = ("README.md", "docs/operations.md", "docs/decisions.md")
# apps/common/settings.py's readers take the variable's name first too: a settings field,
# env("ORDER_PRICE_MAX_AGE_S", 10.0), and read_env("PG_PORT", 5432); so do outbox/config.py's own,
# read_number("OUTBOX_BATCH_SIZE", 1000, ...) and read_duration("OUTBOX_LOCK_TIMEOUT", "10s").
READERS = {"getenv", "env", "read_env", "read_number", "read_duration"}
OUTBOX_READERS = {"read_number", "read_duration"}


def environment_name(node: ast.AST) -> ast.expr | None:
    """The name expression of ``os.environ.get(NAME)``, ``os.getenv(NAME)``, ``os.environ[NAME]`` or a reader."""
    if isinstance(node, ast.Subscript) and ast.unparse(node.value).endswith("environ"):
        return node.slice
    if not (isinstance(node, ast.Call) and node.args):
        return None
    func = node.func
    if isinstance(func, ast.Attribute) and func.attr == "get" and ast.unparse(func.value).endswith("environ"):
        return node.args[0]
    name = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else ""
    return node.args[0] if name in READERS else None


def variables_read(folders: tuple[str, ...] = CODE) -> dict[str, str]:
    found: dict[str, str] = {}
    for folder in folders:
        for path in sorted((ROOT / folder).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                name = environment_name(node)
                if isinstance(name, ast.Constant) and isinstance(name.value, str):
                    found.setdefault(name.value, f"{path.relative_to(ROOT)}:{name.lineno}")
    return found


def test_the_scan_finds_the_variables_it_should() -> None:
    found = variables_read()
    # One of each way of reading: environ.get, a reader helper, and names the docs long had.
    assert {"ORDER_PRICE_MAX_AGE_S", "LOG_FLUSH_MS", "PG_PORT", "REDIS_COOLDOWN_S"} <= found.keys()
    assert len(found) > 60


def test_every_variable_the_code_reads_is_documented() -> None:
    docs = "\n".join((ROOT / doc).read_text() for doc in DOCS)
    missing = sorted(
        f"{name} ({where})" for name, where in variables_read().items() if not re.search(rf"\b{name}\b", docs)
    )
    assert missing == []


def settings_variables() -> dict[str, str]:
    """Each variable a Settings class under apps/ reads, with the module that declares it."""
    return {name: cls.__module__ for cls in settings_classes() for name in cls.variables()}


def test_the_settings_modules_are_found() -> None:
    found = settings_variables()
    assert {"apps.order.settings", "apps.payment.settings", "apps.checkout.settings"} <= set(found.values())
    assert {"apps.common.db", "apps.common.redis_store"} <= set(found.values())
    assert {"ORDER_PRICE_MAX_AGE_S", "PAYMENT_WORKER_LEASE_S", "RETURNS_WINDOW_DAYS", "DB_POOL_SIZE"} <= found.keys()


def settings_rows() -> str:
    """The rows of docs/operations.md's Settings table."""
    page = (ROOT / "docs/operations.md").read_text()
    table = page.split("## Settings (environment variables)", 1)[1].split("\n## ", 1)[0]
    return "\n".join(line for line in table.splitlines() if line.startswith("|"))


def test_every_variable_of_the_settings_modules_is_in_the_operations_table() -> None:
    rows = settings_rows()
    missing = sorted(f"{name} ({module})" for name, module in settings_variables().items() if f"`{name}`" not in rows)
    assert missing == []


def test_every_number_a_settings_class_reads_is_bounded_both_ways_and_its_default_within() -> None:
    """A number with no bound takes a negative or a zero its use does not mean (a TTL of -1 s deletes the
    cache's key at once, a pool of -4), and one with no maximum a size its use cannot hold (1e300 hours: an
    OverflowError at the first timedelta): each declares the bounds its meaning needs (apps/common/settings.py)."""
    no_lower, no_maximum, outside = [], [], []
    for cls in settings_classes():
        for name, bounds in cls.bounds().items():
            default = cls.variables()[name]
            if not isinstance(default, int | float):
                continue  # a string, or a number whose default is None (SECURITY_HSTS_MAX_AGE: checked below)
            if bounds.minimum is None and bounds.above is None:
                no_lower.append(name)
            if bounds.maximum is None:
                no_maximum.append(name)
            if bounds.refusal(default) is not None:
                outside.append(f"{name}={default}")
    assert (no_lower, no_maximum, outside) == ([], [], [])
    assert SecurityHeaderSettings.bounds()["SECURITY_HSTS_MAX_AGE"] == Bounds(minimum=0, maximum=2**31)


# A variable's unit, from the end of its name, in seconds.
UNIT_S = {"_MS": 0.001, "_S": 1.0, "_MINUTES": 60.0, "_HOURS": 3600.0, "_DAYS": 86400.0}


def test_a_wait_is_at_most_a_day_and_a_lifetime_at_most_ten_years() -> None:
    """A timeout, interval, lease, delay or threshold (``_MS``, ``_S``, ``_MINUTES``) means nothing past a day
    (DAY_S); what is kept (``_HOURS``, ``_DAYS``: a cart, a return, the access log) past ten years."""
    longer = []
    for cls in settings_classes():
        for name, bounds in cls.bounds().items():
            unit = next((suffix for suffix in UNIT_S if name.endswith(suffix)), None)
            if unit is None or bounds.maximum is None:
                continue  # no unit in its name (a size, a port, a share), or a string
            longest = DAY_S if unit in ("_MS", "_S", "_MINUTES") else 3650 * DAY_S
            if bounds.maximum * UNIT_S[unit] > longest:
                longer.append(f"{name} <= {bounds.maximum:g}")
    assert longer == []


def outbox_maxima() -> dict[str, str]:
    """Each number or duration outbox/ reads with its own readers (outbox/config.py), with its maximum as the
    docs give it: a literal, a module's constant (``maximum=DAY_S``), or read_duration's default."""
    found: dict[str, str] = {}
    for path in sorted((ROOT / "outbox").rglob("*.py")):
        module = ".".join(path.relative_to(ROOT).with_suffix("").parts)
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in OUTBOX_READERS):
                continue
            limit = next((each.value for each in node.keywords if each.arg in ("maximum", "maximum_s")), None)
            if limit is None:  # read_duration's default
                value = inspect.signature(read_duration).parameters["maximum_s"].default
            elif isinstance(limit, ast.Name):  # a module's constant: maximum=DAY_S
                value = getattr(importlib.import_module(module), limit.id)
            else:
                value = ast.literal_eval(limit)
            found[ast.literal_eval(node.args[0])] = str(value)
    return found


def test_every_outbox_variable_is_in_the_operations_table_with_its_maximum() -> None:
    """The library's own variables (outbox/, which reads no apps/ settings class) are listed as theirs are;
    each number or duration with its maximum, in the row's words after its name (up to the next variable)."""
    rows = settings_rows()
    read = variables_read(("outbox",))
    assert {
        "OUTBOX_BATCH_SIZE",
        "OUTBOX_LOCK_TIMEOUT",
        "OUTBOX_KAFKA_METADATA_TIMEOUT_S",
        "OUTBOX_CONFIG",
    } <= read.keys()
    missing = sorted(name for name in read if name.startswith("OUTBOX_") and f"`{name}`" not in rows)
    maxima = outbox_maxima()
    assert {"OUTBOX_BATCH_SIZE", "OUTBOX_METRICS_PORT", "OUTBOX_MAX_BACKOFF_S", "OUTBOX_LOCK_TIMEOUT"} <= maxima.keys()
    undocumented = sorted(
        f"{name} <= {maximum}"
        for name, maximum in maxima.items()
        if maximum not in rows.split(f"`{name}`", 1)[-1].split("`OUTBOX_", 1)[0]
    )
    assert (missing, undocumented) == ([], [])
