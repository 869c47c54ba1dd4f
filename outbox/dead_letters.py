"""Dead letters: the topic a group's poison messages go to, the headers they carry, and producing them.

The runtime writes these names (``produce``) and ``outbox.dlq`` reads them back (list, redrive); both
take them from here. A dead letter keeps its original key, value and headers and gains ``dlq.*``
headers saying why and where from.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from confluent_kafka import KafkaError, KafkaException

from outbox.errors import RetryableError

if TYPE_CHECKING:
    from confluent_kafka import Message, Producer

    from outbox.decoding import RawHeaders

__all__ = [
    "CONSUMER_GROUP",
    "ERROR",
    "ERROR_TYPE",
    "FAILED_AT",
    "OMITTED",
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
# On a letter sent without the record (too large for Kafka): the bytes left out (key, value, long headers).
OMITTED = "dlq.omitted_bytes"
# A redriven message carries the group whose dead letter it was, which may now apply it once.
REDRIVE_HEADER = "redrive.group"

_MAX_ERROR_CHARS = 2000
# Original headers longer than this are left out of a letter that refers to its record.
_MAX_HEADER_BYTES = 1024


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
    acknowledge them, or refuses one, the batch is retried (RetryableError) rather than losing a message.
    A letter too large for Kafka (a record near the 1 MB limit plus the ``dlq.*`` headers) goes as a
    reference to its record instead (``referring``): raised, that refusal failed the batch for good, and
    every consumer of the topic exited on the record, again after each restart.
    """
    failed_at = dt.datetime.now(dt.UTC).isoformat()
    topic = dead_letter_topic(group)
    refused: list[tuple[DeadLetterOrigin, KafkaError]] = []

    def send(letter: DeadLetterOrigin, extra: Sequence[tuple[str, str | bytes | None]] = ()) -> bool:
        """Hand the letter to the producer; False if it is larger than the producer may send."""
        headers: list[tuple[str, str | bytes | None]] = [
            *letter.headers,
            (ERROR, letter.error[:_MAX_ERROR_CHARS]),
            (ERROR_TYPE, letter.error_type),
            (CONSUMER_GROUP, group),
            (ORIGINAL_TOPIC, letter.topic),
            (ORIGINAL_PARTITION, str(letter.partition)),
            (ORIGINAL_OFFSET, str(letter.offset)),
            (FAILED_AT, failed_at),
            *extra,
        ]

        def delivered(error: KafkaError | None, _: Message) -> None:
            if error is not None:
                refused.append((letter, error))

        try:
            producer.produce(topic, key=letter.key, value=letter.value, headers=headers, on_delivery=delivered)
        except KafkaException as exc:
            if exc.args[0].code() != KafkaError.MSG_SIZE_TOO_LARGE:
                raise RetryableError(f"dead letter not sent: {exc}", dependency="kafka") from exc
            return False
        return True

    too_large = [letter for letter in letters if not send(letter)]
    _flushed(producer)
    # The broker's limit (the topic's max.message.bytes) may be below the producer's.
    other = [error for _, error in refused if error.code() != KafkaError.MSG_SIZE_TOO_LARGE]
    if other:
        raise RetryableError(f"{len(other)} dead letters refused by Kafka: {other[0]}", dependency="kafka")
    too_large += [letter for letter, _ in refused]
    refused.clear()
    for letter in too_large:
        reference, omitted = referring(letter)
        if not send(reference, [(OMITTED, str(omitted))]):
            raise RetryableError("a dead letter too large for Kafka even without its record", dependency="kafka")
    _flushed(producer)
    if refused:
        raise RetryableError(f"{len(refused)} dead letters refused by Kafka: {refused[0][1]}", dependency="kafka")


def _flushed(producer: Producer) -> None:
    remaining = producer.flush(30)
    if remaining:
        raise RetryableError(f"{remaining} dead letters not acknowledged by Kafka", dependency="kafka")


def referring(letter: DeadLetterOrigin) -> tuple[DeadLetterOrigin, int]:
    """The letter without the record's key and value, its headers cut short: what it says and where the
    record is (``dlq.original_*``: kept for the replay window like every event), and the bytes left out.
    A redrive sends the original record (outbox.dlq)."""
    kept = [(name, value) for name, value in letter.headers if value is None or len(value) <= _MAX_HEADER_BYTES]
    left_out = [value or b"" for name, value in letter.headers if (name, value) not in kept]
    omitted = len(letter.key or b"") + len(letter.value or b"") + sum(map(len, left_out))
    return replace(letter, key=None, value=None, headers=kept), omitted
