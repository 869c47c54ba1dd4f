"""What the sandbox provider decides, in a card provider's style (amounts in integer minor units).

Every call carries an Idempotency-Key: the first answer for a key is stored and every later call with the
same key and the same parameters gets it again without doing anything (no second charge); the same key
with other parameters is refused. Transient failures (5xx) are not stored, so a retry may succeed.

Test tokens: ``tok_visa`` / ``tok_mastercard`` approve, ``tok_chargeDeclined`` (and
``tok_chargeDeclinedInsufficientFunds``) decline with a 402, ``tok_slow`` approves but the answer is sent
only after SANDBOX_SLOW_DELAY_S (to every call with that key until then; longer than the saga's payment
deadline), ``tok_delayed`` the same after SANDBOX_DELAYED_S (5 s: longer than one call's timeout, well within
the deadline: an answer that comes late for the caller, not for the saga), ``tok_flaky`` answers 503 twice
per key and then approves. ``tok_captureFail``, ``tok_voidFail`` and ``tok_refundFail`` approve the
authorization, then refuse what follows it as a card provider refuses it: a capture (400
``charge_expired_for_capture``), a void (402 ``processing_error``), a refund (402
``expired_or_canceled_card``); a refused call leaves the authorization as it was. ``tok_refundFailOnce``
refuses only its authorization's first refund, as ``tok_refundFail`` does; a later refund (asked under
another key: the refusal is stored under the first one's) goes through, as after a card is re-issued.
Refunds that are never answered: ``tok_refundNoAnswer``'s are made (and stored under their key) but every
answer to POST /v1/refunds is a 503, as when the provider's answers are lost; ``tok_refundUnreachable``'s
are never made, every call a 503. GET /v1/refunds?idempotency_key= says what became of either (refund_status).
``tok_refundUnreachableOnce``: its authorization's first refund (the first key asked) is never made, every
call a 503, as ``tok_refundUnreachable``'s; every later refund (another key) goes through: a refund by hand
the provider never got, then a return's refund that it does.

An outage (Provider.set_outage, POST /sandbox/outage): for a while every call is answered with a 5xx and
nothing is decided or stored, or is held ``delay_s`` before it is decided (longer than the caller's timeout:
the provider acts on a request its caller gave up on, and a retry with the key gets that answer).

What the sandbox reads from the environment is ``SandboxSettings`` (apps/common/settings.py's base), read
when it starts (by ``python -m apps.payment_sandbox`` before its server starts, and when its app opens the
ledger): a delay that is not a number stops the start naming the variable. Its port is the stack's
(``PAYMENT_SANDBOX_PORT``: apps/common/topology.py PROCESSES), which the payment service calls it on.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass
from typing import Any, Final

from apps.common.settings import DAY_S, Settings, env
from apps.payment_sandbox.ledger import Answer, Ledger

__all__ = ["Outage", "Provider", "SandboxSettings"]

# The follow-up call each of these tokens' authorizations refuse, and how (status, error type, code).
REFUSED_LATER: Final = {
    "tok_captureFail": ("capture", 400, "invalid_request_error", "charge_expired_for_capture"),
    "tok_voidFail": ("void", 402, "card_error", "processing_error"),
    "tok_refundFail": ("refund", 402, "card_error", "expired_or_canceled_card"),
}
# Tokens whose authorization refuses only the first call of that operation (as REFUSED_LATER's do).
REFUSED_ONCE: Final = {"tok_refundFailOnce": REFUSED_LATER["tok_refundFail"]}
# Tokens whose refunds are never answered: made but the answer lost, or never made at all.
REFUND_NO_ANSWER: Final = "tok_refundNoAnswer"
REFUND_UNREACHABLE: Final = "tok_refundUnreachable"
REFUND_UNREACHABLE_ONCE: Final = "tok_refundUnreachableOnce"
APPROVING: Final = frozenset(
    {
        "tok_visa",
        "tok_mastercard",
        "tok_slow",
        "tok_delayed",
        "tok_flaky",
        REFUND_NO_ANSWER,
        REFUND_UNREACHABLE,
        REFUND_UNREACHABLE_ONCE,
        *REFUSED_LATER,
        *REFUSED_ONCE,
    }
)
DECLINES: Final = {"tok_chargeDeclined": "card_declined", "tok_chargeDeclinedInsufficientFunds": "insufficient_funds"}
FLAKY_FAILURES: Final = 2


@dataclass(frozen=True, slots=True)
class SandboxSettings(Settings):
    ledger_file: str | None = env("PAYMENT_SANDBOX_DB", None)  # None: .stack/payment-sandbox/ledger.sqlite3
    slow_delay_s: float = env("SANDBOX_SLOW_DELAY_S", 20.0, minimum=0, maximum=DAY_S)
    delayed_s: float = env("SANDBOX_DELAYED_S", 5.0, minimum=0, maximum=DAY_S)

    def answer_delay_s(self, token: str) -> float:
        """How long the answer to an authorization with this token is held back (0: at once)."""
        if token == "tok_slow":
            return self.slow_delay_s
        if token == "tok_delayed":
            return self.delayed_s
        return 0.0


def error(status_code: int, kind: str, code: str, message: str) -> Answer:
    return Answer(status_code, {"error": {"type": kind, "code": code, "message": message}})


def _invalid(code: str, message: str) -> Answer:
    return error(400, "invalid_request_error", code, message)


def fingerprint(path: str, params: dict[str, Any]) -> str:
    return hashlib.sha256(f"{path} {json.dumps(params, sort_keys=True)}".encode()).hexdigest()


def _positive_amount(params: dict[str, Any], field: str = "amount") -> int | None:
    value = params.get(field)
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else None


MAX_OUTAGE_S: Final = 900.0
MAX_OUTAGE_DELAY_S: Final = 60.0


@dataclass(frozen=True, slots=True)
class Outage:
    """Until ``until`` (epoch s): every call answered ``status`` (a 5xx, nothing decided), else held
    ``delay_s`` before it is decided."""

    until: float
    status: int | None = None
    delay_s: float = 0.0

    def refusal(self) -> Answer | None:
        if self.status is None:
            return None
        return error(self.status, "api_error", "service_unavailable", "outage: retry later with the same key")


class Provider:
    """The sandbox's decisions on top of its ledger."""

    def __init__(self, ledger: Ledger, settings: SandboxSettings | None = None) -> None:
        self.ledger = ledger
        self.settings = SandboxSettings.from_env() if settings is None else settings
        self._outage: Outage | None = None

    def set_outage(self, seconds: float, *, status: int | None = None, delay_s: float = 0.0) -> Outage | None:
        """Start an outage for ``seconds`` (0 ends the current one). ValueError for what no provider does:
        a status that is no 5xx, a delay or length out of bounds, neither a status nor a delay."""
        if not 0 <= seconds <= MAX_OUTAGE_S:
            raise ValueError(f"seconds must be 0 to {MAX_OUTAGE_S:g}")
        if status is not None and not 500 <= status <= 599:
            raise ValueError("status must be a 5xx")
        if not 0 <= delay_s <= MAX_OUTAGE_DELAY_S:
            raise ValueError(f"delay_s must be 0 to {MAX_OUTAGE_DELAY_S:g}")
        if seconds and status is None and not delay_s:
            raise ValueError("an outage answers a 5xx (status) or answers late (delay_s)")
        self._outage = Outage(time.time() + seconds, status, delay_s) if seconds else None
        return self._outage

    def outage(self) -> Outage | None:
        """The outage going on now, if any."""
        if self._outage is not None and time.time() >= self._outage.until:
            self._outage = None
        return self._outage

    def call(self, key: str, path: str, params: dict[str, Any]) -> Answer:
        """Answer a call idempotently: the stored answer for the key, or a new decision (stored unless 5xx)."""
        print_ = fingerprint(path, params)
        stored = self.ledger.stored(key)
        if stored is not None:
            replay = stored.answer
            if stored.fingerprint != print_:
                replay = _invalid("idempotency_key_reused", "this Idempotency-Key was used with other parameters")
            else:
                replay = _lost(path, params, self.ledger) or replay
            self.ledger.log_request(key, path, replay.status_code, replayed=True)
            return replay
        with self.ledger.transaction():  # what it did and the answer stored under the key, or neither
            answer = self._decide(key, path, params)
            if answer.status_code < 500:
                self.ledger.store(key, print_, answer)
        sent = _lost(path, params, self.ledger) or answer
        self.ledger.log_request(key, path, sent.status_code, replayed=False)
        return sent

    def refund_status(self, key: str) -> Answer:
        """What became of the refund asked under ``key``: 200 with the refund (status succeeded), 200 with
        status failed and the refusal's code, or 404 resource_missing when no refund call under that key
        was decided (only 5xx answers, or never called): nothing was done, nothing will be."""
        stored = self.ledger.stored(key)
        if stored is None or not self.ledger.was_called(key, "/v1/refunds"):
            return error(404, "invalid_request_error", "resource_missing", f"no refund under key {key!r}")
        answer = stored.answer
        if 200 <= answer.status_code < 300:
            return Answer(200, answer.body)
        code = answer.body.get("error", {}).get("code", "refund_failed")
        return Answer(200, {"object": "refund", "status": "failed", "failure_code": code, "idempotency_key": key})

    def _decide(self, key: str, path: str, params: dict[str, Any]) -> Answer:
        parts = path.strip("/").split("/")
        if parts == ["v1", "authorizations"]:
            return self._authorize(key, params)
        if len(parts) == 4 and parts[:2] == ["v1", "authorizations"] and parts[3] == "capture":
            return self._capture(parts[2], params)
        if len(parts) == 4 and parts[:2] == ["v1", "authorizations"] and parts[3] == "void":
            return self._void(parts[2])
        if parts == ["v1", "refunds"]:
            return self._refund(key, params)
        return error(404, "invalid_request_error", "unknown_endpoint", f"no endpoint {path}")

    def _authorize(self, key: str, params: dict[str, Any]) -> Answer:
        amount = _positive_amount(params)
        currency, token, reference = params.get("currency"), params.get("source"), params.get("reference")
        if amount is None:
            return _invalid("parameter_invalid_integer", "amount must be a positive integer (minor units)")
        if not isinstance(currency, str) or len(currency) != 3:
            return _invalid("parameter_invalid_currency", "currency must be a 3-letter code")
        if not isinstance(reference, str) or not reference:
            return _invalid("parameter_missing", "reference is required")
        if not isinstance(token, str) or (token not in APPROVING and token not in DECLINES):
            return _invalid("token_invalid", f"no such token: {token!r}")
        if token == "tok_flaky" and self.ledger.count_transient_failure(key) < FLAKY_FAILURES:
            return _unavailable()
        if token in DECLINES:
            return error(402, "card_error", DECLINES[token], "the card was declined")
        auth = self.ledger.add_authorization(
            reference=reference, key=key, token=token, amount=amount, currency=currency.upper()
        )
        delay = self.settings.answer_delay_s(token)
        ready_at = time.time() + delay if delay else 0.0
        return Answer(201, _authorization_body(auth), ready_at)

    def _capture(self, auth_id: str, params: dict[str, Any]) -> Answer:
        auth = self.ledger.authorization(auth_id)
        if auth is None:
            return error(404, "invalid_request_error", "resource_missing", f"no authorization {auth_id}")
        if (refused := _refused("capture", auth)) is not None:
            return refused
        amount = _positive_amount(params) if "amount" in params else auth["amount"]
        if amount is None or amount > auth["amount"]:
            return _invalid("amount_too_large", "amount must be positive and at most the authorized amount")
        if auth["status"] != "authorized":
            return error(409, "invalid_request_error", "authorization_not_capturable", f"it is {auth['status']}")
        return Answer(
            200, _authorization_body(self.ledger.set_authorization(auth_id, status="captured", amount_captured=amount))
        )

    def _void(self, auth_id: str) -> Answer:
        auth = self.ledger.authorization(auth_id)
        if auth is None:
            return error(404, "invalid_request_error", "resource_missing", f"no authorization {auth_id}")
        if auth["status"] != "authorized":
            return error(409, "invalid_request_error", "authorization_not_voidable", f"it is {auth['status']}")
        if (refused := _refused("void", auth)) is not None:
            return refused
        return Answer(200, _authorization_body(self.ledger.set_authorization(auth_id, status="voided")))

    def _refund(self, key: str, params: dict[str, Any]) -> Answer:
        auth_id = str(params.get("authorization", ""))
        auth = self.ledger.authorization(auth_id)
        if auth is None:
            return error(404, "invalid_request_error", "resource_missing", f"no authorization {auth_id}")
        if auth["status"] != "captured":
            return error(409, "invalid_request_error", "charge_not_refundable", f"it is {auth['status']}")
        if (refused := _refused("refund", auth)) is not None:
            return refused
        if auth["token"] == REFUND_UNREACHABLE:
            return _unavailable()
        if auth["token"] == REFUND_UNREACHABLE_ONCE and self.ledger.first_key(f"refund:{auth_id}", key) == key:
            return _unavailable()
        if auth["token"] in REFUSED_ONCE and not self.ledger.count_transient_failure(f"refused-once:{auth_id}"):
            return _refusal("refund", REFUSED_ONCE[auth["token"]])
        left = auth["amount_captured"] - auth["amount_refunded"]
        amount = _positive_amount(params) if "amount" in params else left
        if amount is None or amount > left:
            return _invalid("amount_too_large", f"at most {left} can be refunded")
        refund_id = self.ledger.add_refund(auth_id, amount)
        refunded = auth["amount_refunded"] + amount
        status = "refunded" if refunded >= auth["amount_captured"] else "captured"
        self.ledger.set_authorization(auth_id, amount_refunded=refunded, status=status)
        body = {"id": refund_id, "object": "refund", "authorization": auth_id, "amount": amount, "status": "succeeded"}
        return Answer(201, body)


def _unavailable() -> Answer:
    return error(503, "api_error", "service_unavailable", "temporary failure, retry with the same key")


def _lost(path: str, params: dict[str, Any], ledger: Ledger) -> Answer | None:
    """The 503 sent instead of a refund's answer for tok_refundNoAnswer (the decision stands, stored)."""
    if path.strip("/") != "v1/refunds":
        return None
    auth = ledger.authorization(str(params.get("authorization", "")))
    return _unavailable() if auth is not None and auth["token"] == REFUND_NO_ANSWER else None


def _refused(operation: str, auth: dict[str, Any]) -> Answer | None:
    """The refusal a test token's authorization gives this operation, if it is the one it refuses."""
    refusal = REFUSED_LATER.get(auth["token"])
    if refusal is None or refusal[0] != operation:
        return None
    return _refusal(operation, refusal)


def _refusal(operation: str, refusal: tuple[str, int, str, str]) -> Answer:
    _, status_code, kind, code = refusal
    return error(status_code, kind, code, f"the provider refused the {operation}")


def _authorization_body(auth: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": auth["id"],
        "object": "authorization",
        "status": auth["status"],
        "amount": auth["amount"],
        "amount_captured": auth["amount_captured"],
        "amount_refunded": auth["amount_refunded"],
        "currency": auth["currency"],
        "reference": auth["reference"],
    }
