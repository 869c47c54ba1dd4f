"""Which topic an event goes to: its aggregate's, unless its type starts with one of the project's streams.

By default Debezium's EventRouter sends every event of aggregate ``order`` to ``<prefix>.order``, and every
group that reads one order event wakes for all of them. A stream (``[tool.outbox] streams``) is an event
type prefix with a topic of its own: with ``streams = ["order.payment"]``, order.payment_requested,
order.payment_capture_requested and order.payment_cancel_requested go to ``<prefix>.order.payment`` and the
other order events stay on ``<prefix>.order``. The record keeps its key (the aggregate id) and its
per-aggregate version, so the events of one stream stay in order per aggregate; events of one aggregate on
two topics have no order between them, which is why a stream may only take event types that no group needs
in order with the rest of the aggregate (checked by tests/unit/test_routing.py against every group).

The connectors route by the ``event_type`` column with ``route_topic_regex``: the same rule as
``stream_of``, in Java's syntax, so Kafka Connect and every consumer agree without a column or a lookup.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable

from outbox.config import settings, topic_prefix

__all__ = ["ROUTE_FIELD", "project_streams", "route_topic_regex", "stream_of", "topic_for_event", "validate_streams"]

# The outbox column the EventRouter routes by (route.by.field): the event type, whose prefix names the stream.
ROUTE_FIELD = "event_type"
# An event type's first segment is its aggregate (outbox.events checks the shape; tests/unit/test_routing.py
# that every registered type's first segment is the aggregate it was registered with).
_AGGREGATE = "[a-z][a-z0-9_]*"
_STREAM_RE = re.compile(rf"{_AGGREGATE}(?:\.{_AGGREGATE})*")


def validate_streams(streams: Iterable[str]) -> tuple[str, ...]:
    """The streams, longest first (the first that matches wins, so a longer one beats its own prefix)."""
    found = tuple(sorted(set(streams), key=lambda s: (-len(s), s)))
    for stream in found:
        if not _STREAM_RE.fullmatch(stream) or "." not in stream:
            raise ValueError(
                f"invalid stream {stream!r}: expected an event type prefix below an aggregate, e.g. 'order.payment'"
            )
    return found


def stream_of(event_type: str, streams: Iterable[str]) -> str:
    """The topic suffix of ``event_type``: the first stream that is the type or its prefix up to a '.' or
    '_', else the type's first segment (its aggregate)."""
    for stream in validate_streams(streams):
        if event_type == stream or (event_type.startswith(stream) and event_type[len(stream)] in "._"):
            return stream
    return event_type.split(".", 1)[0]


def project_streams() -> tuple[str, ...]:
    """[tool.outbox] streams, unless OUTBOX_STREAMS (comma-separated; empty: none) overrides it, as the
    connectors' deploy and the consumers must agree on it during an upgrade (docs/events/README.md)."""
    raw = os.environ.get("OUTBOX_STREAMS")
    if raw is None:
        return settings().streams
    return tuple(stream for stream in raw.replace(",", " ").split() if stream)


def topic_for_event(event_type: str, streams: Iterable[str] | None = None) -> str:
    """The topic Debezium's EventRouter sends ``event_type`` to (the project's streams unless given)."""
    chosen = project_streams() if streams is None else streams
    return f"{topic_prefix()}.{stream_of(event_type, chosen)}"


def route_topic_regex(streams: Iterable[str]) -> str:
    """``stream_of`` for the EventRouter (route.topic.regex, Java syntax): the group ``routedByValue`` is the
    stream or the aggregate, and route.topic.replacement puts the prefix before it. Java tries the
    alternatives left to right and backtracks when the rest does not match, as ``stream_of`` does."""
    alternatives = [re.escape(stream) for stream in validate_streams(streams)] + [_AGGREGATE]
    return f"(?<routedByValue>{'|'.join(alternatives)})(?:[._].*)?"
