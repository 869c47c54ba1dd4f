"""The few settings the outbox library needs, read from the environment."""

from __future__ import annotations

import os

TOPIC_PREFIX = os.environ.get("OUTBOX_TOPIC_PREFIX", "commerce")


def kafka_bootstrap() -> str:
    return os.environ.get("KAFKA_BOOTSTRAP", "127.0.0.1:9092")


def topic_for(aggregate: str) -> str:
    """Debezium's EventRouter routes each aggregate type to its own topic (route.topic.replacement)."""
    return f"{TOPIC_PREFIX}.{aggregate}"
