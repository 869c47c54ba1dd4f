"""Exception hierarchy shared by producers, the relay and consumers."""

from __future__ import annotations

__all__ = ["OutboxError", "PoisonMessage", "RejectedEvent", "RetryableError", "UndecodableEvent"]


class OutboxError(Exception):
    """Base class of every error raised by the outbox library."""


class PoisonMessage(OutboxError):
    """A message that can never be applied and belongs on the dead-letter topic."""


class UndecodableEvent(PoisonMessage):
    """Bytes that do not decode to the registered schema, or an unknown event type or version."""


class RejectedEvent(PoisonMessage):
    """A handler refuses an event on business grounds."""


class RetryableError(OutboxError):
    """A transient failure: retry the message with backoff."""
