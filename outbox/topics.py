"""Create topics the runtime needs (its dead-letter topic, and event topics not yet deployed), and delete
the ones a test or a benchmark made for itself."""

from __future__ import annotations

from collections.abc import Iterable

from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]

from outbox.config import DAY_S, read_number

# Event and dead-letter topics keep their records for the replay window: one year, delete policy.
REPLAY_WINDOW_MS = 365 * 24 * 3600 * 1000
TOPIC_CONFIG = {"cleanup.policy": "delete", "retention.ms": str(REPLAY_WINDOW_MS)}
PARTITIONS = 3
# How long the topic check waits for the cluster's metadata; no broker answering by then is a KafkaException
# the runtime waits out with backoff (a consumer started or rejoining while Kafka restarts). Tests that prove
# a consumer outlives that failure shorten it, to see it several times in seconds instead of 10 s each.
METADATA_TIMEOUT_S = read_number("OUTBOX_KAFKA_METADATA_TIMEOUT_S", 10.0, above=0, maximum=DAY_S)


def ensure_topics(bootstrap: str, topics: Iterable[str], partitions: int = PARTITIONS) -> list[str]:
    """Create the missing ones (idempotent, safe against a concurrent creator); return what was created."""
    admin = AdminClient({"bootstrap.servers": bootstrap})
    existing = set(admin.list_topics(timeout=METADATA_TIMEOUT_S).topics)
    missing = sorted(set(topics) - existing)
    if not missing:
        return []
    futures = admin.create_topics(
        [NewTopic(t, num_partitions=partitions, replication_factor=-1, config=TOPIC_CONFIG) for t in missing]
    )
    for future in futures.values():
        try:
            future.result()
        except Exception as exc:
            if "TOPIC_ALREADY_EXISTS" not in str(exc):
                raise
    return missing


def delete_topics(bootstrap: str, topics: Iterable[str], timeout: float = 10.0) -> None:
    """Delete topics a test or a benchmark created for itself (one already gone is fine).

    Left behind, each run's topics pile up on the broker: ~600 partitions after a day of runs, each one
    loaded again at every broker start (a restart after a SIGKILL spent ~20 s of its ~40 s recovering
    them) and counted by the stack exporter's dead-letter scan.
    """
    names = list(topics)
    if not names:
        return
    admin = AdminClient({"bootstrap.servers": bootstrap})
    for future in admin.delete_topics(names, operation_timeout=timeout).values():
        try:
            future.result()
        except Exception as exc:
            if "UNKNOWN_TOPIC_OR_PART" not in str(exc):
                raise
