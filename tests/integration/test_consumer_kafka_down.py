"""A consumer started while Kafka cannot be reached waits for it instead of exiting.

Found by a saga fault run with overlapping kills (session 29): the order-saga consumer, restarted while the
broker was itself restarting, exited at once (its topic check's metadata request: Local: Broker transport
failure) and stayed down. A throwaway consumer pointed at a port nothing listens on must stay up, say it is
not ready, and still stop cleanly on SIGTERM.
"""

from __future__ import annotations

import asyncio
import re

import pytest

from tests.support.consumers import ThrowawayConsumer
from tests.support.orders import eventually
from tests.support.pg_fault import free_port

pytestmark = pytest.mark.usefixtures("stack")


async def test_a_consumer_started_without_a_reachable_broker_waits_and_stops_cleanly(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async with ThrowawayConsumer() as consumer:
        monkeypatch.setenv("KAFKA_BOOTSTRAP", f"127.0.0.1:{free_port()}")
        # The topic check's metadata request gives up after 2 s instead of 10 (outbox.topics), so the
        # failure where it used to exit comes twice in seconds.
        monkeypatch.setenv("OUTBOX_KAFKA_METADATA_TIMEOUT_S", "2")
        consumer.start()
        monkeypatch.undo()  # the process keeps them; the test's own Kafka calls (the clean-up) do not

        async def failed_twice() -> bool:
            log = await asyncio.to_thread(consumer.log.read_text)
            return not consumer.alive or re.search(r"Kafka unreachable .*, retry 2 in ", log) is not None

        await eventually(failed_twice, within=60, what="a second failed topic check")
        log = await asyncio.to_thread(consumer.log.read_text)
        assert consumer.alive, log[-2000:]
        assert "Kafka unreachable" in log
        assert await consumer.terminate() == 0
