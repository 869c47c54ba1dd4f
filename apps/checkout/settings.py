"""Every variable the checkout service's processes read (docs/operations.md, Settings), read once at start."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from apps.common.settings import DAY_S, Settings, env, once

__all__ = ["CheckoutSettings", "settings"]


@dataclass(frozen=True, slots=True)
class CheckoutSettings(Settings):
    # A cart nobody changed for this long becomes abandoned; a guest's session token lives as long
    # after its last use (sliding, in Redis) or its last change (in PostgreSQL). At most a year.
    cart_idle_hours: float = env("CHECKOUT_CART_IDLE_HOURS", 168.0, minimum=1 / 3600, maximum=365 * 24)
    # How long a checkout session's quote (prices, tax, shipping) may be completed.
    session_minutes: float = env("CHECKOUT_SESSION_MINUTES", 30.0, above=0, maximum=DAY_S / 60)
    # A cached cart view is invalidated on every change; the TTL only bounds what an invalidation
    # lost while Redis was unreachable can serve.
    cart_view_ttl_s: float = env("CHECKOUT_CART_VIEW_TTL_S", 300.0, minimum=0.001, maximum=DAY_S)
    # The calls to the catalog and customer services: past this, a 503 naming the service.
    dependency_timeout_s: float = env("CHECKOUT_DEPENDENCY_TIMEOUT_S", 2.0, above=0, maximum=DAY_S)
    # The seed's retention (constants, not read from the environment): abandoned carts after 30 days,
    # checkout sessions 7 days after expiry.
    abandoned_cart_retention: dt.timedelta = dt.timedelta(days=30)
    expired_session_retention: dt.timedelta = dt.timedelta(days=7)

    @property
    def cart_idle(self) -> dt.timedelta:
        return dt.timedelta(hours=self.cart_idle_hours)

    @property
    def checkout_session_ttl(self) -> dt.timedelta:
        return dt.timedelta(minutes=self.session_minutes)

    @property
    def cart_view_ttl(self) -> dt.timedelta:
        return dt.timedelta(seconds=self.cart_view_ttl_s)


settings = once(CheckoutSettings)
