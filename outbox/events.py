"""Typed event payloads, their registry, and JSON encoding/decoding."""

from __future__ import annotations

import re
from decimal import Decimal
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

import msgspec

from outbox.errors import UndecodableEvent

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Iterator

__all__ = [
    "Event",
    "EventRegistry",
    "decode_payload",
    "default_registry",
    "encode_payload",
    "event",
    "payload_as_dict",
]

# "<aggregate>.<what happened>", e.g. order.created, inventory.reservation_failed. Whether the last
# segment really is a past-tense verb cannot be checked mechanically (paid, sent, ...), only the shape.
_EVENT_TYPE_RE = re.compile(r"[a-z][a-z0-9_]*(?:\.[a-z][a-z0-9_]*)+")
_AGGREGATE_RE = re.compile(r"[a-z][a-z0-9_]*")


class Event(msgspec.Struct, frozen=True, kw_only=True):
    """Base of every event payload; subclasses are registered with the ``@event`` decorator."""

    # ClassVars are not struct fields, so they never reach the payload: the outbox row carries them
    # in its own columns (event type, schema version, aggregate type).
    event_type: ClassVar[str]
    schema_version: ClassVar[int]
    aggregate_type: ClassVar[str]
    # The oldest version a consumer must know to read this one (1: any reader, as an older version too).
    min_reader_version: ClassVar[int]


_E = TypeVar("_E", bound=type[Event])


class EventRegistry:
    """Maps (event type, schema version) to the Event subclass that decodes it."""

    def __init__(self) -> None:
        self._by_type: dict[str, dict[int, type[Event]]] = {}
        self._aggregates: dict[str, str] = {}
        self._keys: dict[str, str | None] = {}

    def register(
        self,
        cls: type[Event],
        event_type: str,
        version: int,
        aggregate: str,
        key: str | None = None,
        min_reader_version: int | None = None,
    ) -> None:
        """Register ``cls`` as ``event_type`` version ``version`` and stamp its ClassVars.

        ``key`` names the payload field that holds the record's key (the aggregate id the producer passes to
        add_event); by default ``<aggregate>_id``, else ``id``, when the payload has one.
        ``min_reader_version``: a consumer that knows no version of the type from this one up must not read
        the record as the older version it knows (a field it would ignore changes what the event means); the
        outbox row and the record's header carry it, and such a consumer dead-letters the record (get). None:
        as the class already declares (registered in another registry), else 1, any reader."""
        if not (isinstance(cls, type) and issubclass(cls, Event)):
            raise TypeError(f"{cls!r} is not a subclass of outbox.events.Event")
        if not _EVENT_TYPE_RE.fullmatch(event_type):
            raise ValueError(
                f"invalid event type {event_type!r}: expected 'aggregate.past_tense_verb' "
                "(lowercase letters, digits and underscores, dot-separated), e.g. 'order.created'"
            )
        if version < 1:
            raise ValueError(f"invalid schema version {version} for {event_type}: must be >= 1")
        if not _AGGREGATE_RE.fullmatch(aggregate):
            raise ValueError(f"invalid aggregate {aggregate!r} for {event_type}: expected snake_case")
        declared = cls.__dict__.get("min_reader_version")
        if min_reader_version is not None and declared is not None and declared != min_reader_version:
            raise ValueError(
                f"{event_type} v{version} is already registered with min_reader_version {declared}, "
                f"not {min_reader_version}"
            )
        if min_reader_version is None:
            min_reader_version = declared or 1
        if not 1 <= min_reader_version <= version:
            raise ValueError(
                f"{event_type} v{version}: min_reader_version {min_reader_version} is outside 1..{version}"
            )

        known_aggregate = self._aggregates.get(event_type)
        if known_aggregate is not None and known_aggregate != aggregate:
            # The aggregate type routes the event (Debezium's outbox router picks the topic from it),
            # so every version of one event type must agree on it.
            raise ValueError(
                f"{event_type} is already registered with aggregate {known_aggregate!r}, not {aggregate!r}"
            )
        fields = cls.__struct_fields__
        if key is not None and key not in fields:
            raise ValueError(f"{event_type} v{version}: its key {key!r} is not a field of {cls.__qualname__}")
        key = key or next((name for name in (f"{aggregate}_id", "id") if name in fields), None)
        if event_type in self._keys and self._keys[event_type] != key:
            # The key partitions the type's records: every version must take it from the same field.
            raise ValueError(f"{event_type} is already registered with key {self._keys[event_type]!r}, not {key!r}")
        versions = self._by_type.get(event_type, {})
        existing = versions.get(version)
        if existing is not None and existing is not cls:
            raise ValueError(
                f"{event_type} v{version} is already registered to {existing.__module__}."
                f"{existing.__qualname__}; a changed schema needs a new version"
            )
        # Checking the class's own __dict__ (not inherited attributes) lets a v2 subclass a v1 while
        # still refusing one class posing as two events, whose ClassVars could then only tell one truth.
        identity = (event_type, version, aggregate)
        own = cls.__dict__
        if "event_type" in own:
            current = (own["event_type"], own.get("schema_version"), own.get("aggregate_type"))
            if current != identity:
                raise ValueError(
                    f"{cls.__qualname__} is already {current[0]} v{current[1]}; "
                    f"it cannot also be {event_type} v{version}"
                )

        cls.event_type = event_type
        cls.schema_version = version
        cls.aggregate_type = aggregate
        cls.min_reader_version = min_reader_version
        self._by_type.setdefault(event_type, {})[version] = cls
        self._aggregates[event_type] = aggregate
        self._keys[event_type] = key

    def get(self, event_type: str, schema_version: int, min_reader_version: int = 1) -> type[Event]:
        """Return the class that decodes ``event_type`` at ``schema_version`` (``min_reader_version``: the
        record's, the oldest version its reader must know)."""
        versions = self._by_type.get(event_type)
        if not versions:
            raise UndecodableEvent(f"unknown event type {event_type!r}")
        cls = versions.get(schema_version)
        if cls is not None:
            return cls
        newest = max(versions)
        if schema_version > newest:
            if min_reader_version > newest:
                # Its producer said that reading it as an older version misreads it (return.received v3's
                # settle_with ignored: a second refund). Dead-lettered, redriven once this consumer knows it.
                raise UndecodableEvent(
                    f"{event_type} v{schema_version} needs a consumer that knows v{min_reader_version} or later; "
                    f"this one knows up to v{newest}: deploy the consumer, then redrive its dead letters "
                    "(just dlq redrive)"
                )
            # A producer deployed ahead of this consumer: newer versions only add optional fields
            # (enforced by the catalogue check), so the newest known class reads it and ignores the rest.
            return versions[newest]
        known = ", ".join(str(v) for v in sorted(versions))
        raise UndecodableEvent(f"{event_type} v{schema_version} is not registered (known versions: {known})")

    def latest(self, event_type: str) -> type[Event]:
        """Return the newest registered class of ``event_type``."""
        versions = self._by_type.get(event_type)
        if not versions:
            raise UndecodableEvent(f"unknown event type {event_type!r}")
        return versions[max(versions)]

    def aggregate_of(self, event_type: str) -> str:
        """Return the aggregate type that ``event_type`` belongs to."""
        try:
            return self._aggregates[event_type]
        except KeyError:
            raise UndecodableEvent(f"unknown event type {event_type!r}") from None

    def key_of(self, event_type: str) -> str | None:
        """The payload field that holds ``event_type``'s record key (None: the payload has no such field)."""
        try:
            return self._keys[event_type]
        except KeyError:
            raise UndecodableEvent(f"unknown event type {event_type!r}") from None

    def __iter__(self) -> Iterator[tuple[str, int, type[Event]]]:
        """Yield (event type, version, class), sorted by event type then version."""
        for event_type in sorted(self._by_type):
            versions = self._by_type[event_type]
            for version in sorted(versions):
                yield event_type, version, versions[version]

    def __contains__(self, key: object) -> bool:
        """Support ``"order.created" in registry`` and ``("order.created", 2) in registry``."""
        if isinstance(key, str):
            return key in self._by_type
        if isinstance(key, tuple) and len(key) == 2:
            event_type, version = key
            return version in self._by_type.get(event_type, {})
        return False

    def __len__(self) -> int:
        """Return the number of registered (event type, version) pairs."""
        return sum(len(versions) for versions in self._by_type.values())


default_registry = EventRegistry()


def event(
    event_type: str,
    *,
    version: int,
    aggregate: str,
    key: str | None = None,
    min_reader_version: int | None = None,
    registry: EventRegistry = default_registry,
) -> Callable[[_E], _E]:
    """Class decorator that registers an Event subclass under ``event_type`` and ``version`` (``key``,
    ``min_reader_version``: see EventRegistry.register)."""

    def decorate(cls: _E) -> _E:
        registry.register(cls, event_type, version, aggregate, key, min_reader_version)
        return cls

    return decorate


# Decimal as a JSON string keeps money exact for any consumer; it is msgspec's default, pinned here
# because changing it would silently change the wire format.
_encoder = msgspec.json.Encoder(decimal_format="string")
# Building a Decoder compiles the type's validation plan; decoding sits on the consumer hot path.
_decoders: dict[type[Event], msgspec.json.Decoder[Event]] = {}


def _decoder_for(cls: type[Event]) -> msgspec.json.Decoder[Event]:
    decoder = _decoders.get(cls)
    if decoder is None:
        decoder = _decoders[cls] = msgspec.json.Decoder(cls)
    return decoder


def encode_payload(ev: Event) -> bytes:
    """Encode an event payload as compact JSON bytes."""
    return _encoder.encode(ev)


def payload_as_dict(ev: Event) -> dict[str, Any]:
    """Return the payload as JSON-ready builtins (for a JSONB column): UUID, Decimal, datetime as str."""
    data = msgspec.to_builtins(ev)
    assert isinstance(data, dict)
    return data


def decode_payload(
    event_type: str,
    schema_version: int,
    data: bytes | str | dict[str, Any],
    registry: EventRegistry = default_registry,
) -> Event:
    """Decode a payload (JSON text or a JSONB-derived dict) into the registered Event class."""
    cls = registry.get(event_type, schema_version)
    try:
        if isinstance(data, dict):
            # strict=False: a dict from JSONB holds ISO strings and numbers where the struct wants
            # datetime, UUID or Decimal.
            decoded = msgspec.convert(data, type=cls, strict=False)
        else:
            decoded = _decoder_for(cls).decode(data)
    except (msgspec.ValidationError, msgspec.DecodeError) as exc:
        raise UndecodableEvent(f"cannot decode {event_type} v{schema_version} as {cls.__qualname__}: {exc}") from exc
    except RecursionError as exc:
        # JSON nested past the interpreter's limit (~1,000 levels: a 2.4 kB record), even in a field the struct
        # ignores: raised in the prefetch thread, it ended the consumer of every group reading the topic.
        raise UndecodableEvent(f"cannot decode {event_type} v{schema_version}: nested too deep ({exc})") from exc
    # Decimal reads "NaN" (any case) and PostgreSQL's numeric stores it: one such amount made a customer's
    # total_spent and a day's or a product's sales NaN for good, with no dead letter. Only a payload that
    # spells it is walked (the scan of the bytes costs well under a microsecond), or one with a \u escape:
    # JSON may spell any letter so ("\u004eaN" decodes to "NaN"; msgspec writes non-ASCII as UTF-8, so our
    # own payloads hardly ever hold one).
    raw = data.lower() if isinstance(data, bytes) else str(data).lower().encode()
    if b"nan" in raw or (not isinstance(data, dict) and b"\\u" in raw):
        where = _not_a_number(decoded)
        if where:
            raise UndecodableEvent(f"cannot decode {event_type} v{schema_version}: {where} is not a number")
    return decoded


def _not_a_number(value: object, path: str = "") -> str:
    """The path of the first NaN Decimal in a decoded payload ('' if none)."""
    if isinstance(value, Decimal):
        return (path or "the value") if value.is_nan() else ""
    if isinstance(value, msgspec.Struct):
        items: Iterable[tuple[str, object]] = ((f, getattr(value, f)) for f in value.__struct_fields__)
    elif isinstance(value, dict):
        items = ((str(k), v) for k, v in value.items())
    elif isinstance(value, list | tuple):
        items = ((str(i), v) for i, v in enumerate(value))
    else:
        return ""
    for name, item in items:
        found = _not_a_number(item, f"{path}.{name}" if path else name)
        if found:
            return found
    return ""
