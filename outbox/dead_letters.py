"""Dead letters: the topic a group's poison messages go to, the headers they carry, and producing them.

The runtime writes these names (``produce``) and ``outbox.dlq`` reads them back (list, redrive); both
take them from here. A dead letter keeps its original key, value and headers and gains ``dlq.*``
headers saying why and where from.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from outbox.errors import RetryableError

if TYPE_CHECKING:
    from confluent_kafka import Producer

    from outbox.decoding import RawHeaders

__all__ = [
    "CONSUMER_GROUP",
    "ERROR",
    "ERROR_TYPE",
    "FAILED_AT",
    "ORIGINAL_OFFSET",
    "ORIGINAL_PARTITION",
    "ORIGINAL_TOPIC",
    "REDRIVE_HEADER",
    "DeadLetterOrigin",
    "dead_letter_topic",
    "is_dead_letter_header",
    "produce",
]

HEADER_PREFIX = "dlq."
ERROR = "dlq.error"
ERROR_TYPE = "dlq.error_type"
CONSUMER_GROUP = "dlq.consumer_group"
ORIGINAL_TOPIC = "dlq.original_topic"
ORIGINAL_PARTITION = "dlq.original_partition"
ORIGINAL_OFFSET = "dlq.original_offset"
FAILED_AT = "dlq.failed_at"
# A redriven message carries the group whose dead letter it was, which may now apply it once.
REDRIVE_HEADER = "redrive.group"

_MAX_ERROR_CHARS = 2000


def dead_letter_topic(group: str) -> str:
    return f"{group}.dlq"


def is_dead_letter_header(name: str) -> bool:
    """Headers added on the way to the dead-letter topic (or by a redrive), dropped when redriving."""
    return name.startswith(HEADER_PREFIX) or name == REDRIVE_HEADER


@dataclass(frozen=True, slots=True)
class DeadLetterOrigin:
    """What the runtime knows about one message it gives up on."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: RawHeaders
    error: str
    error_type: str


def produce(producer: Producer, group: str, letters: Sequence[DeadLetterOrigin]) -> None:
    """Send the letters to the group's dead-letter topic and wait until Kafka has every one of them.

    The dead letters must be durable before the batch commits and its offsets move on; if Kafka does not
    acknowledge them, the batch is retried (RetryableError) rather than losing a message.
    """
    failed_at = dt.datetime.now(dt.UTC).isoformat()
    topic = dead_letter_topic(group)
    for letter in letters:
        headers: list[tuple[str, str | bytes | None]] = [
            *letter.headers,
            (ERROR, letter.error[:_MAX_ERROR_CHARS]),
            (ERROR_TYPE, letter.error_type),
            (CONSUMER_GROUP, group),
            (ORIGINAL_TOPIC, letter.topic),
            (ORIGINAL_PARTITION, str(letter.partition)),
            (ORIGINAL_OFFSET, str(letter.offset)),
            (FAILED_AT, failed_at),
        ]
        producer.produce(topic, key=letter.key, value=letter.value, headers=headers)
    remaining = producer.flush(30)
    if remaining:
        raise RetryableError(f"{remaining} dead letters not acknowledged by Kafka")
