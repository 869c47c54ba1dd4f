"""Every migration passes squawk (infra/migration_lint.py), which refuses the patterns that lock or rewrite
a live table unless a waiver gives a reason."""

from __future__ import annotations

from pathlib import Path

import pytest

from infra import migration_lint
from infra.migration_lint import Finding, Waiver, judge, load_waivers, squawk

TIMEOUT = "SET lock_timeout = '5s';\n"
DANGEROUS = {
    "require-concurrent-index-creation": "CREATE INDEX idx_orders_x ON orders (x);",
    "changing-column-type": "ALTER TABLE orders ALTER COLUMN total TYPE numeric(14, 2);",
    "adding-required-field": "ALTER TABLE orders ADD COLUMN x integer NOT NULL;",
    "adding-not-nullable-field": "ALTER TABLE orders ALTER COLUMN x SET NOT NULL;",
    "constraint-missing-not-valid": "ALTER TABLE orders ADD CONSTRAINT ck_x CHECK (x > 0);",
    "ban-drop-column": "ALTER TABLE orders DROP COLUMN x;",
}
SAFE = [
    "CREATE INDEX CONCURRENTLY idx_orders_x ON orders (x);",
    "ALTER TABLE orders ADD COLUMN x integer;",
    "ALTER TABLE orders ADD CONSTRAINT ck_x_not_null CHECK (x IS NOT NULL) NOT VALID;",
    "ALTER TABLE orders VALIDATE CONSTRAINT ck_x_not_null;",
]


def test_every_migration_of_every_service_passes(capsys: pytest.CaptureFixture[str]) -> None:
    code = migration_lint.run([])
    out = capsys.readouterr().out
    assert code == 0, out
    assert " 0 refused, 0 unused waivers" in out


@pytest.mark.parametrize(("rule", "sql"), DANGEROUS.items())
def test_a_dangerous_pattern_is_found(tmp_path: Path, rule: str, sql: str) -> None:
    path = tmp_path / "m.sql"
    path.write_text(TIMEOUT + sql + "\n")
    assert rule in {str(item["rule_name"]) for item in squawk([path])}


def test_a_blocking_lock_without_lock_timeout_is_found(tmp_path: Path) -> None:
    path = tmp_path / "m.sql"
    path.write_text("ALTER TABLE orders ALTER COLUMN status SET DEFAULT 'pending';\n")
    assert "require-lock-timeout" in {str(item["rule_name"]) for item in squawk([path])}


def test_the_expand_contract_steps_pass(tmp_path: Path) -> None:
    path = tmp_path / "m.sql"
    path.write_text(TIMEOUT + "\n".join(SAFE) + "\n")
    assert squawk([path]) == []


def test_a_waiver_covers_its_finding_and_an_unused_one_is_reported() -> None:
    findings = [
        Finding("order_0004", "ban-drop-column", 3, "..."),
        Finding("order_0005", "changing-column-type", 4, ""),
    ]
    waivers = [Waiver("order_0004", "ban-drop-column", "no code reads it"), Waiver("order_0009", "ban-drop-table", "x")]
    refused, unused = judge(findings, waivers)
    assert refused == [findings[1]]
    assert unused == [waivers[1]]


def test_a_waiver_without_a_reason_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "waivers.toml"
    path.write_text('[[waiver]]\nrevision = "order_0004"\nrule = "ban-drop-column"\nreason = " "\n')
    with pytest.raises(SystemExit, match="gives no reason"):
        load_waivers(path)
