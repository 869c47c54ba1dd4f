"""Every variable the order service's processes read (docs/operations.md, Settings), read once at start."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from apps.common.settings import DAY_S, Settings, env, once

__all__ = ["OrderSettings", "settings"]


@dataclass(frozen=True, slots=True)
class OrderSettings(Settings):
    # The calls to the catalog and customer services: past this, a 503 naming the service.
    dependency_timeout_s: float = env("ORDER_DEPENDENCY_TIMEOUT_S", 2.0, above=0, maximum=DAY_S)
    # How old a product's read-model row may be for an order to pay its price (apps/order/known.py).
    price_max_age_s: float = env("ORDER_PRICE_MAX_AGE_S", 10.0, minimum=0, maximum=DAY_S)
    # How long a saga step waits for its answer. Payment: under the sandbox's tok_slow delay of 20 s, so the
    # local stack shows a provider timeout; 6 s was too short for a declined card's round trip on a loaded
    # 2-core machine; a real provider wants minutes.
    saga_reservation_timeout_s: float = env("ORDER_SAGA_RESERVATION_TIMEOUT_S", 120.0, above=0, maximum=DAY_S)
    saga_payment_timeout_s: float = env("ORDER_SAGA_PAYMENT_TIMEOUT_S", 15.0, above=0, maximum=DAY_S)
    # The saga sweeper (apps/order/sweeper.py): its pause between rounds and its /metrics port (0: none).
    sweeper_poll_s: float = env("ORDER_SWEEPER_POLL_S", 0.5, above=0, maximum=DAY_S)
    sweeper_port: int = env("ORDER_SWEEPER_PORT", 0, minimum=0, maximum=65535)

    @property
    def price_max_age(self) -> dt.timedelta:
        return dt.timedelta(seconds=self.price_max_age_s)


settings = once(OrderSettings)
