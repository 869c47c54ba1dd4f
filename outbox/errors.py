"""Exception hierarchy shared by producers, the relay and consumers."""

from __future__ import annotations

__all__ = ["ContentionError", "OutboxError", "PoisonMessage", "RejectedEvent", "RetryableError", "UndecodableEvent"]


class OutboxError(Exception):
    """Base class of every error raised by the outbox library."""


class PoisonMessage(OutboxError):
    """A message that can never be applied and belongs on the dead-letter topic."""


class UndecodableEvent(PoisonMessage):
    """Bytes that do not decode to the registered schema, or an unknown event type or version."""


class RejectedEvent(PoisonMessage):
    """A handler refuses an event on business grounds."""


class RetryableError(OutboxError):
    """A transient failure: retry the message with backoff.

    ``dependency`` names what failed when it is not the consumer's own database (a service, Kafka): the
    consumer's GET /ready says the batch waits for it, and its database stays reported as answering."""

    def __init__(self, *args: object, dependency: str | None = None) -> None:
        super().__init__(*args)
        self.dependency = dependency


class ContentionError(RetryableError):
    """A transaction the handler gave up for a concurrent one's sake, found by the handler itself rather
    than refused by the database with a SQLSTATE (outbox.retry.CONTENTION_SQLSTATES): the same work is
    expected to pass at once on the retry, so the consumer stays ready through the first retries, as for a
    deadlock (outbox.runtime.CONTENTION_RETRIES_READY). Its database answered: no ``dependency``."""

    def __init__(self, *args: object) -> None:
        super().__init__(*args)
