"""Typed settings read from the environment once, at start: the one way a service reads its configuration.

A service's ``settings.py`` lists every variable it reads, each a field of a frozen dataclass with its
variable's name and default (what every service reads is declared so beside its use: ``PoolSettings`` in
db.py, ``RedisSettings`` in redis_store.py)::

    @dataclass(frozen=True, slots=True)
    class OrderSettings(Settings):
        price_max_age_s: float = env("ORDER_PRICE_MAX_AGE_S", 10.0)

    settings = once(OrderSettings)

``settings()`` reads the environment on its first call and answers the same object after; the app factory
(``create_service_app(settings=...)``) and each process's ``main`` make that call, so a value that does not
parse stops the start with a SettingError naming the variable (``ORDER_PRICE_MAX_AGE_S='abc': not a
number``), not a ValueError from deep inside the first request. A field's type says how its variable is
read: ``int``, ``float``, ``str`` or ``X | None`` of one of them (unset: the default); a field keeps its
variable's unit (``_s``, ``_days``), and a property may give it as a timedelta. A number is finite (``nan``
and ``inf`` are refused) and within the bounds its field declares: ``env("DB_POOL_SIZE", 25, minimum=1)``,
``above=0`` for a duration that must be more than none, ``maximum=`` (``ORDER_SWEEPER_PORT='70000': not an
integer from 0 to 65535``); every number has a maximum, a wait's at most a day (``maximum=DAY_S``). A value
of the right type that is still wrong in another way (a level logging does not know) is refused by the
class's own ``__post_init__`` with :meth:`Settings.invalid`, worded the same way. A test that sets a variable
calls :func:`forget_settings` so that the next call reads it. A variable whose name is built at run time
(``<SERVICE>_PORT``: no field can name it) is read by :func:`read_env`, parsed and refused the same way.
"""

from __future__ import annotations

import math
import os
import types
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from functools import cache
from typing import Any, Final, Self, TypeVar, Union, get_args, get_origin, get_type_hints

# The longest a timeout, interval, lease, delay or threshold may be (``maximum=DAY_S``, in its field's unit).
from outbox.config import DAY_S

__all__ = ["DAY_S", "Bounds", "SettingError", "Settings", "env", "forget_settings", "once", "read_env"]

T = TypeVar("T")
S = TypeVar("S", bound="Settings")

_VARIABLE: Final = "environment variable"
_BOUNDS: Final = "bounds"
_KINDS: Final[dict[type, str]] = {int: "an integer", float: "a number"}
_LOADED: list[Callable[[], None]] = []


class SettingError(ValueError):
    """A variable's value that is not of its setting's type or not within its bounds; the message names the
    variable."""


@dataclass(frozen=True, slots=True)
class Bounds:
    """What a number read from a variable may be: ``minimum`` and ``maximum`` are allowed, ``above`` is not."""

    minimum: float | None = None
    maximum: float | None = None
    above: float | None = None

    def refusal(self, value: float) -> str | None:
        """Why ``value`` is out of these bounds, all of them said (``from 0 to 65535``, ``above 0 and of at most
        86400``); ``None`` when it is within them."""
        low = (self.minimum is None or value >= self.minimum) and (self.above is None or value > self.above)
        if low and (self.maximum is None or value <= self.maximum):
            return None
        if self.minimum is not None and self.maximum is not None:
            return f"from {_shown(self.minimum)} to {_shown(self.maximum)}"
        wanted = [
            f"{words} {_shown(limit)}"
            for words, limit in (("of at least", self.minimum), ("above", self.above), ("of at most", self.maximum))
            if limit is not None
        ]
        return " and ".join(wanted)


def _shown(limit: float) -> str:
    """A bound as a message gives it: a whole number in full (2147483648, not 2.14748e+09), else 6 digits."""
    return str(int(limit)) if limit == int(limit) else f"{limit:g}"


def env(
    name: str,
    default: T,
    *,
    minimum: float | None = None,
    maximum: float | None = None,
    above: float | None = None,
) -> T:
    """A settings field read from the variable ``name``, ``default`` when it is unset; a number is refused
    below ``minimum``, above ``maximum``, or at or below ``above``."""
    return field(default=default, metadata={_VARIABLE: name, _BOUNDS: Bounds(minimum, maximum, above)})


@dataclass(frozen=True, slots=True)
class Settings:
    """The base of a service's settings: subclass it as a frozen dataclass whose fields are :func:`env`."""

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Self:
        """The settings as the environment says now (``os.environ`` unless given)."""
        source = os.environ if environ is None else environ
        hints = get_type_hints(cls)
        values: dict[str, Any] = {}
        for each in fields(cls):
            if _VARIABLE not in each.metadata:
                continue  # a constant kept beside the settings, not read from the environment
            name = each.metadata[_VARIABLE]
            kind = _kind(name, hints[each.name])
            if (raw := source.get(name)) is not None:
                values[each.name] = parse(name, raw, kind, each.metadata[_BOUNDS])
        return cls(**values)

    @classmethod
    def variables(cls) -> dict[str, object]:
        """Each variable these settings read, with its default."""
        return {each.metadata[_VARIABLE]: each.default for each in fields(cls) if _VARIABLE in each.metadata}

    @classmethod
    def bounds(cls) -> dict[str, Bounds]:
        """Each variable these settings read, with the bounds its number is held to."""
        return {each.metadata[_VARIABLE]: each.metadata[_BOUNDS] for each in fields(cls) if _VARIABLE in each.metadata}

    @classmethod
    def variable(cls, field_name: str) -> str:
        """The variable a field is read from."""
        (name,) = (each.metadata[_VARIABLE] for each in fields(cls) if each.name == field_name)
        return name  # type: ignore[no-any-return]

    def invalid(self, field_name: str, expected: str) -> SettingError:
        """The error for a value of the right type that a check of the class's own (``__post_init__``)
        refuses: ``LOG_LEVEL='LOUD': not a level (...)``."""
        return SettingError(f"{self.variable(field_name)}={getattr(self, field_name)!r}: {expected}")


def _kind(name: str, hint: Any) -> type:
    """The type a variable is read as: its field's, without ``| None``; TypeError for one we cannot read."""
    if get_origin(hint) in (Union, types.UnionType):
        (hint,) = (arg for arg in get_args(hint) if arg is not type(None))
    if hint is not str and hint not in _KINDS:
        raise TypeError(f"{name}: a setting of type {hint!r} cannot be read from the environment")
    return hint  # type: ignore[no-any-return]


def parse(name: str, raw: str, kind: type, bounds: Bounds | None = None) -> Any:
    """``raw``, the value of ``name``, as ``kind``; SettingError naming ``name`` when it is not one, when it
    is not finite (``nan``, ``inf``), or when it is out of ``bounds``."""
    if kind is str:
        return raw
    try:
        value = int(raw) if kind is int else float(raw)
    except ValueError:
        raise SettingError(f"{name}={raw!r}: not {_KINDS[kind]}") from None
    if isinstance(value, float) and not math.isfinite(value):  # an int is; a long one overflows isfinite
        raise SettingError(f"{name}={raw!r}: not a finite number")
    if bounds is not None and (refusal := bounds.refusal(value)) is not None:
        raise SettingError(f"{name}={raw!r}: not {_KINDS[kind]} {refusal}")
    return value


def read_env(
    name: str,
    default: T,
    *,
    minimum: float | None = None,
    maximum: float | None = None,
    above: float | None = None,
) -> T:
    """One variable read now, as its default's type (int, float or str), and refused as a field's would be
    (the bounds as :func:`env`'s): for a name built at run time (``f"{service}_PORT"``), which no settings
    field can name."""
    raw = os.environ.get(name)
    bounds = Bounds(minimum, maximum, above)
    return default if raw is None else parse(name, raw, _kind(name, type(default)), bounds)


def once(cls: type[S]) -> Callable[[], S]:
    """A function answering ``cls.from_env()``, read on its first call and remembered."""
    read = cache(cls.from_env)
    _LOADED.append(read.cache_clear)
    return read


def forget_settings() -> None:
    """Every service's settings read again on their next call (for tests that set variables)."""
    for clear in _LOADED:
        clear()
