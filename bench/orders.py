"""Load benchmark of the write path: POST /api/orders under wrk, next to pgbench doing the same inserts.

    just bench [--seconds 20] [--connections 32]

1. Registers one customer per order to come (so each customer_stats row is written by exactly one order's
   event) and two products, through the services' own APIs.
2. wrk (Debian's package, Lua script bench/orders.lua) places orders for `--seconds`.
3. Waits until the customer-stats consumer has applied every one of them, then reads the end-to-end delay
   from one clock: PostgreSQL's commit timestamp (track_commit_timestamp) of each order's transaction in
   order_db and of the customer_stats transaction that applied it in customer_db (same server, same clock).
4. pgbench runs bench/order_tx.sql (the same inserts in one transaction) with 8 clients for `--seconds`.
The last line is JSON: {orders_per_s, pgbench_tps, ratio, e2e_p50_ms, e2e_p99_ms}.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import statistics
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

import asyncpg
import httpx

from apps.common.topology import BY_NAME, database_url, pg_host, pg_port
from tests.support.http import create_product, service_url

HERE = Path(__file__).resolve().parent
PGBENCH = "/usr/lib/postgresql/15/bin/pgbench"


async def register_customers(count: int) -> list[str]:
    limits = httpx.Limits(max_connections=16)
    async with httpx.AsyncClient(base_url=service_url("customer"), limits=limits, timeout=30) as http:
        semaphore = asyncio.Semaphore(16)

        async def one(i: int) -> str:
            async with semaphore:
                body = {"email": f"bench-{uuid.uuid4().hex}@example.com", "first_name": "Bench", "last_name": str(i)}
                response = await http.post("/api/customers", json=body)
                response.raise_for_status()
                return str(response.json()["id"])

        return list(await asyncio.gather(*(one(i) for i in range(count))))


def run_wrk(url: str, data_file: str, seconds: int, connections: int) -> str:
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed: apt-get install -y wrk (just bootstrap does it)")
    threads = min(2, connections)  # the Lua script splits the customers between wrk's threads
    argv = [
        "wrk",
        f"-t{threads}",
        f"-c{connections}",
        f"-d{seconds}s",
        "--latency",
        "-s",
        str(HERE / "orders.lua"),
        url,
        "--",
        data_file,
        str(threads),
    ]
    return subprocess.run(argv, check=True, capture_output=True, text=True).stdout


def run_pgbench(seconds: int, clients: int = 8) -> float:
    spec = BY_NAME["order"]
    env = {**os.environ, "PGPASSWORD": spec.password()}
    argv = [
        PGBENCH,
        "-h",
        pg_host(),
        "-p",
        str(pg_port()),
        "-U",
        spec.role,
        "-d",
        spec.database,
        "-n",
        "-f",
        str(HERE / "order_tx.sql"),
        "-c",
        str(clients),
        "-j",
        "2",
        "-T",
        str(seconds),
    ]
    out = subprocess.run(argv, check=True, capture_output=True, text=True, env=env).stdout
    match = re.search(r"tps = ([\d.]+)", out)
    if match is None:
        raise SystemExit(f"pgbench printed no tps:\n{out}")
    return float(match.group(1))


async def commit_times(service: str, query: str, ids: list[str]) -> dict[str, float]:
    conn = await asyncpg.connect(database_url(BY_NAME[service], driver="postgresql"))
    try:
        rows = await conn.fetch(query, ids)
        return {r["customer_id"]: r["committed"].timestamp() for r in rows if r["committed"] is not None}
    finally:
        await conn.close()


async def wait_for_stats(ids: list[str], expected: int, within: float = 300) -> dict[str, float]:
    deadline = time.monotonic() + within
    query = (
        "SELECT customer_id, pg_xact_commit_timestamp(xmin) AS committed FROM customer_stats "
        "WHERE customer_id = ANY($1::varchar[])"
    )
    while True:
        applied = await commit_times("customer", query, ids)
        if len(applied) >= expected or time.monotonic() > deadline:
            return applied
        await asyncio.sleep(0.5)


async def wait_until_streamed(service: str, within: float = 120) -> None:
    """Let Debezium finish streaming the set-up's events, so the measured run starts from a quiet stack."""
    spec = BY_NAME[service]
    conn = await asyncpg.connect(database_url(spec, driver="postgresql"))
    try:
        target = await conn.fetchval("SELECT pg_current_wal_lsn()")
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            behind = await conn.fetchval(
                "SELECT pg_wal_lsn_diff($1::pg_lsn, confirmed_flush_lsn) FROM pg_replication_slots"
                " WHERE slot_name = $2",
                target,
                spec.slot,
            )
            if behind is not None and behind <= 0:
                return
            await asyncio.sleep(0.5)
    finally:
        await conn.close()


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def main_async(seconds: int, connections: int, customers: int) -> dict[str, float]:
    product_a, product_b = await create_product("10.00"), await create_product("4.50")
    started = time.perf_counter()
    ids = await register_customers(customers)
    print(f"registered {len(ids)} customers in {time.perf_counter() - started:.1f}s", flush=True)
    await wait_until_streamed("customer")
    with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as handle:
        handle.write(f"{product_a['id']},{product_b['id']}\n" + "\n".join(ids) + "\n")
        data_file = handle.name

    output = await asyncio.to_thread(run_wrk, service_url("order"), data_file, seconds, connections)
    print(output, flush=True)
    order_query = (
        "SELECT customer_id, pg_xact_commit_timestamp(xmin) AS committed FROM orders "
        "WHERE customer_id = ANY($1::varchar[])"
    )
    placed = await commit_times("order", order_query, ids)
    if len(placed) >= len(ids):
        print("warning: every customer got an order; raise --customers for a longer run", flush=True)
    applied = await wait_for_stats(list(placed), len(placed))
    delays_ms = [(applied[c] - placed[c]) * 1000 for c in placed if c in applied]
    print(f"{len(placed)} orders placed, {len(applied)} applied to customer stats", flush=True)

    tps = await asyncio.to_thread(run_pgbench, seconds)
    orders_per_s = len(placed) / seconds
    return {
        "orders_per_s": round(orders_per_s, 1),
        "pgbench_tps": round(tps, 1),
        "ratio": round(orders_per_s / tps, 3),
        "e2e_p50_ms": round(statistics.median(delays_ms), 1),
        "e2e_p99_ms": round(percentile(delays_ms, 0.99), 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=int, default=20)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--customers", type=int, default=12000, help="one per order; more than the run places")
    args = parser.parse_args()
    result = asyncio.run(main_async(args.seconds, args.connections, args.customers))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
