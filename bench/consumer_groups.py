"""What each consumer group costs per order under a steady open-loop order load, its database backend included.

    uv run --frozen python -m bench.consumer_groups --rate 50 --seconds 30 --label A

bench/cpu.py counts a group's PostgreSQL backend under "postgres"; here each group's consumer process and its
backend (pg_stat_activity's application_name ``consumer:<group>``) are read from /proc separately, with its
batches (the process's /metrics) and its database's commits (pg_stat_database) per order, the walsenders,
Kafka, Connect and PostgreSQL as a whole, WAL flushes, and the delays from PostgreSQL's commit timestamps:
placed-to-confirmed (the saga) and commit-to-stats (the goal's). Per order means per order placed in the window
by anyone (order_status_history), as the consumers work for all of them. One JSON line (also appended to
``--out`` if given). A consumer restarted during the run is listed in "restarted" (its figures are then wrong).
Compare arms within one run where you can: customer-stats, analytics and returns handle the same events.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
import urllib.request
from pathlib import Path

from apps.common.topology import BY_NAME
from bench.cpu import CpuSnapshot, cpu_accounting, cpu_snapshot
from bench.open_loop import run_open_loop
from bench.orders import (
    CONFIRMED_SQL,
    PLACED_SQL,
    commit_times,
    customer_token,
    order_body,
    percentile,
    set_up,
    wait_for_stats,
)
from infra.postgres import psql_admin
from infra.stack import app_processes
from tests.support.http import service_url

# The groups downstream of an order, by the service whose consumer runs them.
GROUPS = {
    "customer-stats": "customer",
    "analytics": "analytics",
    "returns": "returns",
    "order-saga": "order",
    "warehouse-reservations": "warehouse",
}
OTHERS = ("kafka", "connect", "postgres")


def consumer_of(group: str) -> str:
    return f"{GROUPS[group]}-consumer"


def metrics_url(component: str) -> str:
    """The consumer's /metrics, as the stack runs it (infra/stack.py app_processes)."""
    url = next(p.url for p in app_processes() if p.name == component)
    assert url is not None, component
    return url


def backend_pids() -> dict[str, list[int]]:
    """The PostgreSQL backends of each consumer group (application_name consumer:<group>) and the walsenders."""
    rows = psql_admin(
        "SELECT application_name, pid FROM pg_stat_activity WHERE application_name LIKE 'consumer:%'"
        " UNION ALL SELECT 'walsender', pid FROM pg_stat_activity WHERE backend_type = 'walsender'"
    )
    found: dict[str, list[int]] = {}
    for row in rows.splitlines():
        name, pid = row.split("|")
        found.setdefault(name, []).append(int(pid))
    return found


def pids_cpu(pids: list[int], after: CpuSnapshot, before: CpuSnapshot) -> float:
    """CPU seconds these processes used between two snapshots (one that started in between: all of it)."""
    return sum(
        after[p].cpu - (before[p].cpu if p in before and before[p].started == after[p].started else 0.0)
        for p in pids
        if p in after
    )


def metric_values(url: str, group: str) -> dict[str, float]:
    text = urllib.request.urlopen(url, timeout=5).read().decode()
    out = {"batches": 0.0, "applied": 0.0, "ignored": 0.0}
    for line in text.splitlines():
        if line.startswith(f'outbox_consumer_batches_total{{group="{group}"}}'):
            out["batches"] = float(line.split()[-1])
        elif line.startswith("outbox_consumer_events_total") and f'group="{group}"' in line:
            for outcome in ("applied", "ignored"):
                if f'outcome="{outcome}"' in line:
                    out[outcome] += float(line.split()[-1])
    return out


def counters(urls: dict[str, str]) -> dict[str, float]:
    """Each group's batches and events, each database's commits, orders placed so far, and the WAL's."""
    snap: dict[str, float] = {}
    for group, url in urls.items():
        for k, v in metric_values(url, group).items():
            snap[f"{group}.{k}"] = v
    for row in psql_admin("SELECT datname, xact_commit FROM pg_stat_database WHERE datname LIKE '%_db'").splitlines():
        db, n = row.split("|")
        snap[f"commits.{db}"] = float(n)
    snap["orders_all"] = float(
        psql_admin("SELECT count(*) FROM order_status_history WHERE status_from IS NULL", "order_db").strip()
    )
    wal = psql_admin("SELECT wal_sync, wal_write, wal_records FROM pg_stat_wal").strip().split("|")
    snap["wal_sync"], snap["wal_write"], snap["wal_records"] = (float(x) for x in wal)
    return snap


async def measure(args: argparse.Namespace) -> dict[str, object]:
    count = int(args.rate * args.seconds)
    product_a, product_b, customers = await set_up(count, register=False)
    bodies = [order_body(c, product_a, product_b) for c in customers]
    tokens = [customer_token(c) for c in customers]
    urls = {group: metrics_url(consumer_of(group)) for group in GROUPS}
    await asyncio.sleep(2)
    backends = backend_pids()
    cpu_before, before = cpu_snapshot(), counters(urls)
    result = await run_open_loop(f"{service_url('order')}/api/orders", bodies, args.rate, tokens=tokens)
    placed = await commit_times("order", PLACED_SQL, customers)
    stats = await wait_for_stats(list(placed), len(placed))
    await asyncio.sleep(1.5)  # the analytics/returns groups finish their last batch
    cpu_after, after = cpu_snapshot(), counters(urls)
    confirmed = await commit_times("order", CONFIRMED_SQL, list(placed))
    by_component, restarted = cpu_accounting(cpu_after, cpu_before)
    per = {k: (after[k] - before[k]) for k in after}
    for group in GROUPS:
        per[f"{group}.proc"] = by_component.get(consumer_of(group), 0.0)
        per[f"{group}.pg"] = pids_cpu(backends.get(f"consumer:{group}", []), cpu_after, cpu_before)
    per["walsenders"] = pids_cpu(backends.get("walsender", []), cpu_after, cpu_before)
    for c in OTHERS:
        per[c] = by_component.get(c, 0.0)
    n = int(per["orders_all"])  # everyone's orders in the window: the consumers worked for all of them
    out: dict[str, object] = {
        "label": args.label,
        "rate": args.rate,
        "seconds": args.seconds,
        "orders": len(placed),
        "orders_all": n,
        "counted": len(stats),
        "errors": result.errors,
        "at": time.strftime("%H:%M:%S"),
        "restarted": sorted(restarted),
    }
    for group in GROUPS:
        db = BY_NAME[GROUPS[group]].database
        b = per[f"{group}.batches"]
        out[group] = {
            "proc_ms": round(per[f"{group}.proc"] * 1000 / n, 3),
            "pg_ms": round(per[f"{group}.pg"] * 1000 / n, 3),
            "sum_ms": round((per[f"{group}.proc"] + per[f"{group}.pg"]) * 1000 / n, 3),
            "batches_per_order": round(b / n, 3),
            "events_per_batch": round((per[f"{group}.applied"] + per[f"{group}.ignored"]) / max(b, 1), 2),
            "db_commits_per_order": round(per[f"commits.{db}"] / n, 3),
        }
    for k in ("walsenders", *OTHERS):
        out[f"{k}_ms"] = round(per[k] * 1000 / n, 3)
    out["wal_sync_per_order"] = round(per["wal_sync"] / n, 3)
    p2c = [(confirmed[c] - placed[c]) * 1000 for c in confirmed if c in placed]
    c2s = [(stats[c] - confirmed[c]) * 1000 for c in stats if c in confirmed]
    lat = result.latencies_ms
    out["http_p99"] = round(percentile(lat, 0.99), 1)
    out["p2c_p50"], out["p2c_p99"] = round(percentile(p2c, 0.5), 1), round(percentile(p2c, 0.99), 1)
    out["c2s_p50"], out["c2s_p99"] = round(percentile(c2s, 0.5), 1), round(percentile(c2s, 0.99), 1)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rate", type=float, default=50, help="orders per second")
    parser.add_argument("--seconds", type=float, default=30)
    parser.add_argument("--label", default="", help="the arm's name, copied into the line")
    parser.add_argument("--out", help="also append the JSON line to this file")
    args = parser.parse_args()
    line = json.dumps(asyncio.run(measure(args)))
    print(line, flush=True)
    if args.out:
        with Path(args.out).open("a") as handle:
            handle.write(line + "\n")


if __name__ == "__main__":
    main()
