"""Create topics the runtime needs (its dead-letter topic, and event topics not yet deployed)."""

from __future__ import annotations

from collections.abc import Iterable

from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]

# Event and dead-letter topics keep their records for the replay window: one year, delete policy.
REPLAY_WINDOW_MS = 365 * 24 * 3600 * 1000
TOPIC_CONFIG = {"cleanup.policy": "delete", "retention.ms": str(REPLAY_WINDOW_MS)}
PARTITIONS = 3


def ensure_topics(bootstrap: str, topics: Iterable[str], partitions: int = PARTITIONS) -> list[str]:
    """Create the missing ones (idempotent, safe against a concurrent creator); return what was created."""
    admin = AdminClient({"bootstrap.servers": bootstrap})
    existing = set(admin.list_topics(timeout=10).topics)
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
