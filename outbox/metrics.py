"""Prometheus metrics of the consumer runtime: throughput, outcomes, retries, lag, dead letters."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

EVENTS = Counter(
    "outbox_consumer_events_total",
    "Events seen by a consumer group, by outcome (applied, duplicate, dead_lettered, ignored).",
    ["group", "event_type", "outcome"],
)
BATCHES = Counter("outbox_consumer_batches_total", "Batches committed (database, then offsets).", ["group"])
BATCH_SECONDS = Histogram(
    "outbox_consumer_batch_seconds",
    "Time to apply and commit one batch.",
    ["group"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
RETRIES = Counter("outbox_consumer_retries_total", "Batches retried after a transient error.", ["group", "error"])
DEAD_LETTERS = Counter("outbox_consumer_dead_letters_total", "Messages sent to the dead-letter topic.", ["group"])
VERSION_GAPS = Counter(
    "outbox_consumer_version_gaps_total",
    "Events whose event_version skipped past the last one applied for their aggregate.",
    ["group", "event_type"],
)
STALE_EVENTS = Counter(
    "outbox_consumer_stale_events_total",
    "Events older than (or equal to) the last version applied for their aggregate.",
    ["group", "event_type"],
)
LAG = Gauge(
    "outbox_consumer_lag",
    "Records between the group's position and the partition end.",
    ["group", "topic", "partition"],
)
PARTITIONS = Gauge(
    "outbox_consumer_partitions",
    "Partitions this consumer owns now (0: joining its group, or lost them with its session).",
    ["group"],
)
