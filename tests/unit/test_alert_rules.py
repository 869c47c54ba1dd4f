"""The alert rules are valid and each one is unit-tested with promtool (infra/prometheus/tests/)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any, cast

import yaml  # type: ignore[import-untyped]  # PyYAML ships no types; types-PyYAML is not locked

from infra import monitoring

PROMTOOL = shutil.which("promtool")
RULE_FILES = sorted(monitoring.RULES.glob("*.yml"))
TEST_FILES = sorted((monitoring.PROMETHEUS_DIR / "tests").glob("*.yml"))


def _promtool(*args: str) -> subprocess.CompletedProcess[str]:
    assert PROMTOOL is not None, "promtool is missing: `just bootstrap` installs Debian's prometheus package"
    return subprocess.run([PROMTOOL, *args], capture_output=True, text=True, timeout=60, check=False)


def test_rules_pass_promtool_check() -> None:
    result = _promtool("check", "rules", *map(str, RULE_FILES))
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_rule_passes_its_promtool_unit_tests() -> None:
    result = _promtool("test", "rules", *map(str, TEST_FILES))
    assert result.returncode == 0, result.stdout + result.stderr


def _alert_names(paths: list[Path], key: str) -> set[str]:
    names: set[str] = set()
    for path in paths:
        document = yaml.safe_load(path.read_text())
        if key == "alert":
            names |= {rule["alert"] for group in document["groups"] for rule in group["rules"] if "alert" in rule}
        else:
            names |= {case["alertname"] for test in document["tests"] for case in test.get("alert_rule_test", [])}
    return names


def test_every_alert_has_a_unit_test() -> None:
    rules, tested = _alert_names(RULE_FILES, "alert"), _alert_names(TEST_FILES, "test")
    assert rules, "no alert rules found"
    assert rules - tested == set()


def test_every_alert_says_how_bad_it_is() -> None:
    for path in RULE_FILES:
        for group in yaml.safe_load(path.read_text())["groups"]:
            for rule in group["rules"]:
                assert rule["labels"]["severity"] in {"warning", "critical"}, rule["alert"]
                assert rule["annotations"]["summary"], rule["alert"]


# Words of PromQL that read like metric names; `up` is written by Prometheus itself, so it is there (0) when the
# scrape fails.
_NOT_SERIES = {"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and", "or", "unless", "offset"}


def instant_selectors(expr: str) -> list[str]:
    """The metric names an expression reads as instant vectors (not followed by a range ``[...]``)."""
    expr = re.sub(r'"[^"]*"', '""', expr)  # strings: label_replace's arguments, matcher values
    expr = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", expr)
    expr = re.sub(r"\{[^}]*\}", "", expr)  # label matchers
    found = []
    for match in re.finditer(r"(?<![\w.])([a-zA-Z_:][a-zA-Z0-9_:]*)\b(?!\s*\()", expr):
        name, rest = match.group(1), expr[match.end() :].lstrip()
        if name in _NOT_SERIES or name == "up" or re.fullmatch(r"[0-9]*[smhdwy]|e[0-9]*", name):
            continue
        if not rest.startswith("["):
            found.append(name)
    return found


def test_instant_selectors_are_found() -> None:
    expr = 'label_replace(last_over_time(a_b{x="y"}[1m]), "s", "$1", "slot", "(.+)") > 30 or c_d > 1 and up == 0'
    assert instant_selectors(expr) == ["c_d"]
    assert instant_selectors("sum by (group) (deriv(e_f[5m])) > 0 and time() - g_h > 3 * 3600") == ["g_h"]


def test_alerts_with_a_for_survive_a_failed_scrape() -> None:
    # A failed scrape marks its series stale, an instant selector then returns nothing for that evaluation,
    # and the alert's `for` starts again: under a benchmark the stack exporter failed 3 scrapes in 10 minutes
    # and DiskUsageHigh (87 %) fired for one evaluation, then was pending again (2026-11-27). A rule that
    # waits reads each series through a range (last_over_time(x[1m]), deriv, increase).
    for path in RULE_FILES:
        for group in yaml.safe_load(path.read_text())["groups"]:
            for rule in group["rules"]:
                if "alert" in rule and "for" in rule:
                    assert instant_selectors(rule["expr"]) == [], (rule["alert"], rule["expr"])


def test_generated_prometheus_config_passes_promtool(tmp_path: Path) -> None:
    class Target:
        def __init__(self, name: str, url: str) -> None:
            self.name, self.url = name, url

    targets = [
        Target("order-api", "http://127.0.0.1:8004"),
        Target("order-consumer", "http://127.0.0.1:8104/metrics"),
        Target("order-sweeper", "http://127.0.0.1:8204"),
        Target("payment-sandbox", "http://127.0.0.1:8009"),
    ]
    config = monitoring.scrape_config(targets)
    path = tmp_path / "prometheus.yml"
    path.write_text(json.dumps(config))
    result = _promtool("check", "config", str(path))
    assert result.returncode == 0, result.stdout + result.stderr
    scrape_configs = cast("list[dict[str, Any]]", config["scrape_configs"])
    jobs = {job["job_name"]: job["static_configs"] for job in scrape_configs}
    assert jobs["api"] == [{"targets": ["127.0.0.1:8004"], "labels": {"component": "order-api"}}]
    assert jobs["consumer"] == [{"targets": ["127.0.0.1:8104"], "labels": {"component": "order-consumer"}}]
    assert jobs["worker"] == [{"targets": ["127.0.0.1:8204"], "labels": {"component": "order-sweeper"}}]
    assert {"postgres-exporter", "stack-exporter", "prometheus"} <= set(jobs)
    intervals = {job["job_name"]: job.get("scrape_interval") for job in scrape_configs}
    assert intervals["api"] == intervals["consumer"] == intervals["worker"] == monitoring.PROCESS_SCRAPE_INTERVAL
    assert intervals["postgres-exporter"] is None  # the global, shorter interval: the long-query alert reads it


def test_alertmanager_config_passes_amtool() -> None:
    amtool = shutil.which("amtool")
    assert amtool is not None, "amtool is missing: `just bootstrap` installs prometheus-alertmanager"
    path = monitoring.PROMETHEUS_DIR / "alertmanager.yml"
    result = subprocess.run([amtool, "check-config", str(path)], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
