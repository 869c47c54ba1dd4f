"""The runtime's prefetch thread (outbox.runtime.Prefetcher): one fetch per request, in order, answered on the
event loop, errors raised where the batch is awaited, never two fetches at once."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from outbox.runtime import Prefetcher


class Counting:
    """A fetch that numbers its calls, notes the thread it ran on and whether calls ever overlapped."""

    def __init__(self, *, fail_on: int | None = None, delay: float = 0.0) -> None:
        self.calls = 0
        self.threads: set[int] = set()
        self.running = False
        self.overlapped = False
        self.fail_on = fail_on
        self.delay = delay

    def __call__(self) -> int:
        self.overlapped |= self.running
        self.running = True
        try:
            self.calls += 1
            self.threads.add(threading.get_ident())
            time.sleep(self.delay)
            if self.calls == self.fail_on:
                raise RuntimeError(f"fetch {self.calls} failed")
            return self.calls
        finally:
            self.running = False


async def test_each_request_gets_the_next_fetch_run_off_the_event_loop() -> None:
    fetch = Counting()
    prefetcher = Prefetcher(fetch, asyncio.get_running_loop())
    try:
        results = [await prefetcher.request() for _ in range(5)]
    finally:
        prefetcher.close()
    assert results == [1, 2, 3, 4, 5]
    assert len(fetch.threads) == 1 and threading.get_ident() not in fetch.threads


async def test_a_fetch_that_raises_raises_where_it_is_awaited_and_the_next_one_runs() -> None:
    fetch = Counting(fail_on=2)
    prefetcher = Prefetcher(fetch, asyncio.get_running_loop())
    try:
        assert await prefetcher.request() == 1
        with pytest.raises(RuntimeError, match="fetch 2 failed"):
            await prefetcher.request()
        assert await prefetcher.request() == 3
    finally:
        prefetcher.close()


async def test_requests_made_before_the_answers_run_one_at_a_time_in_order() -> None:
    fetch = Counting(delay=0.01)
    prefetcher = Prefetcher(fetch, asyncio.get_running_loop())
    try:
        futures = [prefetcher.request() for _ in range(3)]
        assert await asyncio.gather(*futures) == [1, 2, 3]
    finally:
        prefetcher.close()
    assert not fetch.overlapped


async def test_close_lets_the_fetch_in_flight_finish_and_ends_the_thread() -> None:
    fetch = Counting(delay=0.05)
    prefetcher = Prefetcher(fetch, asyncio.get_running_loop())
    in_flight = prefetcher.request()
    prefetcher.close()
    assert await in_flight == 1
    await asyncio.to_thread(prefetcher._thread.join, 2)
    assert not prefetcher._thread.is_alive()
    assert fetch.calls == 1


async def test_a_request_cancelled_while_its_fetch_runs_is_left_alone() -> None:
    fetch = Counting(delay=0.05)
    prefetcher = Prefetcher(fetch, asyncio.get_running_loop())
    try:
        first = prefetcher.request()
        first.cancel()
        assert await prefetcher.request() == 2  # the first fetch's answer found its future cancelled
    finally:
        prefetcher.close()
