"""Transactional outbox and exactly-once consumers for Litestar + advanced-alchemy services.

Public API:
    Event, event, EventRegistry          typed, versioned event schemas (outbox.events)
    add_event                            write an event in the caller's transaction (outbox.writer)
    ConsumerGroup, EventContext          a consumer group's handlers (outbox.consumer)
    ConsumerRuntime                      poll, apply once via the inbox, commit (outbox.runtime)
    PoisonMessage, RejectedEvent, RetryableError
"""

from outbox.consumer import ConsumerGroup, EventContext
from outbox.errors import OutboxError, PoisonMessage, RejectedEvent, RetryableError, UndecodableEvent
from outbox.events import Event, EventRegistry, decode_payload, default_registry, encode_payload, event
from outbox.writer import OutboxRecord, add_event

__all__ = [
    "ConsumerGroup",
    "Event",
    "EventContext",
    "EventRegistry",
    "OutboxError",
    "OutboxRecord",
    "PoisonMessage",
    "RejectedEvent",
    "RetryableError",
    "UndecodableEvent",
    "add_event",
    "decode_payload",
    "default_registry",
    "encode_payload",
    "event",
]
