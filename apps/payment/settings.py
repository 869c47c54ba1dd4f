"""Every variable the payment service's processes read (docs/operations.md, Settings), read once at start."""

from __future__ import annotations

from dataclasses import dataclass

from apps.common.settings import DAY_S, Settings, env, once

__all__ = ["MIN_REFUND_STATUS_AFTER_S", "PaymentSettings", "settings"]

# A refund unanswered for PAYMENT_REFUND_STATUS_AFTER_S is asked about instead of sent again: at least this, far
# above one call's attempts (PAYMENT_PROVIDER_TIMEOUT_S x PAYMENT_PROVIDER_ATTEMPTS, ~15 s): a "no such
# refund" must not race a request of ours still on its way to the provider.
MIN_REFUND_STATUS_AFTER_S = 60.0


@dataclass(frozen=True, slots=True)
class PaymentSettings(Settings):
    # The card provider (apps/payment/provider.py): its address (none: the local sandbox's), API key (none:
    # no Authorization header), the name recorded on payments, and each call's timeout and attempts (the
    # defaults of RetryPolicy).
    provider_url: str | None = env("PAYMENT_PROVIDER_URL", None)
    provider_api_key: str | None = env("PAYMENT_PROVIDER_API_KEY", None)
    provider_name: str = env("PAYMENT_PROVIDER_NAME", "sandbox")
    provider_timeout_s: float = env("PAYMENT_PROVIDER_TIMEOUT_S", 3.0, above=0, maximum=DAY_S)
    # At most 100, far past any retry policy's meaning; the start sums a backoff per attempt (RetryPolicy).
    provider_attempts: int = env("PAYMENT_PROVIDER_ATTEMPTS", 4, minimum=1, maximum=100)
    # A refund unanswered this long is asked about instead of sent again (apps/payment/operations.py
    # refund_status_after): at least MIN_REFUND_STATUS_AFTER_S.
    refund_status_after_s: float = env(
        "PAYMENT_REFUND_STATUS_AFTER_S", 900.0, minimum=MIN_REFUND_STATUS_AFTER_S, maximum=DAY_S
    )
    # The payment worker (apps/payment/worker.py): its pause after a partial round, how long a claimed
    # operation is its own (`just refunds fail` waits one lease too), and its /metrics port (0: none).
    worker_poll_s: float = env("PAYMENT_WORKER_POLL_S", 0.2, above=0, maximum=DAY_S)
    worker_lease_s: float = env("PAYMENT_WORKER_LEASE_S", 30.0, above=0, maximum=DAY_S)
    worker_port: int = env("PAYMENT_WORKER_PORT", 0, minimum=0, maximum=65535)


settings = once(PaymentSettings)
