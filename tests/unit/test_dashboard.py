"""The Grafana dashboard (infra/grafana/commerce-outbox.json) has the seed's panels, and every query parses."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import yaml  # type: ignore[import-untyped]  # PyYAML ships no types; types-PyYAML is not locked

from infra.paths import REPO

DASHBOARD = REPO / "infra" / "grafana" / "commerce-outbox.json"
SEED_PANELS = ("QPS", "Latency", "Error rate", "Pool utilisation", "Cache hit ratio", "Lock contention")


def queries() -> list[str]:
    panels = json.loads(DASHBOARD.read_text())["panels"]
    return [target["expr"] for panel in panels for target in panel.get("targets", [])]


def test_the_dashboard_has_the_seeds_panels() -> None:
    titles = [panel["title"] for panel in json.loads(DASHBOARD.read_text())["panels"] if panel["type"] != "row"]
    for wanted in SEED_PANELS:
        assert any(title.startswith(wanted) for title in titles), wanted


def test_every_panel_query_is_valid_promql(tmp_path: Path) -> None:
    """promtool parses each query as a recording rule's expression."""
    promtool = shutil.which("promtool")
    assert promtool is not None, "promtool is missing: `just bootstrap` installs Debian's prometheus package"
    rules = [{"record": f"dashboard:query_{n}", "expr": expr} for n, expr in enumerate(queries())]
    path = tmp_path / "dashboard-rules.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    result = subprocess.run([promtool, "check", "rules", str(path)], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"{len(rules)} rules found" in result.stdout


def lock_wait_queries() -> list[str]:
    """The two lock-wait panels' queries (backends waiting, longest wait): the exporter's pg_lock_waits_*
    query returns rows only for a database where something waits."""
    found = [expr for expr in queries() if "pg_lock_waits_" in expr]
    assert len(found) == 2, found
    return found


def test_the_lock_wait_panels_show_zero_for_a_database_where_nothing_waits(tmp_path: Path) -> None:
    """Evaluated by promtool: order_db has 2 backends waiting (the longest 1.5 s), catalog_db none. Each panel
    answers order_db's own series and a 0 for catalog_db (not "No data"), and no second, zero, order_db."""
    promtool = shutil.which("promtool")
    assert promtool is not None, "promtool is missing: `just bootstrap` installs Debian's prometheus package"
    labels = 'instance="127.0.0.1:9187", job="postgres-exporter"'
    rules = [{"record": f"dashboard:lock_wait_{n}", "expr": expr} for n, expr in enumerate(lock_wait_queries())]
    (tmp_path / "rules.yml").write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    waiting = {"pg_lock_waits_waiting": "2", "pg_lock_waits_max_wait_seconds": "1.5"}
    series = [
        {"series": f'pg_stat_database_numbackends{{datname="{db}", datid="{n}", {labels}}}', "values": "5x10"}
        for n, db in enumerate(("catalog_db", "order_db"))
    ] + [{"series": f'{metric}{{datname="order_db", {labels}}}', "values": f"{v}x10"} for metric, v in waiting.items()]
    cases = []
    for n, expr in enumerate(lock_wait_queries()):
        value = next(v for metric, v in waiting.items() if metric in expr)
        record = f"dashboard:lock_wait_{n}"
        cases.append(
            {
                "expr": record,
                "eval_time": "5m",
                "exp_samples": [
                    {"labels": f'{record}{{datname="order_db", {labels}}}', "value": float(value)},
                    {"labels": f'{record}{{datname="catalog_db", datid="0", {labels}}}', "value": 0},
                ],
            }
        )
    test = {"interval": "1m", "input_series": series, "promql_expr_test": cases}
    (tmp_path / "test.yml").write_text(yaml.safe_dump({"rule_files": ["rules.yml"], "tests": [test]}))
    result = subprocess.run(
        [promtool, "test", "rules", str(tmp_path / "test.yml")], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
