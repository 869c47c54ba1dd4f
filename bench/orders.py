"""Load benchmark of the write path: POST /api/orders under wrk, next to pgbench doing the same inserts.

    just bench [--seconds 20] [--connections 32]

1. Makes one customer per order to come known to the order service (so each customer_stats row is written
   by exactly one order's events; `--register-customers` registers them through the customer API instead)
   and two products with ample stock, through the catalog and warehouse APIs.
2. Maximum rate: wrk (Debian's package, Lua script bench/orders.lua) places orders for `--seconds` on
   `--connections` connections (closed loop; 32, its best: alternated 20-s runs in session 24 placed 108.7 and
   112.7 orders/s on 16, 160.6 and 103.3 on 32, 108.0 and 128.0 on 64, at a mean latency of 143-156, 202-320
   and 516-601 ms: more connections only queue in the order API).
3. Fixed rate: an open-loop generator (bench/open_loop.py) places orders at half that rate for `--seconds`,
   each request sent at its scheduled time whether or not earlier ones have answered; a request's latency
   counts from its scheduled time, so a slow answer delays nothing and hides nothing.
4. For both runs it waits until the customer-stats consumer has counted every order, then reads the delays
   from one clock, PostgreSQL's commit timestamps (track_commit_timestamp; same server): a purchase counts
   on confirmation, so commit-to-stats runs from the transaction that confirmed the order (its saga, once
   the warehouse reserved) to the customer_stats transaction that counted it; placed-to-stats, the whole
   saga, from the order's first commit.
5. pgbench runs bench/order_tx.sql (the statements the service sends per order, prepared as its asyncpg
   connections send them) with 32 clients for `--seconds`: its best on this machine (``PGBENCH_CLIENTS``).
Before the phases, a warm-up (steady-state measurement, as JMH's warm-up iterations): open-loop windows of 15 s
at 40 orders/s, printed as such and counted in no figure, until every JVM (Kafka, Connect) is 5 minutes old and
its JIT compiler threads used under 100 ms/s in the last window; at least one window (it also opens the
services' pooled connections), at most `--warm-up-max` seconds (300; 0 skips it). A stack 2 minutes old
missed the fixed-rate commit-to-stats p99 (252 ms) that it met at 5-8 minutes (73-84 ms).
Each of the three phases (maximum, fixed rate, pgbench) then starts from the same conditions
(bench/conditions.py ``start_phase``): a stack at rest (bench/cpu.py ``wait_until_quiet``: its components
under 0.6 cores over 3 s, waited for up to 2 minutes), then a CHECKPOINT, so that each phase writes its
full-page images from the same WAL state and no timed checkpoint falls inside one. After each phase a line
says what PostgreSQL did in it (WAL bytes, records and full-page images per order or transaction, checkpoints,
autovacuum workers seen) and how busy the machine's cores were (idle, stolen).
The last line is JSON: {orders_per_s, pgbench_tps, ratio, e2e_p50_ms, e2e_p99_ms, saga_e2e_p99_ms, fixed_rate,
http_p99_ms_fixed, e2e_p99_ms_fixed, saga_e2e_p99_ms_fixed, errors_fixed}. Before it, the CPU each stack
component spent per order of the maximum-rate run (bench/cpu.py), from wrk's start to the last order counted.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import shutil
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

import asyncpg
import httpx

from apps.common.topology import BY_NAME, database_url, pg_host, pg_port
from apps.order.events import OrderCreated, OrderLine
from bench.conditions import compiler_ms_per_s, compiler_snapshot, jvm_ages_s, phase_report, start_phase, warmed_up
from bench.cpu import cpu_report, cpu_snapshot
from bench.open_loop import OpenLoopResult, run_open_loop
from bench.pgbench import pgbench_argv, pgbench_result, progress_rates
from outbox.events import encode_payload
from tests.support.http import api_client, auth_headers, create_product, service_url, set_stock

HERE = Path(__file__).resolve().parent


async def register_customers(count: int) -> list[str]:
    limits = httpx.Limits(max_connections=16)
    async with api_client(base_url=service_url("customer"), limits=limits, timeout=30) as http:
        semaphore = asyncio.Semaphore(16)

        async def one(i: int) -> str:
            async with semaphore:
                body = {"email": f"bench-{uuid.uuid4().hex}@example.com", "first_name": "Bench", "last_name": str(i)}
                response = await http.post("/api/customers", json=body)
                response.raise_for_status()
                return str(response.json()["id"])

        return list(await asyncio.gather(*(one(i) for i in range(count))))


async def known_customers(count: int) -> list[str]:
    """Customers the order service knows already, written into its read model as the order-references group
    does on customer.registered: the order path measured is the same, and registering thousands through the
    customer API (sealing, blind index, its events) took minutes of the benchmark's five."""
    ids = [str(uuid.uuid4()) for _ in range(count)]
    conn = await asyncpg.connect(database_url(BY_NAME["order"], driver="postgresql"))
    try:
        await conn.execute("INSERT INTO order_known_customers (customer_id) SELECT unnest($1::varchar[])", ids)
    finally:
        await conn.close()
    return ids


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


def pgbench_env() -> dict[str, str]:
    return {**os.environ, "PGPASSWORD": BY_NAME["order"].password()}


# What the order service asks of PostgreSQL per order, as its asyncpg connections ask it (bench/pgbench.py):
# each statement prepared once per connection, then bound and executed; the lookup planned afresh each time
# (its custom plan is cheaper than the generic one), the write on its generic plan from the 6th execution
# (pg_prepared_statements of a session replaying both as apps/order/driver.py sends them, and of pgbench's own
# session with this mode: the same counts). The default -M simple parsed and planned both every time.
PGBENCH_MODE = "prepared"
# The ceiling is pgbench's best for this transaction on this machine. More clients keep more commits waiting
# on one WAL flush (commit_delay, group commit) and PostgreSQL's two cores busy while others wait on it:
# alternated 20-s runs (session 24, each set on one stack) at 4 / 8 / 16 clients 338.9, 295.1 / 362.3, 395.7 /
# 399.9, 414.3 tps; at 8 / 16 / 32 420.0, 471.9 / 476.8, 527.0 / 512.2, 664.6; at 16 / 32 / 64 590.9, 499.7 /
# 528.7, 628.8 / 564.6, 588.1 (and 32 / 64 574.3 / 600.0, 533.6): beyond 32, nothing more.
PGBENCH_CLIENTS = 32


# pgbench's customers (bench/order_tx.sql): known to the order service's read model, as the bench's own are,
# one drawn at random per transaction. Ids md5('pgbench-' || n) as uuids; they stay between runs.
PGBENCH_CUSTOMERS = 100_000
# The bench's order (``order_body``): one of the first product, two of the second.
QUANTITIES = (1, 2)


@dataclass(frozen=True)
class BenchProduct:
    """A bench product as the order service's read model holds it (what its placement checks an order by)."""

    id: str
    sku: str
    name: str | None
    price: Decimal
    currency: str
    confirmed_at: str


async def pgbench_set_up(product_ids: tuple[str, str]) -> list[str]:
    """The known customers bench/order_tx.sql draws from, and its per-run variables for the bench's products."""
    conn = await asyncpg.connect(database_url(BY_NAME["order"], driver="postgresql"))
    try:
        await conn.execute(
            "INSERT INTO order_known_customers (customer_id) SELECT CAST(CAST(md5('pgbench-' || n) AS uuid) AS text)"
            " FROM generate_series(0, $1 - 1) AS n ON CONFLICT (customer_id) DO NOTHING",
            PGBENCH_CUSTOMERS,
        )
        rows = await conn.fetch(
            "SELECT product_id::text AS id, sku, name, price, currency, confirmed_at::text AS confirmed_at"
            " FROM order_known_products WHERE product_id = ANY($1::uuid[]) AND sellable",
            list(product_ids),
        )
    finally:
        await conn.close()
    by_id = {row["id"]: BenchProduct(**dict(row)) for row in rows}
    missing = [p for p in product_ids if p not in by_id]
    if missing:
        raise SystemExit(f"the order service's read model has no sellable row for the bench's products {missing}")
    return order_tx_variables([by_id[p] for p in product_ids])


def order_tx_variables(products: list[BenchProduct]) -> list[str]:
    """bench/order_tx.sql's per-run variables, as pgbench options: the order's lines as the service sends them,
    one array parameter per column, for the bench's two products as the read model holds them (so that the
    statement's check finds them as the service's does; ``fresh_since`` the older row's time), and how many
    known customers to draw from."""
    variables = {
        "pids": _array(p.id for p in products),
        "skus": _array(p.sku for p in products),
        "names": _array(p.name for p in products),
        "quantities": _array(str(q) for q in QUANTITIES),
        "unit_prices": _array(str(p.price) for p in products),
        "total_prices": _array(str(p.price * q) for p, q in zip(products, QUANTITIES, strict=True)),
        "currency": products[0].currency,
        "fresh_since": min(p.confirmed_at for p in products),
        "customers": str(PGBENCH_CUSTOMERS),
        "event_data": bench_order_created(products),
    }
    return [option for name, value in variables.items() for option in ("-D", f"{name}={value}")]


def bench_order_created(products: list[BenchProduct]) -> str:
    """The outbox payload pgbench's transaction writes: an order.created of the bench's order, encoded as the
    service encodes it, so each transaction puts as many bytes into the WAL, Connect and Kafka as an order does
    (until session 26 it wrote a 25-byte stub). Its ids are placeholders of the same length: nothing reads
    the payload (the event type, order.benchmarked, is one no group handles)."""
    lines = [
        OrderLine(product_id=uuid.UUID(p.id), sku=p.sku, quantity=q, unit_price=p.price, total_price=p.price * q)
        for p, q in zip(products, QUANTITIES, strict=True)
    ]
    event = OrderCreated(
        order_id=uuid.uuid4(),
        order_number="ORD-20261127-0000000000",
        customer_id=str(uuid.uuid4()),
        status="pending",
        currency=products[0].currency,
        total_amount=sum((line.total_price for line in lines), Decimal(0)),
        items=lines,
        created_at=dt.datetime.now(dt.UTC),
    )
    return encode_payload(event).decode()


def _array(values: Iterable[str | None]) -> str:
    """A PostgreSQL array literal of these values, each quoted (NULL for None)."""
    quoted = ("NULL" if v is None else '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"' for v in values)
    return "{" + ",".join(quoted) + "}"


def run_pgbench(seconds: int, variables: list[str], clients: int = PGBENCH_CLIENTS) -> tuple[float, int]:
    """pgbench's tps and the transactions it ran (``variables``: ``pgbench_set_up``'s); its orders stay until
    ``remove_pgbench_orders``."""
    options = ["-P", "5", *variables]  # -P: its rate every 5 s (stderr), how steady it was
    argv = pgbench_argv(
        BY_NAME["order"], HERE / "order_tx.sql", seconds=seconds, clients=clients, mode=PGBENCH_MODE, options=options
    )
    run = subprocess.run(argv, check=True, capture_output=True, text=True, env=pgbench_env())
    print(f"pgbench every 5 s: {' '.join(f'{t:.0f}' for t in progress_rates(run.stderr))} tps", flush=True)
    return pgbench_result(run.stdout)


def remove_pgbench_orders(env: dict[str, str]) -> None:
    """pgbench's orders wait on a reservation nobody will make: remove them before the sweeper times them out."""
    spec = BY_NAME["order"]
    pgbench_orders = "SELECT id FROM orders WHERE order_number LIKE 'PGB-%'"
    statements = (
        [
            "DELETE FROM data_access_log WHERE table_name = 'orders' AND record_id IN (SELECT id::text FROM orders"
            " WHERE order_number LIKE 'PGB-%');"
        ]
        + [
            f"DELETE FROM {table} WHERE order_id IN ({pgbench_orders});"
            for table in ("order_sagas", "order_items", "order_status_history")
        ]
        + ["DELETE FROM orders WHERE order_number LIKE 'PGB-%';"]
    )
    connect = ["-h", pg_host(), "-p", str(pg_port()), "-U", spec.role, "-d", spec.database]
    subprocess.run(["psql", *connect, "-q", "-1", "-c", " ".join(statements)], check=True, env=env)
    # The deletes leave thousands of dead rows; left to autovacuum, their cleanup (~1 s of CPU) landed in the
    # next run's measured phases. Vacuumed now, after this run's measurements, each run starts clean.
    tables = ("orders", "order_items", "order_status_history", "order_sagas", "data_access_log")
    subprocess.run(["psql", *connect, "-q", "-c", f"VACUUM (ANALYZE) {', '.join(tables)};"], check=True, env=env)


async def commit_times(service: str, query: str, ids: list[str]) -> dict[str, float]:
    conn = await asyncpg.connect(database_url(BY_NAME[service], driver="postgresql"))
    try:
        rows = await conn.fetch(query, ids)
        return {r["customer_id"]: r["committed"].timestamp() for r in rows if r["committed"] is not None}
    finally:
        await conn.close()


# Each customer has one order: the commit time of its placement and of its confirmation (the saga's
# transaction after the warehouse reserved), and of the customer_stats row that counted it. The placement's
# commit is its first history row's (status_from NULL): never updated, while the orders row's xmin becomes
# the confirming transaction's once the saga updates it (saga_e2e_* then measured confirmation -> stats).
PLACED_SQL = (
    "SELECT o.customer_id, pg_xact_commit_timestamp(h.xmin) AS committed FROM orders o "
    "JOIN order_status_history h ON h.order_id = o.id AND h.status_from IS NULL "
    "WHERE o.customer_id = ANY($1::varchar[])"
)
CONFIRMED_SQL = (
    "SELECT o.customer_id, pg_xact_commit_timestamp(h.xmin) AS committed FROM orders o "
    "JOIN order_status_history h ON h.order_id = o.id AND h.status_to = 'confirmed' "
    "WHERE o.customer_id = ANY($1::varchar[])"
)
STATS_SQL = (
    "SELECT customer_id, pg_xact_commit_timestamp(xmin) AS committed FROM customer_stats "
    "WHERE customer_id = ANY($1::varchar[]) AND orders_count > 0"
)


async def wait_for_stats(ids: list[str], expected: int, within: float = 300) -> dict[str, float]:
    deadline = time.monotonic() + within
    while True:
        applied = await commit_times("customer", STATS_SQL, ids)
        if len(applied) >= expected or time.monotonic() > deadline:
            return applied
        await asyncio.sleep(0.5)


@dataclass
class Delays:
    placed: int
    counted: int
    commit_to_stats_ms: list[float]  # confirmation commit -> stats commit
    placed_to_stats_ms: list[float]  # the whole saga: placement commit -> stats commit


async def measure_delays(customers: list[str]) -> Delays:
    """Wait until every order placed for ``customers`` is counted in customer_stats; the delays."""
    placed = await commit_times("order", PLACED_SQL, customers)
    stats = await wait_for_stats(list(placed), len(placed))
    confirmed = await commit_times("order", CONFIRMED_SQL, list(placed))
    return Delays(
        placed=len(placed),
        counted=len(stats),
        commit_to_stats_ms=[(stats[c] - confirmed[c]) * 1000 for c in stats if c in confirmed],
        placed_to_stats_ms=[(stats[c] - placed[c]) * 1000 for c in stats],
    )


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


async def set_up(customers: int, *, register: bool) -> tuple[str, str, list[str]]:
    """Two products with stock for every order to come, and one customer per order (registered through the
    customer API with ``register``, otherwise known to the order service's read model only)."""
    product_a, product_b = await create_product("10.00"), await create_product("4.50")
    for product in (product_a, product_b):
        await set_stock(product["id"], 10 * customers)
    started = time.perf_counter()
    ids = await (register_customers if register else known_customers)(customers)
    how = "registered" if register else "made known"
    print(f"{how} {len(ids)} customers in {time.perf_counter() - started:.1f}s", flush=True)
    await wait_until_streamed("customer")
    await wait_until_streamed("catalog")
    return product_a["id"], product_b["id"], ids


def customer_token(customer: str) -> str:
    """The customer's bearer token from the local issuer (``.stack/keys/``)."""
    return auth_headers("customer", customer_id=customer)["Authorization"].removeprefix("Bearer ")


def order_body(customer: str, product_a: str, product_b: str) -> bytes:
    items = [{"product_id": product_a, "quantity": 1}, {"product_id": product_b, "quantity": 2}]
    return json.dumps({"customer_id": customer, "items": items}).encode()


async def max_rate_run(product_a: str, product_b: str, ids: list[str], seconds: int, connections: int) -> Delays:
    with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as handle:
        # Each order is placed by its own customer, with that customer's token (one verification each).
        lines = [f"{c},{customer_token(c)}" for c in ids]
        handle.write(f"{product_a},{product_b}\n" + "\n".join(lines) + "\n")
        data_file = handle.name
    before = cpu_snapshot()
    output = await asyncio.to_thread(run_wrk, service_url("order"), data_file, seconds, connections)
    print(output, flush=True)
    delays = await measure_delays(ids)
    # From the first order to the last one counted in customer stats: every process's share of an order.
    print(cpu_report(cpu_snapshot(), before, per=delays.placed, unit="order"), flush=True)
    check_customers_left(delays.placed, len(ids))
    print(f"max rate: {delays.placed} orders placed, {delays.counted} counted in customer stats", flush=True)
    return delays


def check_customers_left(placed: int, customers: int) -> None:
    """Refuse a maximum-rate figure from a run that ran out of customers: once a wrk thread has placed an order
    for each of its customers it sends GET /health instead, so orders/s would be the customer count over the
    run's seconds, not what the stack can do (session 25's first run on a faster machine: 5,999 of 6,000
    placed, "299.9 orders/s", and a fixed-rate phase left with one customer)."""
    if placed >= CUSTOMERS_USED_MAX * customers:
        raise SystemExit(
            f"the maximum-rate run placed {placed} orders for {customers} customers: it ran out of them, so its "
            f"rate is not the stack's; rerun with --customers {4 * customers}"
        )


async def fixed_rate_run(product_a: str, product_b: str, rate: float, seconds: int) -> tuple[OpenLoopResult, Delays]:
    # Customers of their own: the maximum-rate run's leftovers depend on how fast it was.
    customers = await known_customers(int(rate * seconds))
    bodies = [order_body(c, product_a, product_b) for c in customers]
    tokens = [customer_token(c) for c in customers]
    result = await run_open_loop(f"{service_url('order')}/api/orders", bodies, rate, tokens=tokens)
    print(
        f"fixed rate {rate:.1f}/s: {result.sent} sent, statuses {result.statuses}, "
        f"{result.late_starts} sent late by the generator",
        flush=True,
    )
    delays = await measure_delays(customers)
    print(f"fixed rate: {delays.placed} orders placed, {delays.counted} counted in customer stats", flush=True)
    return result, delays


def ms(values: list[float], q: float) -> float:
    return round(percentile(values, q), 1) if values else float("nan")


# The warm-up (steady-state measurement, as JMH's warm-up iterations): open-loop windows of orders until every
# JVM is WARM_UP_MIN_AGE_S old and its compiler threads used under WARM_UP_COMPILER_MS_PER_S in the last window,
# for at most WARM_UP_MAX_S. Its orders are counted in no figure.
# One customer per order of the maximum-rate run, so more than it can place: pgbench's best here is ~1,600
# transactions/s over the default 20 s, and orders cannot outrun it. Made known in one INSERT (~0.1 s per 6,000).
CUSTOMERS = 40_000
# A run that used more of its customers than this may have run out (each wrk thread has its own half).
CUSTOMERS_USED_MAX = 0.95
WARM_UP_RATE = 40.0
WARM_UP_WINDOW_S = 15
WARM_UP_MIN_AGE_S = 300.0
WARM_UP_COMPILER_MS_PER_S = 100.0
WARM_UP_MAX_S = 300.0


async def warm_up(product_a: str, product_b: str, *, max_s: float = WARM_UP_MAX_S) -> None:
    """Load the stack in windows until its JVMs are past their JIT compilation (``warmed_up``); prints each
    window. At least one window runs: it also opens the services' pooled connections the phases will use."""
    started = time.monotonic()
    window = 0
    while True:
        window += 1
        before = compiler_snapshot()
        customers = await known_customers(int(WARM_UP_RATE * WARM_UP_WINDOW_S))
        bodies = [order_body(c, product_a, product_b) for c in customers]
        tokens = [customer_token(c) for c in customers]
        result = await run_open_loop(f"{service_url('order')}/api/orders", bodies, WARM_UP_RATE, tokens=tokens)
        elapsed = time.monotonic() - started
        after = compiler_snapshot()
        used = compiler_ms_per_s(before, after, WARM_UP_WINDOW_S)
        ages = jvm_ages_s({name: pid for name, (pid, _) in after.items()})
        state = ", ".join(f"{n} {ages[n] / 60:.1f} min old, compiler threads {used[n]:.0f} ms/s" for n in after)
        print(
            f"warm-up window {window} ({WARM_UP_RATE:.0f} orders/s for {WARM_UP_WINDOW_S} s, not measured):"
            f" {result.errors} errors; {state}",
            flush=True,
        )
        if warmed_up(ages, used, min_age_s=WARM_UP_MIN_AGE_S, below_ms_per_s=WARM_UP_COMPILER_MS_PER_S):
            print(f"warm-up done after {elapsed:.0f} s", flush=True)
            return
        if elapsed >= max_s:
            print(f"warning: warm-up stopped after {elapsed:.0f} s with the JVMs still compiling", flush=True)
            return


async def main_async(
    seconds: int, connections: int, customers: int, *, register: bool, warm_up_s: float
) -> dict[str, float]:
    product_a, product_b, ids = await set_up(customers, register=register)
    if warm_up_s > 0:
        await warm_up(product_a, product_b, max_s=warm_up_s)
    start = await start_phase("max rate")
    peak = await max_rate_run(product_a, product_b, ids, seconds, connections)
    print(await phase_report("max rate", start, per=peak.placed, unit="order"), flush=True)
    orders_per_s = peak.placed / seconds
    fixed_rate = round(orders_per_s / 2, 1)
    start = await start_phase("fixed rate")
    fixed, fixed_delays = await fixed_rate_run(product_a, product_b, fixed_rate, seconds)
    print(await phase_report("fixed rate", start, per=fixed_delays.placed, unit="order"), flush=True)
    variables = await pgbench_set_up((product_a, product_b))
    start = await start_phase("pgbench")
    try:
        before = cpu_snapshot()
        tps, transactions = await asyncio.to_thread(run_pgbench, seconds, variables)
        # Its backends exit as it disconnects: a snapshot while the postmaster reaps them read the
        # postmaster's reaped time before it grew and found the backends gone, and lost most of the phase's
        # CPU (6.6 ms per transaction reported at 1.95 cores busy and 193 tps, i.e. 10.1 spent).
        await asyncio.sleep(1)
        print(f"pgbench: {transactions} transactions, {tps:.1f} tps", flush=True)
        print(cpu_report(cpu_snapshot(), before, per=transactions, unit="transaction"), flush=True)
        print(await phase_report("pgbench", start, per=transactions, unit="transaction"), flush=True)
    finally:
        await asyncio.to_thread(remove_pgbench_orders, pgbench_env())
    return {
        "orders_per_s": round(orders_per_s, 1),
        "pgbench_tps": round(tps, 1),
        "ratio": round(orders_per_s / tps, 3),
        "e2e_p50_ms": ms(peak.commit_to_stats_ms, 0.5),
        "e2e_p99_ms": ms(peak.commit_to_stats_ms, 0.99),
        "saga_e2e_p99_ms": ms(peak.placed_to_stats_ms, 0.99),
        "fixed_rate": fixed_rate,
        "http_p50_ms_fixed": ms(fixed.latencies_ms, 0.5),
        "http_p99_ms_fixed": ms(fixed.latencies_ms, 0.99),
        "e2e_p99_ms_fixed": ms(fixed_delays.commit_to_stats_ms, 0.99),
        "saga_e2e_p99_ms_fixed": ms(fixed_delays.placed_to_stats_ms, 0.99),
        "errors_fixed": fixed.errors,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=int, default=20)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument(
        "--customers", type=int, default=CUSTOMERS, help="one per order of the maximum-rate run; more than it places"
    )
    parser.add_argument(
        "--register-customers", action="store_true", help="register them through the customer API (slow)"
    )
    parser.add_argument(
        "--warm-up-max",
        type=float,
        default=WARM_UP_MAX_S,
        help="at most this many seconds of warm-up load (0: none, the measurement of a cold stack)",
    )
    args = parser.parse_args()
    result = asyncio.run(
        main_async(
            args.seconds,
            args.connections,
            args.customers,
            register=args.register_customers,
            warm_up_s=args.warm_up_max,
        )
    )
    print(json.dumps(result))


if __name__ == "__main__":
    main()
