"""Every environment variable the code reads by name is documented (docs/operations.md, "Settings").

A newcomer learns a setting from the docs, not by grepping for os.environ: a variable read under a
literal name in apps/, outbox/, infra/ or bench/ must appear in README.md, docs/operations.md or
docs/decisions.md. Names built at run time (``f"{service}_PORT"``) are documented as patterns there.
What a settings class reads (apps/common/settings.py: a service's settings.py, the pool's, Redis') is in
operations' table itself.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from apps.common.security_headers import SecurityHeaderSettings
from apps.common.settings import Bounds
from tests.support.settings import settings_classes

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
CODE = ("apps", "outbox", "infra", "bench")
DOCS = ("README.md", "docs/operations.md", "docs/decisions.md")
# apps/common/settings.py's readers take the variable's name first too: a settings field,
# env("ORDER_PRICE_MAX_AGE_S", 10.0), and read_env("PG_PORT", 5432).
READERS = {"getenv", "env", "read_env"}


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


def variables_read() -> dict[str, str]:
    found: dict[str, str] = {}
    for folder in CODE:
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


def test_every_variable_of_the_settings_modules_is_in_the_operations_table() -> None:
    page = (ROOT / "docs/operations.md").read_text()
    table = page.split("## Settings (environment variables)", 1)[1].split("\n## ", 1)[0]
    rows = "\n".join(line for line in table.splitlines() if line.startswith("|"))
    missing = sorted(f"{name} ({module})" for name, module in settings_variables().items() if f"`{name}`" not in rows)
    assert missing == []


def test_every_number_a_settings_class_reads_is_bounded_and_its_default_within() -> None:
    """A number with no bound takes a negative or a zero its use does not mean (a TTL of -1 s deletes the
    cache's key at once, a pool of -4): each declares the bound its meaning needs (apps/common/settings.py)."""
    unbounded, outside = [], []
    for cls in settings_classes():
        for name, bounds in cls.bounds().items():
            default = cls.variables()[name]
            if not isinstance(default, int | float):
                continue  # a string, or a number whose default is None (SECURITY_HSTS_MAX_AGE: checked below)
            if bounds == Bounds():
                unbounded.append(name)
            elif bounds.refusal(default) is not None:
                outside.append(f"{name}={default}")
    assert (unbounded, outside) == ([], [])
    assert SecurityHeaderSettings.bounds()["SECURITY_HSTS_MAX_AGE"] == Bounds(minimum=0)
