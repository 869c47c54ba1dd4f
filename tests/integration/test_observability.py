"""The stack's Prometheus scrapes every process of ours and the exporters, and has what the dashboard and
the alerts read: connector states, every Debezium slot's lag, pool metrics, PostgreSQL's statistics."""

from __future__ import annotations

import json
import time
import urllib.parse
import urllib.request
from typing import Any

import pytest

from infra import connectors, monitoring, stack
from tests.unit.test_dashboard import queries

pytestmark = pytest.mark.usefixtures("stack")

PROMETHEUS = f"http://127.0.0.1:{monitoring.PROMETHEUS_PORT}"


def _get(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=10) as resp:
        return json.load(resp) if "json" in resp.headers.get("Content-Type", "") else resp.read().decode()


def _query(expr: str) -> list[dict[str, Any]]:
    answer = _get(f"{PROMETHEUS}/api/v1/query?{urllib.parse.urlencode({'query': expr})}")
    assert answer["status"] == "success", (expr, answer)
    return list(answer["data"]["result"])


def _labels(expr: str, label: str) -> set[str]:
    return {series["metric"][label] for series in _query(expr)}


def test_prometheus_scrapes_every_process_and_exporter() -> None:
    targets = _get(f"{PROMETHEUS}/api/v1/targets")["data"]["activeTargets"]
    components = {t["labels"].get("component") for t in targets}
    expected = {p.name for p in stack.app_processes() if p.url} - monitoring.NOT_SCRAPED
    assert expected <= components
    deadline = time.monotonic() + 15
    while set(_labels('up{job=~"postgres-exporter|stack-exporter|prometheus"} == 1', "job")) != {
        "postgres-exporter",
        "stack-exporter",
        "prometheus",
    }:
        assert time.monotonic() < deadline, _query('up{job=~".*exporter|prometheus"}')
        time.sleep(1)


def test_connectors_and_every_debezium_slot_are_reported() -> None:
    expected = {connectors.load(path, {})[0] for path in connectors.CONNECTORS.glob("*.json")}
    assert _labels("commerce_connector_running == 1", "connector") == expected
    slots = _labels("commerce_replication_slot_lag_seconds", "slot")
    assert connectors.slot_names() <= slots
    assert connectors.slot_names() <= _labels("commerce_replication_slot_retained_wal_bytes", "slot")
    assert not {slot for _, slot in connectors.RETIRED.values()} & slots, "a retired connector's slot keeps WAL"
    assert _query("commerce_pg_data_fs_size_bytes > 0")
    assert _query('commerce_exporter_source_up{source="order_db"} == 1')


def test_every_dashboard_query_runs_and_the_seeds_database_panels_have_data() -> None:
    for expr in queries():
        _query(expr)  # a query Prometheus refuses fails here
    for has_data in ("pg_connection_usage_ratio", 'pg_stat_database_blks_hit{datname="order_db"}'):
        assert _query(has_data), has_data


def test_a_service_reports_its_pool() -> None:
    api = next(p for p in stack.app_processes() if p.name == "catalog-api")
    _get(f"{api.url}/ready")  # at least one checkout
    metrics = _get(f"{api.url}/metrics")
    for name in ("checked_out", "idle", "overflow", "max"):
        assert f'commerce_db_pool_{name}{{service="catalog"}}' in metrics
    assert 'commerce_db_pool_wait_seconds_count{service="catalog"}' in metrics


def test_the_scheduled_jobs_report_in_prometheus() -> None:
    from infra.jobs import JOBS

    deadline = time.monotonic() + 15
    while _labels("commerce_job_runs_total", "task") != set(JOBS):
        assert time.monotonic() < deadline, _query("commerce_job_runs_total")
        time.sleep(1)
