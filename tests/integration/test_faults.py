"""Faults under load: every component SIGKILLed in turn while idempotent orders keep arriving.

Clients place orders with an Idempotency-Key and retry a failed attempt with the same key until it is
accepted (as a real client would, pacing themselves by Retry-After, capped at a second). Meanwhile Kafka
Connect, the broker, each consumer and PostgreSQL are killed with SIGKILL (a crash, not a shutdown) and
started again, one after another. At the end every accepted order must be applied exactly once in every
projection, the client must never have seen a 500 (a 503 always with Retry-After), nothing of the test's
may be dead-lettered, and a consumer restarted after SIGKILL must apply again within 10 s. The recovery
time per component is printed and written to .stack/fault-recovery.json.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import datetime as dt
import importlib
import json
import random
import time
import uuid
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from infra import proc, stack
from infra.paths import STATE, log_file, pid_file
from outbox.consumer import ConsumerGroup
from outbox.events import decode_payload
from tests.support.db import connect
from tests.support.http import api_client, create_customer, create_product, service_url, set_stock
from tests.support.orders import eventually

# Typically about 3 minutes; the timeout leaves room for every fault to use its whole recovery budget.
pytestmark = [pytest.mark.usefixtures("stack"), pytest.mark.slow, pytest.mark.timeout(900)]

CLIENTS = 3
PACE = 0.15  # seconds between one client's orders: ~20 orders/s, enough load on 2 shared cores
ACCEPT_WITHIN = 120.0  # a client gives up on a key after this long (then the test fails)
CONSUMER_APPLIES_WITHIN = 10.0
RECOVER_WITHIN = 90.0  # per fault: beyond this the component counts as not recovered (and the test fails)
FAULTS = ("connect", "kafka", "customer-consumer", "warehouse-consumer", "analytics-consumer", "postgres")
GROUPS = {"customer": "customer-stats", "warehouse": "warehouse-reservations", "analytics": "analytics"}
CONSUMER_GROUP = {f"{service}-consumer": (service, group) for service, group in GROUPS.items()}


@dataclass(frozen=True)
class Accepted:
    key: str
    order_id: str
    customer_id: str
    total: Decimal
    units: dict[str, int]  # product id -> quantity
    sent_at: float  # monotonic time of the attempt that was accepted
    done_at: float


@dataclass
class Observed:
    """What the clients saw."""

    accepted: list[Accepted] = field(default_factory=list)
    statuses: collections.Counter[int] = field(default_factory=collections.Counter)
    transport_errors: collections.Counter[str] = field(default_factory=collections.Counter)
    server_errors: list[str] = field(default_factory=list)  # any 5xx but a 503 with Retry-After
    unexpected: list[str] = field(default_factory=list)  # a 4xx: the request was fine
    gave_up: list[str] = field(default_factory=list)

    def first_accepted_after(self, moment: float) -> Accepted | None:
        later = [a for a in self.accepted if a.sent_at > moment]
        return min(later, key=lambda a: a.done_at) if later else None


async def place_until_accepted(
    http: httpx.AsyncClient, body: dict[str, Any], seen: Observed, units: dict[str, int]
) -> None:
    key = str(uuid.uuid4())
    give_up_at = time.monotonic() + ACCEPT_WITHIN
    while time.monotonic() < give_up_at:
        sent_at = time.monotonic()
        pause = 0.2
        try:
            response = await http.post(
                f"{service_url('order')}/api/orders", json=body, headers={"Idempotency-Key": key}
            )
        except httpx.TransportError as exc:
            seen.transport_errors[type(exc).__name__] += 1
        else:
            seen.statuses[response.status_code] += 1
            if response.status_code == 201:
                order = response.json()
                seen.accepted.append(
                    Accepted(
                        key,
                        order["id"],
                        order["customer_id"],
                        Decimal(order["total_amount"]),
                        units,
                        sent_at,
                        time.monotonic(),
                    )
                )
                return
            retry_after = response.headers.get("retry-after")
            if response.status_code == 503 and retry_after is not None:
                pause = min(seconds(retry_after), 1.0)
            elif response.status_code >= 500:
                seen.server_errors.append(f"{response.status_code} retry-after={retry_after}: {response.text[:300]}")
            else:
                seen.unexpected.append(f"{response.status_code}: {response.text[:300]}")
                return
        await asyncio.sleep(pause)
    seen.gave_up.append(key)


def seconds(retry_after: str) -> float:
    try:
        return float(retry_after)
    except ValueError:  # an HTTP date: allowed, but this test only needs a short pause
        return 1.0


async def client(
    http: httpx.AsyncClient, customers: list[str], products: list[str], seen: Observed, stop: asyncio.Event
) -> None:
    rng = random.Random()
    while not stop.is_set():
        units = {p: rng.randint(1, 3) for p in rng.sample(products, rng.randint(1, 2))}
        body = {
            "customer_id": rng.choice(customers),
            "items": [{"product_id": p, "quantity": q} for p, q in units.items()],
        }
        await place_until_accepted(http, body, seen, units)
        await asyncio.sleep(PACE)


async def in_inbox(service: str, group: str, order_id: str) -> bool:
    try:
        conn = await connect(service)
        try:
            found = await conn.fetchval(
                "SELECT 1 FROM inbox WHERE consumer_group = $1 AND aggregate_id = $2::uuid", group, order_id
            )
        finally:
            await conn.close()
    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError):  # PostgreSQL on its way back: not yet
        return False
    return found is not None


async def first_order_after(seen: Observed, moment: float) -> Accepted:
    deadline = time.monotonic() + RECOVER_WITHIN
    while (order := seen.first_accepted_after(moment)) is None:
        assert time.monotonic() < deadline, "no order accepted after the fault"
        await asyncio.sleep(0.05)
    return order


async def applied_by(groups: dict[str, str], order: Accepted, within: float) -> float:
    """Wait until every group has the order in its inbox; the monotonic time when the last one had it."""
    pending = dict(groups)
    deadline = time.monotonic() + within
    while pending:
        for service, group in list(pending.items()):
            if await in_inbox(service, group, order.order_id):
                del pending[service]
        if pending:
            assert time.monotonic() < deadline, f"order {order.order_id} not applied by {sorted(pending.values())}"
            await asyncio.sleep(0.1)
    return time.monotonic()


def survivors_down() -> list[str]:
    return [p.name for p in stack.app_processes() if not proc.running(p.name)]


async def inflict(name: str, seen: Observed) -> dict[str, Any]:
    """SIGKILL one component, start it again, and time the way back."""
    killed_at = time.monotonic()
    await asyncio.to_thread(proc.kill, name)
    start_at = time.monotonic()
    watch = (
        asyncio.create_task(first_applied_by_new_process(name, within=RECOVER_WITHIN))
        if name in CONSUMER_GROUP
        else None
    )
    await asyncio.to_thread(stack.start_component, name)
    started_at = time.monotonic()
    accepted = await first_order_after(seen, start_at)  # sent when `name` had been dead for certain
    result: dict[str, Any] = {
        "component": name,
        "start_s": round(started_at - start_at, 1),
        "api_accepting_s": round(accepted.done_at - killed_at, 1),
    }
    # A component that died with this one (a consumer that gave up while PostgreSQL was away) is a failure;
    # it is started again, as `just up` would, so the rest of the run still measures something.
    result["others_down"] = survivors_down()
    if result["others_down"]:
        await asyncio.to_thread(stack.up)
    groups = dict([CONSUMER_GROUP[name]]) if name in CONSUMER_GROUP else GROUPS
    try:
        applied_at = await applied_by(groups, accepted, within=RECOVER_WITHIN)
    except AssertionError as exc:  # recorded and asserted at the end: the remaining faults still run
        result["error"] = str(exc)
        if watch is not None:
            watch.cancel()
        return result
    result["applying_again_s"] = round(applied_at - killed_at, 1)
    first_applied_at = await watch if watch is not None else None
    if name in CONSUMER_GROUP:
        # From the moment the new process was spawned (its pid file), whoever started it: another test
        # session's `up` may hold the start lock, and that wait is not the consumer's. "Applies again" is
        # the new process's first applied event (its own counter), not this order's arrival, which also
        # waits on Debezium and the broker upstream (just restarted themselves in this run).
        spawned = pid_file(name).stat().st_mtime
        result["restart_to_applying_s"] = round(first_applied_at - spawned, 1) if first_applied_at else None
    return result


async def first_applied_by_new_process(name: str, within: float) -> float | None:
    """Wall-clock time when the restarted consumer's own applied-events counter first moved, or None."""
    url = next(p.url for p in stack.app_processes() if p.name == name)
    deadline = time.monotonic() + within
    async with api_client(timeout=2) as http:
        while time.monotonic() < deadline:
            with contextlib.suppress(httpx.HTTPError):
                text = (await http.get(str(url).rsplit("/", 1)[0] + "/metrics")).text
                applied = sum(
                    float(line.rsplit(" ", 1)[1])
                    for line in text.splitlines()
                    if line.startswith("outbox_consumer_events_total{") and 'outcome="applied"' in line
                )
                if applied > 0:
                    return time.time()
            await asyncio.sleep(0.1)
    return None


async def own_world() -> tuple[list[str], list[str]]:
    customers = [str((await create_customer())["id"]) for _ in range(8)]
    products = [str((await create_product(price))["id"]) for price in ("3.10", "7.25", "12.00", "0.99")]
    for product in products:
        await set_stock(product, 1_000_000)
    return customers, products


async def test_every_component_killed_under_load_loses_nothing_and_applies_nothing_twice() -> None:
    customers, products = await own_world()
    log_start = log_file("order-api").stat().st_size if log_file("order-api").exists() else 0
    seen, stop, recoveries = Observed(), asyncio.Event(), []
    async with api_client(timeout=10, limits=httpx.Limits(max_connections=CLIENTS * 2)) as http:
        clients = [asyncio.create_task(client(http, customers, products, seen, stop)) for _ in range(CLIENTS)]
        try:
            await asyncio.sleep(3)  # load first
            for name in FAULTS:
                recovery = await inflict(name, seen)
                print(f"fault {name}: {recovery}", flush=True)
                recoveries.append(recovery)
            await asyncio.sleep(2)
        finally:
            stop.set()
            crashed = [r for r in await asyncio.gather(*clients, return_exceptions=True) if r is not None]
            # Always leave the stack up; a failure here must not hide the one that brought us here.
            try:
                await asyncio.to_thread(stack.up)
                up_failed = None
            except (SystemExit, Exception) as exc:
                up_failed = repr(exc)
    assert not crashed, crashed
    assert up_failed is None, f"`just up` after the faults failed: {up_failed}"
    report = summary(seen, recoveries, new_error_lines(log_file("order-api"), log_start))
    (STATE / "fault-recovery.json").write_text(json.dumps(report, indent=2, default=str))
    print(json.dumps(report, indent=2, default=str))

    with contextlib.suppress(TimeoutError):  # assert_exactly_once says what differs
        await eventually(lambda: projections_match(seen, customers, products), within=180, what="every projection")
    await assert_exactly_once(seen, customers, products)
    assert not seen.server_errors, {"client saw": seen.server_errors[:10], "order-api log": report["log"][:10]}
    assert not seen.unexpected and not seen.gave_up, (seen.unexpected[:10], seen.gave_up[:10])
    assert all(not r["others_down"] and "error" not in r for r in recoveries), recoveries
    for r in recoveries:
        if "restart_to_applying_s" in r:
            assert r["restart_to_applying_s"] is not None, r
            assert r["restart_to_applying_s"] <= CONSUMER_APPLIES_WITHIN, r


def summary(seen: Observed, recoveries: list[dict[str, Any]], log: list[str]) -> dict[str, Any]:
    return {
        "at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "accepted_orders": len(seen.accepted),
        "statuses": dict(seen.statuses),
        "transport_errors": dict(seen.transport_errors),
        "server_errors": seen.server_errors[:20],
        "unexpected": seen.unexpected[:20],
        "gave_up": len(seen.gave_up),
        "recoveries": recoveries,
        "log": log[:40],
    }


def new_error_lines(path: Path, offset: int) -> list[str]:
    """Lines the order service logged since the test began that say 500, error or a traceback."""
    with contextlib.suppress(FileNotFoundError), path.open("rb") as log:
        log.seek(offset)
        lines = log.read().decode(errors="replace").splitlines()
        markers = ('"level": "error"', '"status": 500', "Traceback", "Exception caught after response started")
        return [line[:400] for line in lines if any(marker in line for marker in markers)]
    return []


def _consumer_group(service: str) -> ConsumerGroup:
    group: ConsumerGroup = importlib.import_module(f"apps.{service}.consumers").group
    return group


def _skipped(group: ConsumerGroup, row: Any) -> bool:
    """Whether the group skips this outbox row's event before its inbox (ConsumerGroup's ``skip``)."""
    skip = group.skips.get(row["event_type"])
    data = json.loads(row["event_data"]) if isinstance(row["event_data"], str) else row["event_data"]
    return skip is not None and skip(decode_payload(row["event_type"], row["schema_version"], data, group.registry))


async def fetch(service: str, sql: str, *args: Any) -> list[Any]:
    conn = await connect(service)
    try:
        return list(await conn.fetch(sql, *args))
    finally:
        await conn.close()


def expected(seen: Observed) -> tuple[dict[str, tuple[int, Decimal]], dict[str, int]]:
    per_customer: dict[str, tuple[int, Decimal]] = {}
    per_product: collections.Counter[str] = collections.Counter()
    for order in seen.accepted:
        count, spent = per_customer.get(order.customer_id, (0, Decimal(0)))
        per_customer[order.customer_id] = (count + 1, spent + order.total)
        per_product.update(order.units)
    return per_customer, dict(per_product)


async def projections(customers: list[str], products: list[str]) -> dict[str, dict[str, Any]]:
    """The three projections, restricted to this test's customers and products."""
    stats = await fetch(
        "customer",
        "SELECT customer_id, orders_count, spent FROM customer_stats WHERE customer_id = ANY($1::varchar[])",
        customers,
    )
    sales = await fetch(
        "analytics", "SELECT product_id::text, units FROM product_sales WHERE product_id = ANY($1::uuid[])", products
    )
    stock = await fetch(
        "warehouse",
        "SELECT product_id::text, sum(reserved) AS reserved FROM stock_levels"
        " WHERE product_id = ANY($1::uuid[]) GROUP BY product_id",
        products,
    )
    return {
        "customer_stats": {r["customer_id"]: (r["orders_count"], r["spent"]) for r in stats},
        "product_sales.units": {r["product_id"]: r["units"] for r in sales},
        "stock_levels.reserved": {r["product_id"]: r["reserved"] for r in stock},
    }


def expected_projections(seen: Observed) -> dict[str, dict[str, Any]]:
    per_customer, per_product = expected(seen)
    return {"customer_stats": per_customer, "product_sales.units": per_product, "stock_levels.reserved": per_product}


async def projections_match(seen: Observed, customers: list[str], products: list[str]) -> bool:
    return await projections(customers, products) == expected_projections(seen)


async def assert_exactly_once(seen: Observed, customers: list[str], products: list[str]) -> None:
    order_ids = [a.order_id for a in seen.accepted]
    assert len(set(order_ids)) == len(order_ids) == len({a.key for a in seen.accepted})
    placed = await fetch("order", "SELECT id::text FROM orders WHERE customer_id = ANY($1::varchar[])", customers)
    assert sorted(r["id"] for r in placed) == sorted(order_ids), "an order the client never got, or a duplicate"
    reservations = await fetch(
        "warehouse", "SELECT order_id::text, status FROM reservations WHERE order_id = ANY($1::uuid[])", order_ids
    )
    assert sorted(r["order_id"] for r in reservations) == sorted(order_ids)
    assert {r["status"] for r in reservations} == {"reserved"}
    for service, group in GROUPS.items():
        # Each order's events (order.created, then the saga's order.confirmed) that this group handles,
        # as its own outbox recorded them: each must be applied exactly once, and nothing else recorded;
        # apart from those its handler declares it changes nothing for (skipped before the inbox).
        consumer = _consumer_group(service)
        handled = sorted(consumer.event_types)
        events = await fetch(
            "order",
            "SELECT event_type, schema_version, event_data FROM event_store"
            " WHERE aggregate_id = ANY($1::uuid[]) AND event_type = ANY($2::varchar[])",
            order_ids,
            handled,
        )
        published = [{"n": sum(not _skipped(consumer, e) for e in events)}]
        rows = await fetch(
            service,
            "SELECT outcome, count(*) AS n FROM inbox WHERE consumer_group = $1 AND aggregate_id = ANY($2::uuid[])"
            " GROUP BY outcome",
            group,
            order_ids,
        )
        assert published[0]["n"] >= len(order_ids), (group, handled, published)
        assert {r["outcome"]: r["n"] for r in rows} == {"applied": published[0]["n"]}, (group, handled, rows)
    assert await projections(customers, products) == expected_projections(seen)
