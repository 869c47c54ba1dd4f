"""The consumer runtime against the real stack: order events -> Debezium -> Kafka -> customer_stats.

Every test uses its own customer id, so the shared projection can be read per test.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from decimal import Decimal
from typing import Any

import pytest

from apps.common.topology import kafka_bootstrap, topic_for
from apps.customer import consumers as customer_consumers
from infra import kafka_tools
from outbox import replay, topics
from outbox.dead_letters import dead_letter_topic
from outbox.topics import PARTITIONS
from tests.support import consumers
from tests.support.consumers import ThrowawayConsumer
from tests.support.db import connect
from tests.support.dead_letters import acknowledging_repeats
from tests.support.http import api_client
from tests.support.kafka import TopicTail, delete_group_topics
from tests.support.orders import (
    eventually,
    order_cancelled,
    order_created,
    order_engine,
    produce_copy,
    produce_raw,
    stats,
    stats_checksum,
    write_events,
)
from tests.support.pg_fault import free_port
from tests.support.replay import (
    Snapshot,
    assert_identical_apart_from_later_events,
    caught_up_to,
    committed_offsets,
    projection,
)

pytestmark = pytest.mark.usefixtures("stack")

GROUP = "customer-stats"
CONSUMER = "customer-consumer"
ORDER_TOPIC = topic_for("order")


def new_customer() -> str:
    return str(uuid.uuid4())


async def orders_count_is(customer: str, expected: int) -> bool:
    row = await stats(customer)
    return row is not None and row["orders_count"] == expected


async def inbox_rows(event_ids: list[uuid.UUID]) -> list[dict[str, Any]]:
    conn = await connect("customer")
    try:
        rows = await conn.fetch(
            "SELECT event_id, outcome FROM inbox WHERE consumer_group = $1 AND event_id = ANY($2::uuid[])",
            GROUP,
            event_ids,
        )
        return [dict(r) for r in rows]
    finally:
        await conn.close()


async def caught_up() -> bool:
    plans = await asyncio.to_thread(
        replay.plan,
        GROUP,
        [ORDER_TOPIC],
        to_earliest=False,
        to_datetime=None,
        to_offset=0,
        bootstrap=kafka_bootstrap(),
    )
    return all(p.current == p.end for p in plans)


async def test_event_written_in_a_transaction_is_applied_exactly_once() -> None:
    customer = new_customer()
    engine = order_engine()
    events = [order_created(customer, total) for total in ("10.00", "20.50", "7.25")]
    records = await write_events(engine, events)
    await eventually(lambda: orders_count_is(customer, 3), what="three orders applied")

    # Deliver every event a second time (what Debezium does after a crash), then one new order.
    for record, ev in zip(records, events, strict=True):
        produce_copy(ORDER_TOPIC, record, ev)
    await write_events(engine, [order_created(customer, "1.00")])
    await engine.dispose()
    await eventually(lambda: orders_count_is(customer, 4), what="the fourth order applied")

    row = await stats(customer)
    assert row is not None
    assert row["spent"] == Decimal("38.75")
    assert sorted(r["outcome"] for r in await inbox_rows([r.event_id for r in records])) == ["applied"] * 3


async def test_rolled_back_transaction_is_never_applied() -> None:
    customer = new_customer()
    engine = order_engine()
    from sqlalchemy.ext.asyncio import async_sessionmaker

    from outbox.writer import add_event

    doomed = order_created(customer, "999.00")
    async with async_sessionmaker(engine)() as session:
        await session.begin()
        await add_event(session, doomed.order_id, doomed)
        await session.rollback()
    await write_events(engine, [order_created(customer, "5.00")])  # the marker that must arrive
    await engine.dispose()
    await eventually(lambda: orders_count_is(customer, 1), what="the committed order applied")

    row = await stats(customer)
    assert row is not None
    assert (row["orders_count"], row["spent"]) == (1, Decimal("5.00"))


async def test_cancellation_counts_and_removes_spend() -> None:
    customer = new_customer()
    engine = order_engine()
    created = order_created(customer, "40.00")
    await write_events(engine, [created, order_created(customer, "2.00"), order_cancelled(created)])
    await engine.dispose()

    async def cancelled() -> bool:
        row = await stats(customer)
        return row is not None and row["cancelled_count"] == 1 and row["orders_count"] == 2

    await eventually(cancelled, what="the cancellation applied")
    row = await stats(customer)
    assert row is not None
    assert row["spent"] == Decimal("2.00")


async def test_concurrent_writers_on_one_aggregate_get_consecutive_versions() -> None:
    engine = order_engine()
    from sqlalchemy.ext.asyncio import async_sessionmaker

    from outbox.writer import add_event

    created = order_created(new_customer())
    sessions = async_sessionmaker(engine, expire_on_commit=False)

    async def write_one() -> int:
        async with sessions() as session, session.begin():
            record = await add_event(session, created.order_id, created)
            await asyncio.sleep(0.01)  # hold the lock a little, so writers really overlap
            return record.event_version

    versions = await asyncio.gather(*(write_one() for _ in range(20)))
    await engine.dispose()
    assert sorted(versions) == list(range(1, 21))


async def test_poison_messages_go_to_the_dead_letter_topic_and_later_events_apply() -> None:
    # A runner process of its own (the stack's consumers run the same runtime): poison written to
    # commerce.order would stay there for the topic's retention, and every later replay of an order group
    # would dead-letter it again, so DeadLettersPending would fire on a stack that only ran the tests.
    async with ThrowawayConsumer() as consumer:
        dlq = TopicTail(dead_letter_topic(consumer.group))
        consumer.start()
        undecodable = produce_raw(
            consumer.topic, key=str(uuid.uuid4()), event_type="order.created", payload={"order_id": "not-a-uuid"}
        )
        rejected = consumer.produce("x" * 40)  # decodes, but the table's customer_id is VARCHAR(36)
        later = consumer.produce()
        await eventually(lambda: _applied_once(consumer, later), within=90, what="the event after the poison applied")

        letters = await asyncio.to_thread(
            dlq.read_until, lambda seen: {str(undecodable), str(rejected)} <= {r.event_id for r in seen}
        )
        dlq.close()
        by_id = {r.event_id: r for r in letters}
        assert "order_id" in by_id[str(undecodable)].headers["dlq.error"]
        assert by_id[str(undecodable)].headers["dlq.original_topic"] == consumer.topic
        assert by_id[str(rejected)].headers["dlq.error_type"] in {
            "DataError",
            "DBAPIError",
            "StringDataRightTruncationError",
        }
        assert await consumer.outcomes([rejected]) == ["dead_lettered"]


async def test_redrive_sends_a_dead_letter_back_to_its_topic() -> None:
    from outbox import dlq as dead_letters
    from outbox.events import payload_as_dict

    async with ThrowawayConsumer() as consumer:
        consumer.start()
        too_long = order_created("y" * 40)
        rejected = produce_raw(
            consumer.topic, key=str(too_long.order_id), event_type="order.created", payload=payload_as_dict(too_long)
        )
        await eventually(
            lambda: _outcome_is(consumer, rejected, "dead_lettered"),
            within=90,
            what="the rejected event dead-lettered",
        )
        tail = TopicTail(consumer.topic)
        sent = await asyncio.to_thread(dead_letters.redrive, consumer.group, {rejected})
        assert sent >= 1
        records = await asyncio.to_thread(tail.read_until, lambda seen: str(rejected) in {r.event_id for r in seen})
        tail.close()
        again = next(r for r in records if r.event_id == str(rejected))
        assert again.key == str(too_long.order_id)
        assert not any(name.startswith("dlq.") for name in again.headers)
        assert again.headers["redrive.group"] == consumer.group


async def _outcome_is(consumer: ThrowawayConsumer, event_id: uuid.UUID, outcome: str) -> bool:
    return await consumer.outcomes([event_id]) == [outcome]


async def _applied_once(consumer: ThrowawayConsumer, event_id: uuid.UUID) -> bool:
    return await consumer.applied([event_id]) == [event_id]


async def test_consumer_metrics_are_exposed() -> None:
    # An event of its own first: the applied sample exists only once this process has applied an order.created,
    # and a consumer restarted since the last one (another test's, an operator's) has none yet.
    customer = new_customer()
    engine = order_engine()
    await write_events(engine, [order_created(customer, "1.25")], per_transaction=1)
    await engine.dispose()
    await eventually(lambda: orders_count_is(customer, 1), within=60, what="the event applied")
    async with api_client() as client:
        body = (await client.get("http://127.0.0.1:8102/metrics")).text
    assert 'outbox_consumer_events_total{event_type="order.created",group="customer-stats",outcome="applied"}' in body
    assert "outbox_consumer_lag" in body
    assert "outbox_consumer_batch_seconds_bucket" in body


async def test_a_running_consumer_is_ready_once_it_owns_partitions_and_reached_its_database() -> None:
    async with api_client() as client:
        response = await client.get("http://127.0.0.1:8102/ready")
    assert response.status_code == 200
    # It owns every partition of the topics its handlers read (commerce.order and commerce.return).
    owned = len(customer_consumers.group.topics) * PARTITIONS
    assert response.json() == {"ready": True, "group": GROUP, "partitions": owned, "database": True}


@pytest.mark.slow
async def test_consumer_killed_mid_batch_applies_every_event_once_after_restart() -> None:
    customer = new_customer()
    total_events = 3000
    await consumers.stop(CONSUMER)
    try:
        engine = order_engine()
        await write_events(engine, [order_created(customer, "1.25") for _ in range(total_events)], per_transaction=100)
        await engine.dispose()
        # Small batches and a tight watch, so the kill lands mid-stream on a fast machine too: with batches of
        # 20 and eventually()'s 0.1 s poll, a machine twice as fast applied all 3,000 before the kill.
        await consumers.start(CONSUMER, "--batch-size", "5")
        deadline = time.monotonic() + 60
        while (row := await stats(customer)) is None or row["orders_count"] == 0:
            assert time.monotonic() < deadline, "no batch applied within 60 s"
            await asyncio.sleep(0.01)
        await consumers.kill(CONSUMER)  # SIGKILL: no graceful shutdown, offsets of the batch in flight not committed
        row = await stats(customer)
        assert row is not None and row["orders_count"] < total_events, "the crash came too late to prove anything"
    finally:
        await consumers.start(CONSUMER)
    await eventually(lambda: orders_count_is(customer, total_events), within=120, what="all events applied")
    row = await stats(customer)
    assert row is not None
    assert row["spent"] == Decimal("1.25") * total_events


@pytest.mark.slow
async def test_database_connections_dropped_mid_stream_are_retried_without_losing_an_event() -> None:
    customer = new_customer()
    total_events = 2000
    engine = order_engine()
    await write_events(engine, [order_created(customer, "0.50")])
    await eventually(lambda: orders_count_is(customer, 1), what="the warm-up event applied")
    retries_before = await _metric("outbox_consumer_retries_total")
    # The consumer's pooled connections die while it is idle, and again and again while it works.
    await _terminate_consumer_connections()
    written = asyncio.Event()

    async def write() -> None:
        try:
            more = [order_created(customer, "0.50") for _ in range(total_events - 1)]
            await write_events(engine, more, per_transaction=50)
        finally:
            written.set()

    async def keep_terminating() -> None:
        while not written.is_set():
            await _terminate_consumer_connections()
            await asyncio.sleep(0.1)

    await asyncio.gather(write(), keep_terminating())
    await engine.dispose()
    await eventually(lambda: orders_count_is(customer, total_events), within=120, what="all events applied")
    row = await stats(customer)
    assert row is not None and row["spent"] == Decimal("0.50") * total_events
    assert await _metric("outbox_consumer_retries_total") > retries_before


async def _terminate_consumer_connections() -> None:
    conn = await connect("customer")
    try:
        await conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1", f"consumer:{GROUP}"
        )
    finally:
        await conn.close()


async def _metric(name: str) -> float:
    async with api_client() as client:
        body = (await client.get("http://127.0.0.1:8102/metrics")).text
    return sum(float(line.rsplit(" ", 1)[1]) for line in body.splitlines() if line.startswith(name + "{"))


@pytest.mark.slow
async def test_replay_refuses_while_the_group_has_live_members(capsys: pytest.CaptureFixture[str]) -> None:
    code = await asyncio.to_thread(replay.main, [GROUP, "--to-earliest"])
    assert code == 2
    assert "live member" in capsys.readouterr().err


@pytest.mark.slow
async def test_replay_from_earliest_with_rebuild_leaves_the_projection_identical() -> None:
    await eventually(caught_up, within=120, what="the group caught up before the replay")
    async with acknowledging_repeats(GROUP):
        before = await stopped_snapshot()
        try:
            code = await asyncio.to_thread(replay.main, [GROUP, "--to-earliest", "--rebuild"])
            assert code == 0
            assert await stats_checksum() == await _empty_checksum()
        finally:
            await consumers.start(CONSUMER)
        await eventually(lambda: caught_up_to(before.committed), within=180, what="the replay caught up")
        after = await stopped_snapshot()
    await consumers.start(CONSUMER)
    # The saga and the sweeper keep publishing for earlier tests' orders: compare apart from those.
    assert_identical_apart_from_later_events(before, after, set())


@pytest.mark.slow
async def test_kafka_tool_reset_to_earliest_is_a_no_op_for_the_projection() -> None:
    await eventually(caught_up, within=120, what="the group caught up before the reset")
    async with acknowledging_repeats(GROUP):
        before = await stopped_snapshot()
        try:
            argv = kafka_tools.command(
                "consumer-groups",
                ["--group", GROUP, "--topic", ORDER_TOPIC, "--reset-offsets", "--to-earliest", "--execute"],
            )
            process = await asyncio.create_subprocess_exec(*argv, stdout=asyncio.subprocess.PIPE)
            out, _ = await process.communicate()
            assert process.returncode == 0, out
        finally:
            await consumers.start(CONSUMER)
        await eventually(lambda: caught_up_to(before.committed), within=180, what="the redelivery caught up")
        after = await stopped_snapshot()
    await consumers.start(CONSUMER)
    assert_identical_apart_from_later_events(before, after, set())


async def stopped_snapshot() -> Snapshot:
    """customer_stats and the committed offsets, matched exactly: taken with the consumer stopped."""
    await consumers.stop(CONSUMER)
    return Snapshot(await projection(), await committed_offsets())


async def _empty_checksum() -> str:
    conn = await connect("customer")
    try:
        return str(await conn.fetchval("SELECT md5('')"))
    finally:
        await conn.close()


async def run_one_event_per_batch(group: Any, topic: str, runtimes: list[Any]) -> None:
    """Run ``group`` on the customer database, one event per batch, until a handler stops ``runtimes[0]``;
    then delete its topic and Kafka group."""
    from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine

    from apps.common.topology import BY_NAME, database_url
    from outbox.runtime import ConsumerRuntime

    engine = create_async_engine(database_url(BY_NAME["customer"]))
    runtimes.append(ConsumerRuntime(group, async_sessionmaker(engine), batch_size=1))
    try:
        await asyncio.wait_for(runtimes[0].run(), timeout=60)
    finally:
        await engine.dispose()
        delete_group_topics(group.name, topic)


@pytest.mark.parametrize("track_versions", [True, False])
async def test_a_handler_sees_skipped_and_repeated_versions_of_an_aggregate(track_versions: bool) -> None:

    from outbox.consumer import ConsumerGroup, EventContext
    from outbox.events import payload_as_dict
    from outbox.topics import ensure_topics

    topic = f"test.versions.{uuid.uuid4().hex[:8]}"
    ensure_topics(kafka_bootstrap(), [topic], partitions=1)
    order = order_created(new_customer())
    for version in (1, 3, 2):  # v2 never arrived before v3: a gap; then v2 arrives late: stale
        produce_raw(
            topic,
            key=str(order.order_id),
            event_type="order.created",
            payload=payload_as_dict(order),
            event_version=version,
        )
    group = ConsumerGroup(
        f"test-versions-{uuid.uuid4().hex[:8]}", topic_override=[topic], track_versions=track_versions
    )
    seen: list[EventContext] = []

    runtimes: list[Any] = []

    @group.handler("order.created")
    async def record(session: Any, event: Any, ctx: EventContext) -> None:
        seen.append(ctx)
        if len(seen) == 3:
            runtimes[0].stop()

    await run_one_event_per_batch(group, topic, runtimes)
    assert [c.event_version for c in seen] == [1, 3, 2]
    if track_versions:
        assert [c.previous_version for c in seen] == [None, 1, 3]
        assert [c.is_gap for c in seen] == [False, True, False]
        assert [c.is_stale for c in seen] == [False, False, True]
    else:
        assert [c.previous_version for c in seen] == [None, None, None]


async def test_events_a_handler_skips_leave_no_inbox_row_and_no_version_gap() -> None:
    import datetime as dt

    import msgspec
    from prometheus_client import REGISTRY

    from apps.order.events import OrderConfirmed
    from outbox.consumer import ConsumerGroup, EventContext
    from outbox.events import payload_as_dict
    from outbox.topics import ensure_topics

    topic = f"test.skips.{uuid.uuid4().hex[:8]}"
    ensure_topics(kafka_bootstrap(), [topic], partitions=1)
    pending = msgspec.structs.replace(order_created(new_customer()), status="pending")
    confirmed = OrderConfirmed(
        **{k: v for k, v in msgspec.structs.asdict(pending).items() if k != "status"},
        payment_status="authorized",
        confirmed_at=dt.datetime.now(dt.UTC),
    )
    sentinel = order_created(new_customer())  # born confirmed: applied, and it stops the runtime
    key = str(pending.order_id)
    created_id = produce_raw(topic, key=key, event_type="order.created", payload=payload_as_dict(pending))
    produce_raw(topic, key=key, event_type="order.confirmed", payload=payload_as_dict(confirmed), event_version=2)
    # The skipped event again (a redelivery), after its successor was applied: skipped again, never stale.
    produce_raw(topic, key=key, event_type="order.created", payload=payload_as_dict(pending), event_id=created_id)
    produce_raw(topic, key=str(sentinel.order_id), event_type="order.created", payload=payload_as_dict(sentinel))
    group = ConsumerGroup(f"test-skips-{uuid.uuid4().hex[:8]}", topic_override=[topic])
    seen: list[EventContext] = []

    runtimes: list[Any] = []

    async def record(session: Any, items: Any) -> None:
        seen.extend(ctx for _, ctx in items)
        if any(ctx.aggregate_id == sentinel.order_id for _, ctx in items):
            runtimes[0].stop()

    group.batch_handler("order.created", skip=lambda event: event.status != "confirmed")(record)
    group.batch_handler("order.confirmed")(record)
    await run_one_event_per_batch(group, topic, runtimes)
    conn = await connect("customer")
    try:
        rows = await conn.fetch("SELECT event_type FROM inbox WHERE consumer_group = $1", group.name)
        await conn.execute("DELETE FROM inbox WHERE consumer_group = $1", group.name)
    finally:
        await conn.close()
    assert [(c.event_type, c.event_version, c.previous_version) for c in seen] == [
        ("order.confirmed", 2, None),  # v1 was skipped: first seen, not a gap
        ("order.created", 1, None),
    ]
    assert not any(c.is_gap or c.is_stale for c in seen)
    assert sorted(r["event_type"] for r in rows) == ["order.confirmed", "order.created"]  # the applied two only
    ignored = {"group": group.name, "event_type": "order.created", "outcome": "ignored"}
    assert REGISTRY.get_sample_value("outbox_consumer_events_total", ignored) == 2


@pytest.mark.slow
async def test_sigterm_finishes_the_batch_in_flight_and_commits_its_offsets() -> None:
    customer = new_customer()
    engine = order_engine()
    await write_events(engine, [order_created(customer, "1.00") for _ in range(1500)], per_transaction=100)
    await engine.dispose()
    await consumers.stop(CONSUMER)
    await consumers.start(CONSUMER, "--batch-size", "20")
    try:

        async def started_applying() -> bool:
            row = await stats(customer)
            return row is not None and row["orders_count"] > 0

        await eventually(started_applying, what="the consumer working through the backlog")
        await consumers.stop(CONSUMER)  # SIGTERM, and wait for the process to exit
        applied = await _max_applied_offsets()
        committed = {
            p.partition: p.current
            for p in await asyncio.to_thread(
                replay.plan,
                GROUP,
                [ORDER_TOPIC],
                to_earliest=False,
                to_datetime=None,
                to_offset=0,
                bootstrap=kafka_bootstrap(),
            )
        }
        # Everything the database applied had its offset committed before the process exited.
        for partition, offset in applied.items():
            assert committed[partition] >= offset + 1, (partition, offset, committed)
    finally:
        await consumers.start(CONSUMER)
    await eventually(lambda: orders_count_is(customer, 1500), within=120, what="the rest applied after restart")


async def _max_applied_offsets() -> dict[int, int]:
    conn = await connect("customer")
    try:
        rows = await conn.fetch(
            "SELECT kafka_partition, max(kafka_offset) AS offset FROM inbox"
            " WHERE consumer_group = $1 AND topic = $2 GROUP BY kafka_partition",
            GROUP,
            ORDER_TOPIC,
        )
        return {r["kafka_partition"]: r["offset"] for r in rows}
    finally:
        await conn.close()


@pytest.mark.parametrize("broker_reachable", [True, False], ids=["broker-up", "broker-unreachable-at-first"])
async def test_a_member_left_without_partitions_after_its_session_was_lost_rejoins(
    broker_reachable: bool, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """After a broker restart under load a consumer once lost its partitions (session timeout) and was never
    given any back. The runtime then starts over with a new consumer: the group's events flow again.

    A member is stranded mostly because the broker went away, so its rejoin may find no broker either: it
    waits for one as a start does (session 29: the rejoin's topic check raised, and five consumers and
    order-references ended for good while Kafka restarted)."""
    from confluent_kafka import TopicPartition
    from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine

    from apps.common.topology import BY_NAME, database_url
    from outbox.consumer import ConsumerGroup
    from outbox.events import payload_as_dict
    from outbox.runtime import ConsumerRuntime
    from outbox.topics import ensure_topics

    topic = f"test.rejoin.{uuid.uuid4().hex[:8]}"
    ensure_topics(kafka_bootstrap(), [topic], partitions=1)
    group = ConsumerGroup(f"test-rejoin-{uuid.uuid4().hex[:8]}", topic_override=[topic], track_versions=False)
    seen: list[uuid.UUID] = []

    @group.handler("order.created")
    async def record(session: Any, event: Any, ctx: Any) -> None:
        seen.append(event.order_id)

    def produce_order() -> uuid.UUID:
        order = order_created(new_customer())
        produce_raw(topic, key=str(order.order_id), event_type="order.created", payload=payload_as_dict(order))
        return order.order_id

    engine = create_async_engine(database_url(BY_NAME["customer"]))
    runtime = ConsumerRuntime(group, async_sessionmaker(engine), poll_timeout=0.2, rejoin_within=1.0)
    task = asyncio.create_task(runtime.run())
    try:
        first = produce_order()
        await eventually(lambda: _holds(first in seen), within=30, what="the first event applied")
        before = runtime.kafka.consumer
        bootstrap = runtime.kafka.bootstrap
        if not broker_reachable:  # the rejoin's topic check (its first request) finds nothing listening
            runtime.kafka.bootstrap = f"127.0.0.1:{free_port()}"
            # It gives up after 2 s instead of the default 10 (outbox.topics): the failure where the runtime
            # used to end comes twice in seconds.
            monkeypatch.setattr(topics, "METADATA_TIMEOUT_S", 2.0)
        # What librdkafka reported for the stranded members: every partition lost, and no assignment after.
        runtime.kafka._lost(before, [TopicPartition(topic, 0)])
        assert not runtime.ready
        if not broker_reachable:
            await eventually(
                lambda: _holds(task.done() or any(", retry 2 in " in r.getMessage() for r in caplog.records)),
                within=60,
                what="a second failed topic check",
            )
            assert not task.done(), task.exception()
            assert not runtime.ready
            runtime.kafka.bootstrap = bootstrap
        await eventually(lambda: _holds(runtime.ready), within=30, what="partitions owned again")
        assert runtime.kafka.consumer is not before  # a new member, not the old one given partitions back
        second = produce_order()
        await eventually(lambda: _holds(second in seen), within=30, what="an event after the rejoin applied")
        assert seen.count(first) == 1
    finally:
        runtime.stop()
        await asyncio.wait_for(task, timeout=30)
        await engine.dispose()
        delete_group_topics(group.name, topic)


async def _holds(condition: bool) -> bool:
    return condition
