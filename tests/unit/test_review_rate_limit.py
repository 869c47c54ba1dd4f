"""Review (session 28, W) of 31e13ed's stated bound: N processes admit at most ``limit + N * m`` per caller and
window. What m must count: the writes one process admits between two ANSWERS of Redis (its interval plus a
round trip), not between two sends (test_rate_limit_counts' ``most_between_sends``). Writes admitted while a
call is in flight are decided on the answer before it, so one stale view carries two batches: with N = 3,
limit 100 and batches of 10 the processes admit 140, past ``limit + N * 10`` = 130 and within
``limit + N * 20`` = 160."""

from __future__ import annotations

from apps.common.rate_limit import Sent, SharedCounts
from tests.unit.test_rate_limit_counts import Clock, FakeRedis

LIMIT, BATCH = 100, 10


def test_writes_admitted_while_a_call_is_in_flight_count_in_m() -> None:
    clock = Clock()
    redis = FakeRedis(clock)
    a, b, c = (SharedCounts(LIMIT, 60, clock) for _ in range(3))
    admitted = 0
    since_answer = {id(p): 0 for p in (a, b, c)}  # admitted since the process's last answer
    most_between_answers = 0

    def burst(counts: SharedCounts) -> None:
        nonlocal admitted
        for _ in range(BATCH):
            if counts.admit("k")[0] <= LIMIT:
                admitted += 1
                since_answer[id(counts)] += 1

    def answer(counts: SharedCounts, sent: Sent) -> None:
        nonlocal most_between_answers
        counts.settle(sent, redis.sync(sent, 60_000))
        most_between_answers = max(most_between_answers, since_answer[id(counts)])
        since_answer[id(counts)] = 0

    for _ in range(8):  # c alone, batch after batch: Redis and c's view at 80
        burst(c)
        answer(c, c.take_unsent())
    flying: list[tuple[SharedCounts, Sent]] = []
    for counts in (a, b, c):  # each sends a batch; while it is in flight, admits the next on the same view
        burst(counts)
        flying.append((counts, counts.take_unsent()))
        burst(counts)
    for counts, sent in flying:
        answer(counts, sent)
    for counts in (a, b, c):
        answer(counts, counts.take_unsent())
    assert redis.counters["k"][0] == admitted == 140
    assert admitted > LIMIT + 3 * BATCH  # m counted between sends (one batch) does not bound it
    assert most_between_answers == 2 * BATCH
    assert admitted <= LIMIT + 3 * most_between_answers
