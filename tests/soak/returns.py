"""Returns soak: returns of card-paid, delivered orders are asked, approved, rejected and received while the
refund's path (the payment worker, the payment and returns consumers, the returns sweeper, the provider sandbox)
and PostgreSQL are SIGKILLed at random moments and started again; then the money and the stock must add up.

`just soak-returns SECONDS SEED` (`--plan` prints the schedule). Not part of `just test`; it kills
shared components, so run it under `flock /tmp/heavy.lock` on a stack nobody else is measuring. The schedule is
the seed's alone (tests/soak/saga.py's), printed first: the same numbers replay it.

Before the load (nothing killed): a few dozen orders through the real checkout (one in six paid with the
sandbox's tok_refundFail card, whose refunds the provider refuses), confirmed, shipped (captured), delivered.
During it, clients take a unit or two of an order's line at a time: a return asked and approved then received
in some condition (new/opened are restocked), a refund_only one (approval refunds, nothing comes back), or one
rejected; every request is sent again on a dropped connection or a 503 with Retry-After, as a client would.
After it, what a client left half-way is finished (approved, received), and within a settling time:
- every return of these orders is decided: completed, rejected, or refund_failed only where the card refuses;
- per order, the payment's refunded amount = the sum of its refunded returns = the provider's ledger, and no
  more than it captured; each refunded return's refund_id has exactly one succeeded refund operation;
- per product, on_hand rose by exactly the sellable units received, each such item restocked;
- no 5xx but a 503 with Retry-After, no dead letter in the groups on this path, every killed process back.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import random
import sys
import time
from decimal import Decimal
from typing import Any

import httpx

from infra import stack
from tests.integration.test_faults import Observed
from tests.soak.saga import Killer, new_letters, retrying, say, schedule, under_kills, wait_for
from tests.support import returns
from tests.support.db import fetch
from tests.support.dead_letters import letter_ends
from tests.support.http import api_client, service_url

INFRA = ("postgres",)
# The refund's path: the provider calls, the refund requests, the return's moves, its expiry, the provider.
OURS = ("payment-worker", "payment-consumer", "returns-consumer", "returns-sweeper", "payment-sandbox")
GROUPS = ("returns", "payment", "warehouse-reservations", "customer-stats", "analytics")
ORDERS, REFUSING_EVERY = 60, 6  # every sixth order is paid with tok_refundFail
CLIENTS, PACE = 4, 1.5  # ~2 returns a second: the orders' units last a 150-s load
DECIDED = frozenset({"completed", "rejected", "refund_failed", "expired"})
CONDITIONS = ("new", "new", "opened", "used", "damaged", "defective")
SELLABLE = frozenset({"new", "opened"})
DECIDED_WITHIN_S = 300.0


async def prepare(http: httpx.AsyncClient) -> dict[str, Any]:
    """The soak's products and its delivered orders (as the e2e tests make them), before anything is killed."""
    products = [await returns.stocked(price, 10_000) for price in ("12.50", "4.35")]
    refusing: set[str] = set()
    orders: list[dict[str, Any]] = []
    for first in range(0, ORDERS, 12):  # twelve sagas at a time
        batch = range(first, min(first + 12, ORDERS))
        tokens = ["tok_refundFail" if n % REFUSING_EVERY == 0 else "tok_visa" for n in batch]
        placed = await asyncio.gather(*(delivered(http, products, t) for t in tokens))
        orders += placed
        refusing |= {o["id"] for o, t in zip(placed, tokens, strict=True) if t == "tok_refundFail"}
    return {
        "products": [str(p["id"]) for p in products],
        "orders": {o["id"]: [(int(i["id"]), int(i["quantity"])) for i in o["items"]] for o in orders},
        "refusing": refusing,
        "on_hand": await on_hand([str(p["id"]) for p in products]),
    }


async def delivered(http: httpx.AsyncClient, products: list[dict[str, Any]], token: str) -> dict[str, Any]:
    """One delivered order; made again if a step was refused with a 503 (another helper restarting a service
    of the shared stack: piece 1 lost its run to one catalog 503 while adding to a cart)."""
    for attempt in range(5):
        try:
            return await returns.delivered_order(http, [(products[0], 3), (products[1], 2)], token=token)
        except (AssertionError, httpx.TransportError) as exc:
            if attempt == 4 or ("503" not in str(exc) and not isinstance(exc, httpx.TransportError)):
                raise
            await asyncio.sleep(2.0)
    raise AssertionError("unreachable")


async def on_hand(products: list[str]) -> dict[str, int]:
    rows = await fetch(
        "warehouse",
        "SELECT product_id::text, sum(on_hand) AS on_hand FROM stock_levels WHERE product_id = ANY($1::uuid[])"
        " GROUP BY product_id",
        products,
    )
    return {r["product_id"]: int(r["on_hand"]) for r in rows}


async def client(
    http: httpx.AsyncClient, rng: random.Random, world: dict[str, Any], seen: Observed, stop: asyncio.Event
) -> None:
    base = f"{service_url('returns')}/api/returns"
    while not stop.is_set():
        await asyncio.sleep(PACE)
        order_id = rng.choice(list(world["orders"]))
        line, ordered = rng.choice(world["orders"][order_id])
        kind = rng.choices(("refund", "refund_only", "reject"), weights=(6, 2, 1))[0]
        body = {
            "order_id": order_id,
            "items": [{"order_item_id": line, "quantity": rng.randint(1, min(2, ordered)), "reason": "defective"}],
            "return_type": "refund_only" if kind == "refund_only" else "refund",
        }
        created = await retrying(http, "POST", base, seen, json=body)
        if created.status_code in (409, 422):  # the units are in another return already (or all returned)
            continue
        if created.status_code != 201:
            seen.unexpected.append(f"POST /api/returns {created.status_code}: {created.text[:300]}")
            continue
        made = created.json()
        if kind == "reject":
            await step(http, seen, f"{base}/{made['id']}/reject", {"reason": "outside policy"})
            continue
        await step(http, seen, f"{base}/{made['id']}/approve", {})
        if kind == "refund":
            came = [
                {
                    "return_item_id": i["id"],
                    "quantity_received": i["quantity_returned"],
                    "condition": rng.choice(CONDITIONS),
                }
                for i in made["items"]
            ]
            await step(http, seen, f"{base}/{made['id']}/receive", {"items": came})


async def step(http: httpx.AsyncClient, seen: Observed, url: str, body: dict[str, Any]) -> None:
    """A staff action; a 409 after a resend is the first one's effect (the status moved on), not a refusal."""
    answer = await retrying(http, "POST", url, seen, json=body)
    if answer.status_code not in (200, 409):
        seen.unexpected.append(f"POST {url.rsplit('/api/', 1)[1]} {answer.status_code}: {answer.text[:300]}")


async def returns_of(order_ids: list[str]) -> list[Any]:
    return await fetch(
        "returns",
        "SELECT r.id::text, r.order_id::text, r.status, r.return_type, r.total_refund_amount, r.refund_id::text,"
        " r.refunded_at, r.no_refund_reason, r.metadata FROM return_requests r WHERE r.order_id = ANY($1::uuid[])",
        order_ids,
    )


async def finish(http: httpx.AsyncClient, world: dict[str, Any], seen: Observed) -> None:
    """What the clients left half-way (a request resent after its answer was lost, a client stopped between
    steps): approved, and received as it was asked back (new)."""
    base = f"{service_url('returns')}/api/returns"
    for row in await returns_of(list(world["orders"])):
        if row["status"] == "requested":
            await step(http, seen, f"{base}/{row['id']}/approve", {})
        if row["status"] in ("requested", "approved") and row["return_type"] == "refund":
            items = (await returns.get_return(http, row["id"]))["items"]
            came = [
                {"return_item_id": i["id"], "quantity_received": i["quantity_returned"], "condition": "new"}
                for i in items
            ]
            await step(http, seen, f"{base}/{row['id']}/receive", {"items": came})


async def undecided(world: dict[str, Any]) -> list[str]:
    return [
        f"return {r['id']} {r['status']}" for r in await returns_of(list(world["orders"])) if r["status"] not in DECIDED
    ]


async def disagreements(
    http: httpx.AsyncClient, world: dict[str, Any], letters_before: dict[str, dict[int, int]]
) -> list[str]:
    order_ids = list(world["orders"])
    rows = await returns_of(order_ids)
    problems = await money_agrees(http, world, rows)
    problems += await stock_agrees(world, rows)
    problems += await new_letters(letters_before)
    return problems


async def money_agrees(http: httpx.AsyncClient, world: dict[str, Any], rows: list[Any]) -> list[str]:
    problems = []
    by_order: dict[str, list[Any]] = collections.defaultdict(list)
    for row in rows:
        by_order[row["order_id"]].append(row)
        if row["status"] == "refund_failed" and row["order_id"] not in world["refusing"]:
            problems.append(f"return {row['id']} refund_failed on a card that refunds: {row['metadata']}")
        if row["status"] == "completed" and row["order_id"] in world["refusing"] and row["total_refund_amount"] > 0:
            problems.append(f"return {row['id']} completed with a refund on a card that refuses refunds")
    for order_id in world["orders"]:
        [payment] = await returns.payments(http, order_id)
        books = (await http.get(f"{returns.SANDBOX}/v1/ledger", params={"reference": order_id})).json()
        # The provider books integer minor units (the soak's prices are USD: cents).
        ledger = Decimal(sum(r["amount"] for a in books["authorizations"] for r in a["refunds"])) / 100
        ledger_captured = Decimal(sum(a.get("amount_captured") or 0 for a in books["authorizations"])) / 100
        refunded = [r for r in by_order[order_id] if r["refunded_at"] is not None]
        owed = sum((r["total_refund_amount"] for r in refunded), Decimal(0))
        paid, captured = Decimal(payment["refunded_amount"]), Decimal(payment["captured_amount"])
        if not paid == owed == ledger:
            problems.append(f"order {order_id}: payment refunded {paid}, returns refunded {owed}, provider {ledger}")
        if paid > captured or ledger > ledger_captured:
            problems.append(
                f"order {order_id}: refunded {paid} (provider {ledger}) above captured {captured} (provider"
                f" {ledger_captured})"
            )
        succeeded = collections.Counter(
            op["id"] for op in payment["operations"] if op["kind"] == "refund" and op["outcome"] == "succeeded"
        )
        for row in refunded:
            if row["total_refund_amount"] > 0 and succeeded.get(row["refund_id"], 0) != 1:
                problems.append(
                    f"return {row['id']}: refund {row['refund_id']} succeeded"
                    f" {succeeded.get(row['refund_id'], 0)} times"
                )
    return problems


async def stock_agrees(world: dict[str, Any], rows: list[Any]) -> list[str]:
    ids = [r["id"] for r in rows if r["status"] != "rejected"]
    items = await fetch(
        "returns",
        "SELECT i.return_request_id::text AS return_id, i.product_id::text, i.quantity_received, i.condition_received,"
        " i.restocked FROM return_items i WHERE i.return_request_id = ANY($1::uuid[])",
        ids,
    )
    want: collections.Counter[str] = collections.Counter()
    problems = []
    for item in items:
        if item["condition_received"] in SELLABLE and item["quantity_received"] > 0:
            want[item["product_id"]] += item["quantity_received"]
            if not item["restocked"]:
                problems.append(f"return {item['return_id']}: {item['quantity_received']} sellable units not restocked")
    now = await on_hand(world["products"])
    for product in world["products"]:
        if now[product] - world["on_hand"][product] != want[product]:
            problems.append(
                f"product {product}: on_hand {world['on_hand'][product]} -> {now[product]},"
                f" sellable units received {want[product]}"
            )
    return problems


async def soak(load_s: float, seed: int) -> int:
    kills = schedule(seed, load_s, INFRA, OURS)
    say(f"returns soak: {load_s:.0f} s of load, seed {seed}; replay with `just soak-returns {load_s:.0f} {seed}`")
    for kill in kills:
        print(f"  at {kill.at:6.1f}s  SIGKILL {kill.name:<19} start after {kill.down:.1f}s", flush=True)
    if down := stack.not_running():
        say(f"not running before the soak: {down}; start them first (`just up`)")
        return 2
    seen, stop, killer = Observed(), asyncio.Event(), Killer()
    async with api_client(timeout=10, limits=httpx.Limits(max_connections=16, keepalive_expiry=2.0)) as http:
        t0 = time.monotonic()
        world = await prepare(http)
        say(
            f"{len(world['orders'])} delivered orders in {time.monotonic() - t0:.0f}s"
            f" ({len(world['refusing'])} refusing refunds)"
        )
        letters_before = {group: await asyncio.to_thread(letter_ends, group) for group in GROUPS}
        rng = random.Random(seed ^ 0x5EED)
        tasks = [
            asyncio.create_task(client(http, random.Random(rng.random()), world, seen, stop)) for _ in range(CLIENTS)
        ]
        crashed = await under_kills(killer, kills, load_s, tasks, stop, (*INFRA, *OURS))
        await finish(http, world, seen)
        rows = await returns_of(list(world["orders"]))
        say(
            f"load over: {len(rows)} returns; answers {dict(seen.statuses)},"
            f" dropped connections {dict(seen.transport_errors)}"
        )
        problems = [f"client crashed: {c!r}" for c in crashed[:5]] + killer.problems
        problems += [f"5xx: {e}" for e in seen.server_errors[:10]] + [f"refused: {e}" for e in seen.unexpected[:10]]
        t0 = time.monotonic()
        left = await wait_for(lambda: undecided(world), DECIDED_WITHIN_S)
        say(f"decided after {time.monotonic() - t0:.0f}s" if not left else f"undecided: {left[:10]}")
        problems += [f"not decided within {DECIDED_WITHIN_S:.0f}s: {u}" for u in left[:10]]
        if not left:
            problems += await disagreements(http, world, letters_before)
    problems += [f"still down after the soak: {n}" for n in stack.not_running()]
    rows = await returns_of(list(world["orders"]))
    summary = collections.Counter(f"{r['return_type']}/{r['status']}" for r in rows)
    refunded = sum((r["total_refund_amount"] for r in rows if r["refunded_at"] is not None), Decimal(0))
    print(
        json.dumps(
            {
                "seed": seed,
                "load_s": load_s,
                "returns": dict(summary),
                "refunded": str(refunded),
                "kills": killer.log,
                "problems": problems,
            },
            indent=1,
        )
    )
    say(
        "PASSED"
        if not problems
        else f"FAILED: {len(problems)} problems; replay with `just soak-returns {load_s:.0f} {seed}`"
    )
    return 0 if not problems else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="just soak-returns", description=(__doc__ or "").splitlines()[0])
    parser.add_argument("seconds", type=float, nargs="?", default=180.0, help="seconds of load and kills (180)")
    parser.add_argument("seed", type=int, nargs="?", help="the schedule's seed (default: a random one, printed)")
    parser.add_argument("--plan", action="store_true", help="print the schedule and exit")
    args = parser.parse_args(argv)
    seed = args.seed if args.seed is not None else random.randrange(1 << 30)
    if args.plan:
        for kill in schedule(seed, args.seconds, INFRA, OURS):
            print(f"{kill.at:6.1f}s  {kill.name:<19} down {kill.down:.1f}s")
        return 0
    return asyncio.run(soak(args.seconds, seed))


if __name__ == "__main__":
    sys.exit(main())
