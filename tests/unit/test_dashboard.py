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
