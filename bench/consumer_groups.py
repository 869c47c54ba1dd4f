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

from bench.cpu import TICKS, stat_fields
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
from infra.paths import PIDS
from infra.postgres import psql_admin
from tests.support.http import service_url

GROUPS = {
    # group: (consumer component, metrics port, database)
    "customer-stats": ("customer-consumer", 8102, "customer_db"),
    "analytics": ("analytics-consumer", 8108, "analytics_db"),
    "returns": ("returns-consumer", 8107, "return_db"),
    "order-saga": ("order-consumer", 8104, "order_db"),
    "warehouse-reservations": ("warehouse-consumer", 8106, "warehouse_db"),
}
OTHERS = ("kafka", "connect", "postgres")


def proc_cpu(pid: int) -> float:
    try:
        f = stat_fields(Path(f"/proc/{pid}/stat").read_text())
    except OSError:
        return 0.0
    return (int(f[11]) + int(f[12]) + int(f[13]) + int(f[14])) / TICKS


def tree_cpu(root: int) -> float:
    """A process and its live descendants (the postmaster's backends; a JVM is one process)."""
    children: dict[int, list[int]] = {}
    for e in Path("/proc").iterdir():
        if e.name.isdigit():
            try:
                ppid = int(stat_fields((e / "stat").read_text())[1])
            except OSError:
                continue
            children.setdefault(ppid, []).append(int(e.name))
    total, stack = 0.0, [root]
    while stack:
        p = stack.pop()
        total += proc_cpu(p)
        stack.extend(children.get(p, []))
    return total


def pid_of(component: str) -> int:
    return int((PIDS / f"{component}.pid").read_text().split()[0])


def metric_values(port: int, group: str) -> dict[str, float]:
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    out = {"batches": 0.0, "applied": 0.0, "ignored": 0.0}
    for line in text.splitlines():
        if line.startswith(f'outbox_consumer_batches_total{{group="{group}"}}'):
            out["batches"] = float(line.split()[-1])
        elif line.startswith("outbox_consumer_events_total") and f'group="{group}"' in line:
            for outcome in ("applied", "ignored"):
                if f'outcome="{outcome}"' in line:
                    out[outcome] += float(line.split()[-1])
    return out


def snapshot() -> dict[str, float]:
    snap: dict[str, float] = {"t": time.monotonic()}
    rows = psql_admin(
        "SELECT application_name, pid FROM pg_stat_activity WHERE application_name LIKE 'consumer:%'"
        " UNION ALL SELECT 'walsender', pid FROM pg_stat_activity WHERE backend_type = 'walsender'"
    )
    backends: dict[str, float] = {}
    for row in rows.splitlines():
        name, pid = row.split("|")
        backends[name] = backends.get(name, 0.0) + proc_cpu(int(pid))
    for group, (component, port, _db) in GROUPS.items():
        snap[f"{group}.proc"] = tree_cpu(pid_of(component))
        snap[f"{group}.pg"] = backends.get(f"consumer:{group}", 0.0)
        for k, v in metric_values(port, group).items():
            snap[f"{group}.{k}"] = v
    snap["walsenders"] = backends.get("walsender", 0.0)
    for c in OTHERS:
        snap[c] = tree_cpu(pid_of(c))
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
    pids = {g: pid_of(c) for g, (c, _, _) in GROUPS.items()}
    await asyncio.sleep(2)
    before = snapshot()
    result = await run_open_loop(f"{service_url('order')}/api/orders", bodies, args.rate, tokens=tokens)
    placed = await commit_times("order", PLACED_SQL, customers)
    stats = await wait_for_stats(list(placed), len(placed))
    await asyncio.sleep(1.5)  # the analytics/returns groups finish their last batch
    after = snapshot()
    confirmed = await commit_times("order", CONFIRMED_SQL, list(placed))
    per = {k: (after[k] - before[k]) for k in after}
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
        "restarted": [g for g, p in pids.items() if pid_of(GROUPS[g][0]) != p],
    }
    for group in GROUPS:
        db = GROUPS[group][2]
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
