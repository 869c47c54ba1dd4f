"""An alert really fires on the stack's Prometheus, reaches Alertmanager, and resolves.

A long statement in the `postgres` database (nothing else runs long there) makes the seed's "query
running > 5 s" alert fire; once Alertmanager has it, the statement is cancelled and the alert resolves.
The stack's Prometheus scrapes and evaluates every 5 s (infra/monitoring.py), so this takes 15-20 s.
"""

from __future__ import annotations

import asyncio
import json
import time
import urllib.parse
import urllib.request
from collections.abc import Callable
from typing import Any

import asyncpg
import pytest

from infra import monitoring

pytestmark = pytest.mark.usefixtures("stack")

ALERT = "LongRunningQuery"
DATABASE = "postgres"
SLEEP_S = 40  # cancelled once the alert fired


def _get(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=5) as resp:
        return json.load(resp)


def _firing_in_prometheus() -> list[dict[str, Any]]:
    alerts = _get(f"http://127.0.0.1:{monitoring.PROMETHEUS_PORT}/api/v1/alerts")["data"]["alerts"]
    return [
        a
        for a in alerts
        if a["labels"]["alertname"] == ALERT and a["labels"].get("datname") == DATABASE and a["state"] == "firing"
    ]


def _in_alertmanager() -> list[dict[str, Any]]:
    query = urllib.parse.urlencode({"filter": f'alertname="{ALERT}"', "active": "true"})
    alerts = _get(f"http://127.0.0.1:{monitoring.ALERTMANAGER_PORT}/api/v2/alerts?{query}")
    return [a for a in alerts if a["labels"].get("datname") == DATABASE]


async def _until(check: Callable[[], list[dict[str, Any]]], *, present: bool, within: float) -> float:
    """Poll until ``check`` finds something (or nothing); seconds it took."""
    started = time.monotonic()
    while bool(await asyncio.to_thread(check)) != present:
        assert time.monotonic() - started < within, f"{check.__name__} still {'empty' if present else 'set'}"
        await asyncio.sleep(0.5)
    return time.monotonic() - started


async def test_a_long_query_fires_the_alert_and_its_end_resolves_it() -> None:
    await _until(_firing_in_prometheus, present=False, within=20)  # nothing left from an earlier run
    conn = await asyncpg.connect(monitoring.monitoring_dsn(DATABASE))
    try:
        slow = asyncio.create_task(conn.execute(f"SELECT pg_sleep({SLEEP_S}) /* test_alerts */"))
        fired_after = await _until(_firing_in_prometheus, present=True, within=25)
        assert fired_after > 5, "the alert fired before the query had run 5 s"
        [alert] = _firing_in_prometheus()
        assert alert["labels"]["severity"] == "critical"
        assert "has run for" in alert["annotations"]["summary"]
        await _until(_in_alertmanager, present=True, within=10)
        canceller = await asyncpg.connect(monitoring.monitoring_dsn(DATABASE))
        try:
            assert await canceller.fetchval("SELECT pg_cancel_backend($1)", conn.get_server_pid())
        finally:
            await canceller.close()
        with pytest.raises(asyncpg.QueryCanceledError):
            await slow
    finally:
        await conn.close()
    await _until(_firing_in_prometheus, present=False, within=20)
