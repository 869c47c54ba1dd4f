"""The payment provider behind a small interface, and its HTTP implementation.

``PaymentProvider`` is what services.py calls: authorize, capture, void, refund, each with the idempotency
key of the ledger row it answers, and refund_status: what became of a refund asked under a key (the worker
asks it of a refund left unanswered past PAYMENT_REFUND_STATUS_AFTER_S, apps/payment/operations.py).
``HttpProvider`` speaks the card-provider API that the local sandbox
(apps/payment_sandbox) implements; PAYMENT_PROVIDER_URL (and PAYMENT_PROVIDER_API_KEY) point it at a real
one. Amounts cross this boundary in the currency's minor units, as the payment's own row says (the exponent its
authorization was sent with: apps/payment/rules.sent_minor), never converted here.

Retries: a timeout, a refused connection, a 5xx, a 408 or 429, or a 409 "request in progress" is transient: the same
request is sent again WITH THE SAME KEY (so the provider never does it twice), after a capped exponential
backoff, up to ``max_attempts``. When every attempt was transient the outcome is UNKNOWN: the provider may
or may not have acted, so the ledger row stays pending and the worker asks again later, with that key.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any, Final, Protocol

import aiohttp
import msgspec

from apps.common.topology import PROCESSES
from apps.payment.rules import OP_DECLINED, OP_FAILED, PENDING, SUCCEEDED
from apps.payment.settings import settings

__all__ = [
    "NO_RECORD",
    "HttpProvider",
    "PaymentProvider",
    "ProviderResult",
    "RetryPolicy",
    "classify_refund_status",
    "provider_from_env",
]

UNKNOWN: Final = PENDING  # the ledger's word for "no answer yet"
# A refund's failure code when the provider, asked what became of it, has no refund under its key: it never
# acted on any of the calls, so the refund is failed and a retry (a new key) may be asked safely.
NO_RECORD: Final = "refund_unknown_to_provider"


@dataclass(frozen=True, slots=True)
class ProviderResult:
    """One operation's outcome: succeeded, declined, failed (definite) or pending (unknown, retry later)."""

    outcome: str
    reference: str | None = None
    code: str | None = None
    response: dict[str, Any] = field(default_factory=dict)
    attempts: int = 1

    @property
    def known(self) -> bool:
        return self.outcome != UNKNOWN


class PaymentProvider(Protocol):
    """A card provider. Every call is idempotent by ``key``: the same key never acts twice."""

    name: str

    async def authorize(
        self, *, key: str, amount_minor: int, currency: str, token: str, reference: str
    ) -> ProviderResult: ...

    async def capture(self, *, key: str, authorization: str, amount_minor: int) -> ProviderResult: ...

    async def void(self, *, key: str, authorization: str) -> ProviderResult: ...

    async def refund(self, *, key: str, authorization: str, amount_minor: int) -> ProviderResult: ...

    async def refund_status(self, *, key: str) -> ProviderResult:
        """What became of the refund asked under ``key``: succeeded, failed, failed with code NO_RECORD
        (the provider has none), or unknown (pending: no answer, or the provider is still deciding)."""
        ...


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Per-attempt timeout, attempts and backoff (first delay, cap) for transient failures."""

    timeout_s: float = 3.0
    max_attempts: int = 4
    backoff_s: float = 0.1
    backoff_cap_s: float = 1.0

    def delay(self, attempt: int) -> float:
        return float(min(self.backoff_cap_s, self.backoff_s * 2.0 ** (attempt - 1)))

    def longest_s(self) -> float:
        """The longest one call may take: every attempt timing out, with the backoff between them."""
        return self.timeout_s * self.max_attempts + sum(self.delay(n) for n in range(1, self.max_attempts))

    def check_within(self, lease_s: float, lease: str) -> None:
        """ValueError unless a call ends within ``lease_s``. The worker's lease, the API's and the operator's
        hold (apps/payment/admin.py waits one lease) all assume it: a call still on its way once its lease
        ran out would run beside the next claim's, and cross its status query ("no such refund": failed,
        and then the provider makes it)."""
        if self.longest_s() >= lease_s:
            raise ValueError(
                f"a provider call may take {self.longest_s():g} s (PAYMENT_PROVIDER_TIMEOUT_S {self.timeout_s:g} x "
                f"PAYMENT_PROVIDER_ATTEMPTS {self.max_attempts}, with backoff): not under {lease} ({lease_s:g} s)"
            )

    @classmethod
    def from_env(cls) -> RetryPolicy:
        config = settings()
        return cls(timeout_s=config.provider_timeout_s, max_attempts=config.provider_attempts)


# 408: a proxy or load balancer in front of the provider gave up waiting; whether the provider acted is unknown,
# so it is asked again with the same key like a 5xx (counted definite, it marked failed a refund that may have
# been made). Sending again is always safe: the key makes the provider act once.
_TRANSIENT_CLIENT_STATUSES: Final = frozenset({408, 429})


def _is_transient(status: int, body: dict[str, Any]) -> bool:
    in_progress = status == 409 and _error_code(body) == "idempotency_request_in_progress"
    return status >= 500 or status in _TRANSIENT_CLIENT_STATUSES or in_progress


def _error_code(body: dict[str, Any]) -> str | None:
    err = body.get("error")
    return str(err.get("code")) if isinstance(err, dict) and err.get("code") else None


def classify(status: int, body: dict[str, Any], attempts: int) -> ProviderResult:
    """A definite answer: 2xx succeeded, 402 declined (a card error), any other 4xx failed."""
    if 200 <= status < 300:
        ref = body.get("id")
        return ProviderResult(SUCCEEDED, str(ref) if ref else None, None, body, attempts)
    code = _error_code(body) or f"http_{status}"
    return ProviderResult(OP_DECLINED if status == 402 else OP_FAILED, None, code, body, attempts)


def classify_refund_status(status: int, body: dict[str, Any], attempts: int) -> ProviderResult:
    """The answer to GET /v1/refunds?idempotency_key=: a definite one (the refund succeeded; it was refused;
    404 resource_missing: no refund under that key, NO_RECORD), or UNKNOWN (still deciding, anything else)."""
    if status == 404 and _error_code(body) == "resource_missing":
        return ProviderResult(OP_FAILED, None, NO_RECORD, body, attempts)
    state = body.get("status") if 200 <= status < 300 else None
    if state == SUCCEEDED:
        ref = body.get("id")
        return ProviderResult(SUCCEEDED, str(ref) if ref else None, None, body, attempts)
    if state == OP_FAILED:
        return ProviderResult(OP_FAILED, None, str(body.get("failure_code") or "refund_failed"), body, attempts)
    return ProviderResult(UNKNOWN, None, _error_code(body) or f"refund_status_{state or status}", body, attempts)


class HttpProvider:
    """The card-provider HTTP API (the sandbox's, or a real provider's at the configured URL)."""

    def __init__(
        self, session: aiohttp.ClientSession, *, name: str = "sandbox", policy: RetryPolicy | None = None
    ) -> None:
        self.session = session
        self.name = name
        self.policy = policy or RetryPolicy()

    async def authorize(
        self, *, key: str, amount_minor: int, currency: str, token: str, reference: str
    ) -> ProviderResult:
        body = {"amount": amount_minor, "currency": currency, "source": token, "reference": reference}
        return await self._post("/v1/authorizations", body, key)

    async def capture(self, *, key: str, authorization: str, amount_minor: int) -> ProviderResult:
        return await self._post(f"/v1/authorizations/{authorization}/capture", {"amount": amount_minor}, key)

    async def void(self, *, key: str, authorization: str) -> ProviderResult:
        return await self._post(f"/v1/authorizations/{authorization}/void", {}, key)

    async def refund(self, *, key: str, authorization: str, amount_minor: int) -> ProviderResult:
        body = {"authorization": authorization, "amount": amount_minor}
        return await self._post("/v1/refunds", body, key)

    async def refund_status(self, *, key: str) -> ProviderResult:
        status, answer, attempts = await self._call("GET", "/v1/refunds", None, key)
        if status is None:  # every attempt transient: ask again later
            return ProviderResult(UNKNOWN, None, _error_code(answer) or "unknown", answer, attempts)
        return classify_refund_status(status, answer, attempts)

    async def _post(self, path: str, body: dict[str, Any], key: str) -> ProviderResult:
        status, answer, attempts = await self._call("POST", path, body, key)
        if status is None:
            return ProviderResult(UNKNOWN, None, _error_code(answer) or "unknown", answer, attempts)
        return classify(status, answer, attempts)

    async def _call(
        self, method: str, path: str, body: dict[str, Any] | None, key: str
    ) -> tuple[int | None, dict[str, Any], int]:
        """The first definite answer (status, body, attempts), retrying transient ones with the same key;
        status None when every attempt was transient (the body is the last one's)."""
        last: dict[str, Any] = {}
        for attempt in range(1, self.policy.max_attempts + 1):
            if attempt > 1:
                await asyncio.sleep(self.policy.delay(attempt - 1))
            try:
                status, answer = await self._send(method, path, body, key)
            except (TimeoutError, aiohttp.ClientError) as exc:
                last = {"error": {"type": "transport", "code": type(exc).__name__, "message": str(exc)[:200]}}
                continue
            if not _is_transient(status, answer):
                return status, answer, attempt
            last = answer or {"error": {"code": f"http_{status}"}}
        return None, last, self.policy.max_attempts

    async def _send(self, method: str, path: str, body: dict[str, Any] | None, key: str) -> tuple[int, dict[str, Any]]:
        """One request: a POST carries its key in Idempotency-Key, a GET (a status query) names it."""
        headers = {"Content-Type": "application/json"} if body is not None else {}
        params = {"idempotency_key": key} if body is None else None
        if body is not None:
            headers["Idempotency-Key"] = key
        api_key = settings().provider_api_key
        if api_key:
            headers["Authorization"] = f"Bearer {api_key}"
        timeout = aiohttp.ClientTimeout(total=self.policy.timeout_s)
        data = None if body is None else msgspec.json.encode(body)
        async with self.session.request(
            method, path, data=data, params=params, headers=headers, timeout=timeout
        ) as resp:
            raw = await resp.read()
        try:
            decoded = msgspec.json.decode(raw) if raw else {}
        except (msgspec.DecodeError, UnicodeDecodeError):  # a string that is not UTF-8 is not a DecodeError
            decoded = {"error": {"code": "unreadable_answer"}}
        return resp.status, decoded if isinstance(decoded, dict) else {"body": decoded}


def provider_url() -> str:
    if (url := settings().provider_url) is not None:
        return url
    sandbox = next(p for p in PROCESSES if p.name == "payment-sandbox")  # its port: the topology's variable
    return f"http://127.0.0.1:{sandbox.local_port()}"


def provider_name() -> str:
    return settings().provider_name


def open_provider_session() -> aiohttp.ClientSession:
    """The pooled session to the provider; open it in a lifespan (no I/O at import time)."""
    connector = aiohttp.TCPConnector(limit=64, keepalive_timeout=30)
    return aiohttp.ClientSession(base_url=provider_url(), connector=connector)


def provider_from_env(session: aiohttp.ClientSession) -> HttpProvider:
    return HttpProvider(session, name=provider_name(), policy=RetryPolicy.from_env())
