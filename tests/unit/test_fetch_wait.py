"""A group's fetch_wait_ms: the broker holds its fetches to gather more (librdkafka's settings, no broker here)."""

from __future__ import annotations

import dataclasses

import pytest
from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine

from apps.analytics.consumers import group as analytics
from apps.customer.consumers import group as customer_stats
from apps.order.consumers import group as order_saga
from apps.order.saga_state import RESERVATION, step_timeout
from apps.returns.consumers import group as returns
from outbox.consumer import ConsumerGroup
from outbox.kafka_client import (
    FETCH_WAIT_MAX_MS,
    GATHER_MIN_BYTES,
    MAX_POLL_INTERVAL_MS,
    SESSION_TIMEOUT_MS,
    consumer_config,
)
from outbox.runtime import ConsumerRuntime


def test_by_default_the_broker_answers_at_the_first_record() -> None:
    config = consumer_config("customer-stats", "127.0.0.1:9092")
    assert "fetch.min.bytes" not in config  # librdkafka's 1 byte
    assert config["fetch.wait.max.ms"] == FETCH_WAIT_MAX_MS


def test_a_fetch_wait_holds_each_fetch_until_the_wait_is_over() -> None:
    config = consumer_config("analytics", "127.0.0.1:9092", fetch_wait_ms=200)
    assert config["fetch.wait.max.ms"] == 200
    # Above what 200 ms gathers at 500 orders/s (two events of a group's topic each, ~0.7 kB per event): at the
    # stack's rates the wait, not the bytes, ends a fetch.
    assert config["fetch.min.bytes"] == GATHER_MIN_BYTES > 500 * 2 * 0.2 * 1_000
    overridden = consumer_config("analytics", "x", fetch_wait_ms=200, overrides={"fetch.wait.max.ms": 5})
    assert overridden["fetch.wait.max.ms"] == 5


def test_the_runtime_gives_the_group_s_wait_to_its_consumer() -> None:
    never_used = create_async_engine("postgresql+asyncpg://nobody@127.0.0.1:1/none")  # connects on first use only
    group = dataclasses.replace(customer_stats, fetch_wait_ms=150)
    runtime = ConsumerRuntime(group, async_sessionmaker(never_used))
    assert runtime.kafka.config["fetch.wait.max.ms"] == 150
    assert runtime.kafka.config["fetch.min.bytes"] == GATHER_MIN_BYTES


@pytest.mark.parametrize("group", [customer_stats, order_saga], ids=lambda g: g.name)
def test_groups_on_a_measured_path_neither_wait_nor_linger(group: ConsumerGroup) -> None:
    # customer-stats ends the goal's commit-to-stats delay; the saga writes the confirmation that starts it.
    assert group.fetch_wait_ms == 0 and group.linger_ms == 0


def test_the_projections_off_every_measured_path_wait() -> None:
    assert analytics.fetch_wait_ms == returns.fetch_wait_ms == 200


def test_a_departed_member_holds_a_rebalance_for_less_than_an_order_waits_for_its_reservation() -> None:
    # After a broker restart a group is reloaded with a member that may be gone; its rejoin is awaited for the
    # rebalance timeout (max.poll.interval.ms). A Kafka restart (~12-25 s here) plus that wait must stay well
    # inside the reservation step's deadline, or the saga cancels the orders placed meanwhile.
    config = consumer_config("warehouse-reservations", "127.0.0.1:9092")
    reservation_s = step_timeout(RESERVATION).total_seconds()
    assert SESSION_TIMEOUT_MS < config["max.poll.interval.ms"] == MAX_POLL_INTERVAL_MS
    assert reservation_s / 2 >= MAX_POLL_INTERVAL_MS / 1000 + 30
