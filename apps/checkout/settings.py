"""The checkout service's settings, read from the environment once (no I/O at import time)."""

from __future__ import annotations

import datetime as dt
import os
from dataclasses import dataclass
from functools import cache


@dataclass(frozen=True, slots=True)
class CheckoutSettings:
    # A cart nobody changed for this long becomes abandoned; a guest's session token lives as long
    # after its last use (sliding, in Redis) or its last change (in PostgreSQL).
    cart_idle: dt.timedelta = dt.timedelta(days=7)
    # How long a checkout session's quote (prices, tax, shipping) may be completed.
    checkout_session_ttl: dt.timedelta = dt.timedelta(minutes=30)
    # A cached cart view is invalidated on every change; the TTL only bounds what an invalidation
    # lost while Redis was unreachable can serve.
    cart_view_ttl: dt.timedelta = dt.timedelta(minutes=5)
    # The seed's retention: abandoned carts after 30 days, checkout sessions 7 days after expiry.
    abandoned_cart_retention: dt.timedelta = dt.timedelta(days=30)
    expired_session_retention: dt.timedelta = dt.timedelta(days=7)

    @classmethod
    def from_env(cls) -> CheckoutSettings:
        return cls(
            cart_idle=dt.timedelta(hours=float(os.environ.get("CHECKOUT_CART_IDLE_HOURS", "168"))),
            checkout_session_ttl=dt.timedelta(minutes=float(os.environ.get("CHECKOUT_SESSION_MINUTES", "30"))),
            cart_view_ttl=dt.timedelta(seconds=float(os.environ.get("CHECKOUT_CART_VIEW_TTL_S", "300"))),
        )


@cache
def settings() -> CheckoutSettings:
    return CheckoutSettings.from_env()
