"""From Kafka records to events: headers, payload decoding, and the split of a batch into what to apply,
what is poison (a dead letter) and what this group does not handle."""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, NamedTuple, cast

import msgspec

from outbox.consumer import EventContext
from outbox.correlation import carried
from outbox.dead_letters import REDRIVE_HEADER, DeadLetterOrigin
from outbox.errors import PoisonMessage
from outbox.events import Event, EventRegistry, decode_payload
from outbox.redaction import redact

if TYPE_CHECKING:
    from confluent_kafka import Message

    from outbox.consumer import ConsumerGroup

RawHeaders = list[tuple[str, bytes | None]]


class Parsed(NamedTuple):
    """A message that decoded into an event this group handles."""

    message: Message
    event: Event
    ctx: EventContext


@dataclass(frozen=True, slots=True)
class Poison:
    """A message that can never be applied; it goes to the dead-letter topic."""

    message: Message
    error: str
    error_type: str
    event_id: uuid.UUID | None = None

    @classmethod
    def of(cls, message: Message, exc: BaseException, event_id: uuid.UUID | None) -> Poison:
        # Redacted: a database's refusal names the values it refused (a row, a key), and a dead letter's
        # error is read by whoever reads the topic or lists it (`just dlq list`), like a log line.
        return cls(message, redact(str(exc) or repr(exc)), type(exc).__name__, event_id)

    def dead_letter(self) -> DeadLetterOrigin:
        topic, partition, offset = where(self.message)
        return DeadLetterOrigin(
            topic=topic,
            partition=partition,
            offset=offset,
            key=self.message.key(),
            value=self.message.value(),
            headers=raw_headers(self.message),
            error=self.error,
            error_type=self.error_type,
        )


@dataclass(frozen=True, slots=True)
class Batch:
    """One poll's messages, decoded: what to apply, what is poison, what this group does not handle.

    ``ignored`` counts the messages of types this group does not handle, and those its handler changes
    nothing for (ConsumerGroup.batch_handler's ``skip``), by type; ``offsets`` is the next
    offset to commit per (topic, partition) once the batch is applied. Both are worked out with the
    decoding, in the prefetch thread, so the event loop does not walk the batch again for them."""

    messages: list[Message]
    parsed: list[Parsed]
    poison: list[Poison]
    ignored: dict[str, int]
    offsets: dict[tuple[str, int], int]

    @property
    def needs_database(self) -> bool:
        """False for a batch of ignored messages only: nothing to claim, apply or dead-letter."""
        return bool(self.parsed or self.poison)

    def then(self, later: Batch) -> Batch:
        """This batch followed by the next poll's (partition order kept): one batch for the event loop."""
        ignored = dict(self.ignored)
        for event_type, count in later.ignored.items():
            ignored[event_type] = ignored.get(event_type, 0) + count
        offsets = dict(self.offsets)
        for key, offset in later.offsets.items():
            offsets[key] = max(offset, offsets.get(key, -1))
        return Batch(
            self.messages + later.messages, self.parsed + later.parsed, self.poison + later.poison, ignored, offsets
        )


def parse(group: ConsumerGroup, messages: list[Message]) -> Batch:
    """Decode every message; a message that cannot be decoded becomes poison, never an exception."""
    parsed: list[Parsed] = []
    poison: list[Poison] = []
    ignored: dict[str, int] = {}
    for message in messages:
        raw = raw_headers(message)
        headers = _mapped(raw)
        if len(raw) != len(headers) and (conflict := _conflicting(raw, headers)):
            # Checked before the type is looked at: the last value alone would decide whether it is ignored.
            poison.append(Poison.of(message, PoisonMessage(conflict), maybe_uuid(headers.get("id"))))
            continue
        event_type = headers.get("event_type", "")
        if event_type and not group.handles(event_type):
            # Counted by type (a metric label) only for types the project defines: any header value made a
            # time series of its own in every consumer reading the topic.
            label = event_type if event_type in group.registry else UNKNOWN_TYPE
            ignored[label] = ignored.get(label, 0) + 1
            continue
        try:
            identity = _identity(headers, group.registry)
            if event_type in group.probes and _probed_out(group, event_type, message, headers):
                ignored[event_type] = ignored.get(event_type, 0) + 1  # changes nothing, never decoded whole
                continue
            item = decode(group, message, headers, identity)
        except (PoisonMessage, ValueError, KeyError) as exc:
            poison.append(Poison.of(message, exc, maybe_uuid(headers.get("id"))))
            continue
        if _skipped(group, item):  # changes nothing: no claim, no transaction
            ignored[event_type] = ignored.get(event_type, 0) + 1
            continue
        parsed.append(item)
    return Batch(messages, parsed, poison, ignored, next_offsets(messages))


def _skipped(group: ConsumerGroup, item: Parsed) -> bool:
    """Whether the handler declared it changes nothing for this event (a redrive is always applied, so its
    dead-lettered inbox row becomes applied; a predicate that fails leaves the decision to the handler)."""
    skip = group.skips.get(item.ctx.event_type)
    if skip is None or item.ctx.redriven:
        return False
    try:
        return bool(skip(item.event))
    except Exception:
        return False


def next_offsets(messages: list[Message]) -> dict[tuple[str, int], int]:
    """Per (topic, partition), the offset after the last of these messages: what to commit for them."""
    offsets: dict[tuple[str, int], int] = {}
    for message in messages:
        topic, partition, offset = where(message)
        if offsets.get((topic, partition), -1) <= offset:
            offsets[(topic, partition)] = offset + 1
    return offsets


# The inbox keeps event_version as a PostgreSQL integer, and the outbox numbers each aggregate's events from 1.
_MAX_EVENT_VERSION = 2**31 - 1
# The headers that say what a record is: two different values of one of them leave it unknowable.
_IDENTITY_HEADERS = ("id", "event_type", "event_version", "schema_version", "min_reader_version")


class Identity(NamedTuple):
    """What a record's identity headers say it is, checked (_identity)."""

    event_id: uuid.UUID
    event_type: str
    schema_version: int
    event_version: int | None


def _identity(headers: dict[str, str], registry: EventRegistry) -> Identity:
    """The record's identity headers, or the reason it is poison (PoisonMessage, ValueError)."""
    if "id" not in headers or "event_type" not in headers:
        raise PoisonMessage("missing 'id' or 'event_type' header")
    event_type = headers["event_type"]
    schema_version = int(headers.get("schema_version", "1"))
    # The oldest version of the type its reader must know (the outbox's min_reader_version column): a record
    # its producer says an older reader would misread is dead-lettered by this consumer, not read as its newest.
    min_reader_version = int(headers.get("min_reader_version") or "1")
    event_version = int(headers["event_version"]) if headers.get("event_version") else None
    if event_version is not None and not 1 <= event_version <= _MAX_EVENT_VERSION:
        # Past an integer it failed the batch's inbox claim, which no retry or isolation gets past: every
        # consumer of the topic exited on it, and again after each restart.
        raise PoisonMessage(f"event_version {event_version} is outside 1..{_MAX_EVENT_VERSION}")
    registry.get(event_type, schema_version, min_reader_version)  # poison before any probe: an unknown version
    return Identity(to_uuid(headers["id"]), event_type, schema_version, event_version)


def _probed_out(group: ConsumerGroup, event_type: str, message: Message, headers: dict[str, str]) -> bool:
    """Whether the skip's Probe (ConsumerGroup.batch_handler) says, from the few fields it reads, that the
    handler changes nothing for this record. A redrive is always applied; a payload the probe cannot read,
    or a predicate that fails, leaves the decision to the whole decode."""
    if headers.get(REDRIVE_HEADER) == group.name:
        return False
    decoder, skip = group.probes[event_type]
    try:
        return bool(skip(decoder.decode(message.value() or b"")))
    except Exception:  # msgspec's errors, RecursionError on deep JSON, the predicate's own
        return False


def decode(group: ConsumerGroup, message: Message, headers: dict[str, str], identity: Identity | None = None) -> Parsed:
    """The record as an event of this group (``identity``: _identity(headers), when checked already)."""
    event_id, event_type, schema_version, event_version = identity or _identity(headers, group.registry)
    event = decode_payload(event_type, schema_version, message.value() or b"", group.registry)
    key = message.key()
    topic, partition, offset = where(message)
    ctx = EventContext(
        event_id=event_id,
        # A key that is no uuid (or no text) leaves the aggregate unknown, as a missing one does.
        aggregate_id=maybe_uuid(key.decode("utf-8", "replace") if key else None),
        aggregate_type=headers.get("aggregate_type", event.aggregate_type),
        event_type=event_type,
        event_version=event_version,
        schema_version=schema_version,
        topic=topic,
        partition=partition,
        offset=offset,
        timestamp=timestamp(message),
        redriven=headers.get(REDRIVE_HEADER) == group.name,
        correlation_id=carried(headers.get("correlation_id")),
    )
    return Parsed(message, event, ctx)


def _conflicting(raw: RawHeaders, headers: dict[str, str]) -> str:
    """Why a record with a header name twice cannot be trusted: two different values of one identity header
    (which id, which type?); '' when the repeats agree or are of other headers."""
    for name, value in raw:
        if name in _IDENTITY_HEADERS and value is not None and value.decode("utf-8", "replace") != headers[name]:
            return f"conflicting {name!r} headers"
    return ""


def raw_headers(message: Message) -> RawHeaders:
    return cast("RawHeaders", message.headers() or [])


def header_map(message: Message) -> dict[str, str]:
    return _mapped(raw_headers(message))


def _mapped(raw: RawHeaders) -> dict[str, str]:
    """Header values as text; of a name given twice, the last value."""
    return {name: value.decode("utf-8", "replace") for name, value in raw if value is not None}


# The metric label of a record whose event type header is missing or names no registered type.
UNKNOWN_TYPE = "?"


def event_type_of(message: Message, registry: EventRegistry) -> str:
    """A record's event type as a metric label: a registered type, or UNKNOWN_TYPE."""
    event_type = header_map(message).get("event_type", UNKNOWN_TYPE)
    return event_type if event_type in registry else UNKNOWN_TYPE


def where(message: Message) -> tuple[str, int, int]:
    """Topic, partition and offset of a consumed (error-free) message, which always has all three."""
    topic, partition, offset = message.topic(), message.partition(), message.offset()
    assert topic is not None and partition is not None and offset is not None
    return topic, partition, offset


def timestamp(message: Message) -> dt.datetime:
    _, millis = message.timestamp()
    return dt.datetime.fromtimestamp(max(millis, 0) / 1000, tz=dt.UTC)


def to_uuid(value: str) -> uuid.UUID:
    """``uuid.UUID(value)``, a few times faster for the usual spellings (msgspec parses those in C)."""
    try:
        return msgspec.convert(value, uuid.UUID)
    except msgspec.ValidationError:
        return uuid.UUID(value)  # the other spellings uuid.UUID accepts, or its ValueError


def maybe_uuid(value: str | None) -> uuid.UUID | None:
    try:
        return to_uuid(value) if value else None
    except ValueError:
        return None
