"""The rate limit's counting (apps/common/rate_limit.py ``SharedCounts``) on a fake clock, with a fake Redis
that runs the sync script's arithmetic: one process is exact; N processes sharing a caller admit at most
``limit + N * m`` (m: the most one process admits between two answers of Redis) and never ``N * limit``;
refused writes are not counted; windows end; a failed call keeps what it carried."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any, cast

import pytest

from apps.common.rate_limit import Sent, SharedCounts, SyncedLimit
from apps.common.redis_store import OwnConnectionScript


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@dataclass
class FakeRedis:
    """The sync script's INCRBY / PTTL / PEXPIRE per key, on the fake clock."""

    clock: Clock
    counters: dict[str, tuple[int, float]] = field(default_factory=dict)

    def sync(self, batch: Sent, window_ms: int) -> list[tuple[int, int]]:
        answers = []
        for key, _, delta in batch:
            count, expires = self.counters.get(key, (0, 0.0))
            if expires <= self.clock.now:
                count, expires = 0, self.clock.now + window_ms / 1000
            count += delta
            self.counters[key] = (count, expires)
            answers.append((count, round((expires - self.clock.now) * 1000)))
        return answers


def test_one_process_is_exact_and_a_refused_write_is_not_counted() -> None:
    clock = Clock()
    counts = SharedCounts(3, 5, clock)
    assert [counts.admit("c")[0] for _ in range(5)] == [1, 2, 3, 4, 4]  # past 3: refused, not counted
    assert counts.admit("other")[0] == 1  # each caller has their own budget
    batch = counts.take_unsent()
    assert sorted((key, delta) for key, _, delta in batch) == [("c", 3), ("other", 1)]
    assert counts.admit("c")[0] == 4  # sending: still in the view
    counts.settle(batch, [(3, 4000), (1, 4000)])
    assert counts.admit("c") == (4, clock.now + 4.0)
    assert not counts.has_unsent


def test_other_processes_writes_arrive_with_the_answer() -> None:
    clock = Clock()
    redis = FakeRedis(clock)
    a, b = SharedCounts(10, 60, clock), SharedCounts(10, 60, clock)
    for _ in range(10):
        assert a.admit("c")[0] <= 10
    a.settle(batch := a.take_unsent(), redis.sync(batch, 60_000))
    assert b.admit("c")[0] == 1  # b has not heard of it yet: admitted (the bound's overshoot)
    b.settle(batch := b.take_unsent(), redis.sync(batch, 60_000))
    assert b.admit("c")[0] == 12  # 11 in Redis: refused
    assert a.admit("c")[0] == 11  # a still believes 10: refused as well
    assert redis.counters["c"][0] == 11


def test_the_window_ends_and_what_was_not_sent_in_it_is_dropped() -> None:
    clock = Clock()
    counts = SharedCounts(2, 5, clock)
    counts.admit("c")
    counts.admit("c")
    assert counts.admit("c")[0] == 3
    clock.now += 5.0
    assert counts.admit("c") == (1, clock.now + 5)  # a new window: the two unsent writes belong to the old
    assert [delta for _, _, delta in counts.take_unsent()] == [1]


def test_redis_names_the_window_end() -> None:
    clock = Clock()
    counts = SharedCounts(5, 5, clock)
    counts.admit("c")
    counts.settle(counts.take_unsent(), [(4, 1500)])  # another process's window, 1.5 s left
    clock.now += 1.0
    assert counts.admit("c") == (5, clock.now + 0.5)
    clock.now += 0.5
    assert counts.admit("c")[0] == 1


def test_a_failed_call_keeps_what_it_carried_until_the_window_ends() -> None:
    clock = Clock()
    counts = SharedCounts(5, 5, clock)
    counts.admit("c")
    counts.admit("d")
    batch = counts.take_unsent()
    counts.admit("c")
    counts.unsent(batch)
    batch = counts.take_unsent()
    assert sorted((key, delta) for key, _, delta in batch) == [("c", 2), ("d", 1)]
    clock.now += 5.0
    counts.unsent(batch)
    assert counts.take_unsent() == []  # their window ended: nothing to send
    assert counts.admit("c")[0] == 1


def test_callers_whose_window_ended_are_forgotten() -> None:
    clock = Clock()
    counts = SharedCounts(5, 2, clock)
    for i in range(100):
        counts.admit(f"c{i}")
    batch = counts.take_unsent()
    clock.now += 1.0
    counts.settle(batch, [(1, 2000)] * 100)
    assert len(counts) == 100
    clock.now += 2.5
    counts.admit("late")
    counts.prune(clock.now)
    assert len(counts) == 1


@pytest.mark.parametrize(
    ("processes", "limit", "per_ms", "rtt_ms"),
    [
        (1, 50, 1.0, 2),
        (2, 50, 0.5, 2),
        (4, 50, 2.0, 5),
        (8, 200, 3.0, 1),
        (3, 20, 0.05, 3),
        (16, 100, 4.0, 20),
        (2, 1000, 0.8, 2),
    ],
)
def test_n_processes_admit_at_most_limit_plus_n_times_one_interval(
    processes: int, limit: int, per_ms: float, rtt_ms: int
) -> None:
    """A caller spread over N processes at ``per_ms`` writes per ms; each process calls Redis 50 ms after its
    first write since its last answer, the answer arriving ``rtt_ms`` later; the window outlasts the run."""
    rng = random.Random(processes * 1000 + limit)
    clock = Clock()
    redis = FakeRedis(clock)
    procs = [SharedCounts(limit, 60, clock) for _ in range(processes)]
    due: list[float | None] = [None] * processes  # when each process's next call is sent
    flying: list[tuple[float, Sent] | None] = [None] * processes
    admitted = [0] * processes
    since_answer = [0] * processes  # admitted since this process's last answer from Redis
    most_between_answers = 0
    for _ in range(3000):  # 3 s in 1-ms steps
        clock.now += 0.001
        for p in range(processes):
            answer = flying[p]
            if answer is not None and clock.now >= answer[0]:
                procs[p].settle(answer[1], redis.sync(answer[1], 60_000))  # applied in Redis on arrival: conservative
                flying[p] = None
                most_between_answers = max(most_between_answers, since_answer[p])
                since_answer[p] = 0
                if procs[p].has_unsent:
                    due[p] = clock.now + 0.05
            send_at = due[p]
            if send_at is not None and clock.now >= send_at and flying[p] is None:
                flying[p] = (clock.now + rtt_ms / 1000, procs[p].take_unsent())
                due[p] = None
        writes = int(per_ms) + (rng.random() < per_ms % 1)
        for _ in range(writes):
            p = rng.randrange(processes)
            count, _ = procs[p].admit("c")
            if count <= limit:
                admitted[p] += 1
                since_answer[p] += 1
                if due[p] is None and flying[p] is None:
                    due[p] = clock.now + 0.05
    most_between_answers = max([most_between_answers, *since_answer])
    total = sum(admitted)
    assert total >= limit  # the demand is above the limit in every case: the budget is used
    assert total <= processes * limit
    assert total <= limit + processes * most_between_answers, (total, most_between_answers)
    if processes == 1:
        assert total == limit


async def test_a_call_that_fails_in_any_way_fails_open_and_keeps_what_it_carried() -> None:
    class Broken:
        async def run(self, keys: Any, args: Any) -> Any:
            raise RuntimeError("not a Redis error")

        async def close(self) -> None:
            return None

    synced = SyncedLimit(SharedCounts(5, 5), cast("OwnConnectionScript", Broken()), key_prefix="x:")
    try:
        assert synced.admit("c") is not None
        await synced.sync()
        assert synced.down
        assert synced.admit("c") is None  # let through, not counted
        assert [(key, delta) for key, _, delta in synced.counts.take_unsent()] == [("c", 1)]
    finally:
        await synced.close()
