"""A customer's reads have a budget (session 33; apps/common/rate_limit.py ``ReadBudget``): counted in units of
cost (one per read, plus one per record logged and per 32 KiB sent, charged once answered), refused past the
budget with the window's ``Retry-After``, and served a few at a time (their cost is not known until answered):
the others wait their turn, and past a queue are refused at once. Staff, services and guests are not counted.
In-process, with a fake Redis on a fake clock."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence
from typing import Any, cast

import httpx
import pytest
from litestar import Litestar, get, post
from litestar.middleware import ASGIMiddleware
from litestar.testing import AsyncTestClient
from litestar.types import ASGIApp, Receive, Scope, Send

from apps.common.auth import Principal
from apps.common.rate_limit import READ_UNIT_BYTES, RateLimitPlugin, ReadBudget, SharedCounts, SyncedLimit
from apps.common.topology import BY_NAME


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class FakeScript:
    """The sync script's arithmetic (INCRBY, the window's time left) for every key, on the fake clock."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.counters: dict[str, tuple[int, float]] = {}

    async def run(self, keys: Sequence[str], args: Sequence[Any]) -> list[int]:
        window_ms, deltas = int(args[0]), args[1:]
        out: list[int] = []
        for key, delta in zip(keys, deltas, strict=True):
            count, expires = self.counters.get(key, (0, 0.0))
            if expires <= self.clock.now:
                count, expires = 0, self.clock.now + window_ms / 1000
            count += int(delta)
            self.counters[key] = (count, expires)
            out += [count, round((expires - self.clock.now) * 1000)]
        return out

    async def close(self) -> None:
        return None


def synced(units: int, window_s: int, clock: Clock) -> SyncedLimit:
    return SyncedLimit(SharedCounts(units, window_s, clock), FakeScript(clock), key_prefix="t:", interval_s=0.001)  # type: ignore[arg-type]


BIG = b"x" * (3 * READ_UNIT_BYTES + 10)  # one unit to be read, three more for its bytes
release, all_in = asyncio.Event(), asyncio.Event()
entered: list[None] = []


@get("/api/big", sync_to_thread=False)
def big() -> bytes:
    return BIG


@get("/api/slow")
async def slow() -> dict[str, bool]:
    entered.append(None)
    if len(entered) == 3:
        all_in.set()
    await release.wait()
    return {"ok": True}


@post("/api/things", sync_to_thread=False)
def write() -> dict[str, bool]:
    return {"ok": True}


class FakeAuth(ASGIMiddleware):
    """The principal from the test's headers: `x-role` and `x-customer`, none for a guest."""

    async def handle(self, scope: Scope, receive: Receive, send: Send, next_app: ASGIApp) -> None:
        headers = dict(scope["headers"])
        role = headers.get(b"x-role", b"").decode()
        if role:
            customer = headers.get(b"x-customer", b"").decode() or None
            scope["user"] = Principal(subject=role, role=role, customer_id=uuid.UUID(customer) if customer else None)  # type: ignore[arg-type]
        await next_app(scope, receive, send)


def app_with(reads: ReadBudget, clock: Clock) -> Litestar:
    config = RateLimitPlugin(BY_NAME["order"]).config(synced(50, 5, clock), reads)
    return Litestar([big, slow, write], middleware=[FakeAuth(), config.middleware], logging_config=None)


def customer() -> dict[str, str]:
    return {"x-role": "customer", "x-customer": str(uuid.uuid4())}


async def settle() -> None:
    """Let the background call to (fake) Redis carry what was charged."""
    await asyncio.sleep(0.02)


async def test_a_customers_reads_cost_what_they_send_and_are_refused_past_the_budget() -> None:
    clock = Clock()
    app = app_with(ReadBudget(synced(10, 60, clock)), clock)
    me = customer()
    async with AsyncTestClient(app=app) as client:
        remaining = []
        for _ in range(3):  # 1 unit each admitted (counts 1, 5, 9), 3 more each once sent: 12 by the end
            answer = await client.get("/api/big", headers=me)
            assert answer.status_code == 200
            remaining.append(answer.headers["RateLimit-Remaining"])
            await settle()
        assert remaining == ["9", "5", "1"]
        refused = await client.get("/api/big", headers=me)
        assert refused.status_code == 429
        detail = f"Too many reads; retry after {refused.headers['Retry-After']} s"
        assert refused.json() == {"status_code": 429, "detail": detail}
        assert 1 <= int(refused.headers["Retry-After"]) <= 60
        assert refused.headers["RateLimit-Policy"] == "10;w=60" and refused.headers["RateLimit-Remaining"] == "0"
        # Nobody else is held back, and this customer's writes have their own budget.
        other = await client.get("/api/big", headers=customer())
        assert other.status_code == 200 and other.headers["RateLimit-Remaining"] == "9"
        for role in ("staff", "admin", "service"):
            answer = await client.get("/api/big", headers={"x-role": role})
            assert answer.status_code == 200 and "RateLimit-Limit" not in answer.headers
        guest = await client.get("/api/big")
        assert guest.status_code == 200 and "RateLimit-Limit" not in guest.headers
        assert (await client.post("/api/things", headers=me)).status_code == 201
        # The window ends: reads again.
        clock.now += 61
        again = await client.get("/api/big", headers=me)
        assert again.status_code == 200 and again.headers["RateLimit-Remaining"] == "9"


async def test_reads_past_the_customers_turns_wait_and_past_the_queue_are_refused() -> None:
    """Two served at once and one waiting (a browser's parallel reads are served in turn); a read finding the
    queue full is refused at once; another customer's reads have turns of their own."""
    clock = Clock()
    reads = ReadBudget(synced(1000, 60, clock), concurrency=2, queue=1)
    me, other = customer(), customer()
    mine = f"customer:{me['x-customer']}"
    release.clear()
    all_in.clear()
    entered.clear()
    # httpx's ASGI transport runs the app on this loop, so the reads are in flight together (the test
    # client's portal would take them one at a time).
    transport = httpx.ASGITransport(app=cast("Any", app_with(reads, clock)))
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        served = [asyncio.ensure_future(client.get("/api/slow", headers=me)) for _ in range(2)]
        theirs = asyncio.ensure_future(client.get("/api/slow", headers=other))
        await asyncio.wait_for(all_in.wait(), 5)  # two of mine and one of theirs in the handler
        waiting = asyncio.ensure_future(client.get("/api/slow", headers=me))
        for _ in range(100):  # until the fourth is queued (a few loop turns through the transport)
            if reads.turns[mine].waiting:
                break
            await asyncio.sleep(0)
        assert len(reads.turns[mine].waiting) == 1
        refused = await client.get("/api/slow", headers=me)
        assert refused.status_code == 429 and refused.headers["Retry-After"] == "1"
        assert "at once" in refused.json()["detail"]
        assert len(entered) == 3  # the waiting read has not reached the handler
        release.set()
        answers = await asyncio.gather(*served, theirs, waiting)
        assert [r.status_code for r in answers] == [200, 200, 200, 200]
        assert reads.turns == {}
        assert (await client.get("/api/slow", headers=me)).status_code == 200


async def test_a_waiting_read_cancelled_gives_its_place_back() -> None:
    clock = Clock()
    reads = ReadBudget(synced(1000, 60, clock), concurrency=1, queue=2)
    assert await reads._turn("c")
    first = asyncio.ensure_future(reads._turn("c"))
    second = asyncio.ensure_future(reads._turn("c"))
    await asyncio.sleep(0)
    first.cancel()  # cancelled while waiting: out of the queue
    await asyncio.sleep(0)
    assert len(reads.turns["c"].waiting) == 1
    reads._pass_turn("c")  # the turn goes to the one still waiting
    assert await second
    handed = asyncio.ensure_future(reads._turn("c"))
    await asyncio.sleep(0)
    reads._pass_turn("c")  # handed over ...
    handed.cancel()  # ... and cancelled before it ran: the turn is passed on, not lost
    with pytest.raises(asyncio.CancelledError):
        await handed
    assert reads.turns == {}


async def test_a_waiter_cancelled_after_a_finishing_read_dropped_it_is_still_a_cancellation() -> None:
    """W33-4: the finishing read skips the cancelled waiter before the waiter runs its handler."""
    reads = ReadBudget(synced(1000, 60, Clock()), concurrency=1, queue=4)
    assert await reads._turn("c")
    waiter = asyncio.ensure_future(reads._turn("c"))
    await asyncio.sleep(0)
    waiter.cancel()
    reads._pass_turn("c")  # drops the cancelled waiter, ends the turn
    with pytest.raises(asyncio.CancelledError):
        await waiter
    assert reads.turns == {}


def test_a_charge_lands_in_the_window_open_when_the_answer_is_sent() -> None:
    clock = Clock()
    counts = SharedCounts(10, 10, clock)
    assert counts.admit("c")[0] == 1
    counts.charge("c", 8)
    assert counts.admit("c")[0] == 10  # 9 seen: admitted as the tenth unit
    assert counts.admit("c")[0] == 11  # refused, not counted
    clock.now += 10  # the window ended while a read was being answered: its cost opens the next one
    counts.charge("c", 9)
    assert counts.admit("c")[0] == 10
    assert counts.admit("c")[0] == 11
    counts.charge("new", 0)
    assert counts.admit("new")[0] == 1


def test_a_malformed_read_budget_names_its_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RATE_LIMIT_READS", "lots")
    with pytest.raises(ValueError, match="RATE_LIMIT_READS"):
        RateLimitPlugin(BY_NAME["order"])
