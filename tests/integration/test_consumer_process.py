"""A consumer process (python -m outbox.runner) crashed, restarted, and starved of its database.

Each test runs a group of its own (tests.support.throwaway_group) on its own topic and table, so the
stack's consumers are never disturbed.
"""

from __future__ import annotations

import asyncio
import re
import time
import uuid
from functools import partial

import httpx
import pytest

from tests.support.consumers import ThrowawayConsumer
from tests.support.http import api_client
from tests.support.orders import eventually
from tests.support.pg_fault import PgFaultProxy, free_port

pytestmark = pytest.mark.usefixtures("stack")


async def _ready_status(port: int) -> int | None:
    try:
        async with api_client(timeout=2) as client:
            return (await client.get(f"http://127.0.0.1:{port}/ready")).status_code
    except httpx.TransportError:
        return None


async def _all_applied_once(consumer: ThrowawayConsumer, event_ids: list[uuid.UUID]) -> bool:
    return sorted(await consumer.applied(event_ids)) == sorted(event_ids)


@pytest.mark.slow
async def test_a_consumer_restarted_after_sigkill_applies_a_new_event_within_10_s() -> None:
    metrics_port = free_port()
    async with ThrowawayConsumer(metrics_port=metrics_port) as consumer:
        consumer.start()
        first = consumer.produce()
        await eventually(lambda: _all_applied_once(consumer, [first]), what="the first event applied")

        consumer.kill()  # SIGKILL: the broker still counts the dead member until its session expires
        restarted = time.monotonic()
        consumer.start()
        second = consumer.produce()
        await eventually(lambda: _is_ready(metrics_port), within=30, what="the restarted consumer ready")
        ready = time.monotonic() - restarted
        await eventually(lambda: _all_applied_once(consumer, [second]), within=30, what="the event after restart")
        recovery = time.monotonic() - restarted
        # Before the 6 s session timeout this took ~45 s (Kafka's default session of the dead member).
        print(f"consumer recovery after SIGKILL: ready {ready:.1f}s, next event applied {recovery:.1f}s after restart")
        assert recovery < 10, f"a restarted consumer took {recovery:.1f}s to apply a new event"
        assert sorted(await consumer.applied([first, second])) == sorted([first, second])


# What the consumer's log says of a retry in each mode (outbox.runtime: "transient error (...), retry N").
_RETRIED = {
    "refuse": re.compile(r"transient error \(.*(Connection refused|Connect call failed)"),
    "starting_up": re.compile(r"transient error \(the database system is starting up"),
    "too_many": re.compile(r"transient error \(sorry, too many clients already"),
}


@pytest.mark.slow
async def test_a_consumer_backs_off_while_its_database_refuses_connections_and_applies_everything_after(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    metrics_port = free_port()
    async with PgFaultProxy() as proxy:
        url = _through(proxy.port)
        async with ThrowawayConsumer(metrics_port=metrics_port, database_url=url) as consumer:
            # Retries at most 0.5 s apart instead of up to 30 s (outbox.runner --max-backoff): several in
            # each mode within a second or two, where 4 s per mode with the growing backoff saw one or two.
            monkeypatch.setenv("OUTBOX_MAX_BACKOFF_S", "0.5")
            consumer.start()
            monkeypatch.undo()
            events = [consumer.produce() for _ in range(20)]
            await eventually(lambda: _answers(metrics_port), within=30, what="the probe server up")
            # Refused, then "the database system is starting up", then "too many clients": each until the
            # batch was retried three times in it; the process must neither exit nor apply anything, nor
            # say ready.
            for mode in ("refuse", "starting_up", "too_many"):
                await proxy.set_mode(mode)
                await eventually(partial(_retried, consumer, mode, 3), within=60, what=f"three retries in {mode}")
                assert consumer.alive, f"the consumer exited while its database answered {mode!r}"
                assert await _ready_status(metrics_port) == 503, mode
            assert await consumer.applied(events) == []

            await proxy.set_mode("forward")
            await eventually(lambda: _all_applied_once(consumer, events), within=60, what="every event applied")
            await eventually(lambda: _is_ready(metrics_port), within=10, what="/ready answering 200")
            assert consumer.alive
            assert await consumer.terminate() == 0
            assert sorted(await consumer.applied(events)) == sorted(events)  # once each, none twice


async def _retried(consumer: ThrowawayConsumer, mode: str, times: int) -> bool:
    """The batch retried ``times`` times in ``mode`` (or the process is gone: the caller's assert says so)."""
    log = await asyncio.to_thread(consumer.log.read_text)
    return not consumer.alive or len(_RETRIED[mode].findall(log)) >= times


async def _answers(port: int) -> bool:
    return await _ready_status(port) is not None


async def _is_ready(port: int) -> bool:
    return await _ready_status(port) == 200


def _through(port: int) -> str:
    from apps.common.topology import BY_NAME, database_url, pg_port

    url = database_url(BY_NAME["customer"])
    return url.replace(f":{pg_port()}/", f":{port}/")
