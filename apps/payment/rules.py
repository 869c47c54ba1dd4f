"""Pure payment rules: statuses and their transitions, what may be captured, voided or refunded, what a
cancelled order's payment needs next, money in the provider's minor units, and the retry backoff.

No I/O here: services.py applies these to rows it has locked, and the CHECK constraints of the tables
are the backstop.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal
from typing import Final

from apps.common.errors import InvalidField, StateConflict
from apps.common.fields import has_control_characters

__all__ = [
    "KINDS",
    "OUTCOMES",
    "STATUSES",
    "TRANSITIONS",
    "Compensation",
    "RefundRetry",
    "check_authorization",
    "check_capture",
    "check_reason",
    "check_refund",
    "check_transition",
    "check_void",
    "compensation",
    "from_minor",
    "parse_amount",
    "plan_refund_retry",
    "refundable",
    "retry_delay",
    "status_after_refund",
    "to_minor",
]

PENDING: Final = "pending"
AUTHORIZED: Final = "authorized"
CAPTURED: Final = "captured"
PARTIALLY_REFUNDED: Final = "partially_refunded"
REFUNDED: Final = "refunded"
VOIDED: Final = "voided"
DECLINED: Final = "declined"
FAILED: Final = "failed"
STATUSES: Final = (PENDING, AUTHORIZED, CAPTURED, PARTIALLY_REFUNDED, REFUNDED, VOIDED, DECLINED, FAILED)

# Provider operations (the ledger's kinds) and their outcomes. "pending" means the provider's answer is
# not known yet: never called, a call in flight, or a call that timed out; it is retried with its key.
AUTHORIZE: Final = "authorize"
CAPTURE: Final = "capture"
VOID: Final = "void"
REFUND: Final = "refund"
KINDS: Final = (AUTHORIZE, CAPTURE, VOID, REFUND)
SUCCEEDED: Final = "succeeded"
OP_DECLINED: Final = "declined"
OP_FAILED: Final = "failed"
OUTCOMES: Final = (PENDING, SUCCEEDED, OP_DECLINED, OP_FAILED)

TRANSITIONS: Final[dict[str, frozenset[str]]] = {
    PENDING: frozenset({AUTHORIZED, DECLINED, FAILED}),
    AUTHORIZED: frozenset({CAPTURED, VOIDED}),
    CAPTURED: frozenset({PARTIALLY_REFUNDED, REFUNDED}),
    PARTIALLY_REFUNDED: frozenset({PARTIALLY_REFUNDED, REFUNDED}),
    REFUNDED: frozenset(),
    VOIDED: frozenset(),
    DECLINED: frozenset(),
    FAILED: frozenset(),
}
# Statuses in which money is held or taken and not given back (what a cancelled order must not keep).
LIVE: Final = frozenset({AUTHORIZED, CAPTURED, PARTIALLY_REFUNDED})
FINAL: Final = frozenset(status for status, nexts in TRANSITIONS.items() if not nexts)

# ISO 4217 currencies without a minor unit; every other currency we take has two decimals.
_ZERO_DECIMAL: Final = frozenset({"JPY", "KRW", "VND", "CLP", "ISK", "UGX", "XAF", "XOF"})
MAX_RETRY_DELAY_S: Final = 30.0
# NUMERIC(12, 2): the largest amount a payment row holds.
MAX_AMOUNT: Final = Decimal("9999999999.99")
# An amount in a request, exactly what is_money accepts: above zero, at most 10 digits and 2 decimals.
AMOUNT_PATTERN: Final = r"^(?!0+(\.0{1,2})?$)(0|[1-9][0-9]{0,9})(\.[0-9]{1,2})?$"
_AMOUNT_RE: Final = re.compile(AMOUNT_PATTERN)


def check_transition(current: str, new: str) -> None:
    """Refuse (409, naming ``status``) a move the state machine does not allow."""
    if new not in TRANSITIONS.get(current, frozenset()):
        raise StateConflict("status", f"a {current} payment cannot become {new}")


def check_capture(status: str, authorized: Decimal, amount: Decimal | None) -> Decimal:
    """The amount to capture: all that was authorized unless less is asked; only an authorized payment."""
    if status != AUTHORIZED:
        raise StateConflict("status", f"only an authorized payment can be captured; this one is {status}")
    if amount is None:
        return authorized
    if not is_money(amount):
        raise InvalidField("amount", "must be greater than zero, with at most two decimals")
    if amount > authorized:
        raise StateConflict("amount", f"cannot capture {amount}: only {authorized} was authorized")
    return amount


def check_void(status: str) -> None:
    """Only an authorized (not yet captured) payment can be voided; a captured one is refunded."""
    if status != AUTHORIZED:
        raise StateConflict("status", f"only an authorized payment can be voided; this one is {status}")


def refundable(captured: Decimal, refunded: Decimal, pending_refunds: Decimal = Decimal(0)) -> Decimal:
    """What may still be refunded: captured, minus refunded, minus refunds whose answer is not known yet."""
    return max(Decimal(0), captured - refunded - pending_refunds)


def check_refund(
    status: str, captured: Decimal, refunded: Decimal, pending_refunds: Decimal, amount: Decimal | None
) -> Decimal:
    """The amount to refund (all that is refundable unless less is asked), or 409 above what was captured."""
    if amount is not None and not is_money(amount):
        raise InvalidField("amount", "must be greater than zero, with at most two decimals")
    if status not in (CAPTURED, PARTIALLY_REFUNDED):
        raise StateConflict("status", f"only a captured payment can be refunded; this one is {status}")
    left = refundable(captured, refunded, pending_refunds)
    amount = left if amount is None else amount
    if amount > left or amount == 0:
        raise StateConflict("amount", f"cannot refund {amount}: {left} of {captured} captured is refundable")
    return amount


def is_money(amount: Decimal) -> bool:
    """A finite amount above zero that a payment row can hold (NUMERIC(12, 2))."""
    return amount.is_finite() and Decimal(0) < amount <= MAX_AMOUNT and amount == amount.quantize(Decimal("0.01"))


def parse_amount(raw: str | None, field: str = "amount") -> Decimal | None:
    """A request's decimal string as money (None stays None), or 400 naming the field."""
    if raw is None:
        return None
    if not _AMOUNT_RE.fullmatch(raw):
        raise InvalidField(field, f"must be a decimal string above 0 and at most {MAX_AMOUNT}, e.g. 19.90")
    return Decimal(raw)


def check_reason(reason: str) -> str:
    """A refund's reason: one line of text (no control characters), not only spaces."""
    if has_control_characters(reason) or not reason.strip():
        raise InvalidField("reason", "must be one line of text")
    return reason


def status_after_refund(captured: Decimal, refunded: Decimal) -> str:
    """``refunded`` once everything captured went back, else ``partially_refunded``."""
    return REFUNDED if refunded >= captured else PARTIALLY_REFUNDED


@dataclass(frozen=True, slots=True)
class Compensation:
    """The provider operation that undoes a payment whose order was cancelled."""

    kind: str
    amount: Decimal


def compensation(
    status: str, amount: Decimal, captured: Decimal, refunded: Decimal, *, operation_in_flight: bool
) -> Compensation | None:
    """What a cancelled order's payment needs next: void what is authorized, refund what was captured,
    nothing while another operation's answer is awaited (it is decided again after that answer), and
    nothing once no money is held (declined, failed, voided, refunded)."""
    if operation_in_flight:
        return None
    if status == AUTHORIZED:
        return Compensation(VOID, amount)
    if status in (CAPTURED, PARTIALLY_REFUNDED) and captured > refunded:
        return Compensation(REFUND, captured - refunded)
    return None


@dataclass(frozen=True, slots=True)
class RefundRetry:
    """What a retry of a return's refused refund does: ``refund`` asks the provider for the whole refund;
    ``settled_by`` non-empty: refunded already (by hand: the amount each of those refunds now counts for
    this return); ``refused``: why nothing is refunded. Exactly one of the three."""

    refund: bool = False
    settled_by: dict[uuid.UUID, Decimal] = field(default_factory=dict)
    already_refunded_by: uuid.UUID | None = None
    refused: str | None = None


def plan_refund_retry(
    asked: Decimal,
    own: Sequence[tuple[uuid.UUID, str]],
    by_hand: Sequence[tuple[uuid.UUID, Decimal]],
    by_hand_awaited: Sequence[uuid.UUID] = (),
) -> RefundRetry:
    """A retry of a return's refund of ``asked``, given the return's own earlier refund operations ``own``
    ((id, outcome)) and the refunds made by hand (over HTTP) on the payment since the return first asked,
    oldest first, with what of each no other return's retry counted yet ((id, amount left)).

    Never twice for one return: one of its own that succeeded settles it; one still pending refuses the
    retry (its answer may yet be a success). Refunds by hand that cover ``asked`` settle it (each counted
    for one return only); that cover part of it refuse it, saying so: the provider is not asked for the
    whole again, and once staff refund the rest by hand, a retry settles it. A refund by hand since the return
    asked whose answer is not in yet (``by_hand_awaited``) refuses a retry they do not cover already: if it
    goes through, asking the provider for the whole as well would refund the return twice."""
    for op_id, outcome in own:
        if outcome == SUCCEEDED:
            return RefundRetry(already_refunded_by=op_id)
    for op_id, outcome in own:
        if outcome == PENDING:
            return RefundRetry(refused=f"refund {op_id} of this return still awaits the provider's answer")
    by_hand_total = sum((left for _, left in by_hand), Decimal(0))
    if asked <= 0:  # nothing asked is no claim on anyone's refund: check_refund answers it as the first time
        return RefundRetry(refund=True)
    if by_hand_total >= asked:
        claims: dict[uuid.UUID, Decimal] = {}
        needed = asked
        for op_id, left in by_hand:
            if needed <= 0:
                break
            if left > 0:
                claims[op_id] = min(left, needed)
                needed -= claims[op_id]
        return RefundRetry(settled_by=claims)
    if by_hand_awaited:
        awaited = ", ".join(str(op_id) for op_id in by_hand_awaited)
        return RefundRetry(refused=f"refund {awaited} made by hand still awaits the provider's answer: retry after it")
    if by_hand_total > 0:
        return RefundRetry(
            refused=f"{by_hand_total} of the {asked} to refund was refunded by hand since the return asked: "
            "refund the rest by hand, then retry"
        )
    return RefundRetry(refund=True)


def minor_exponent(currency: str) -> int:
    return 0 if currency.upper() in _ZERO_DECIMAL else 2


def to_minor(amount: Decimal, currency: str) -> int:
    """Major units (Decimal("12.34") USD) to the provider's integer minor units (1234)."""
    scaled = amount.scaleb(minor_exponent(currency)).quantize(Decimal(1), rounding=ROUND_HALF_UP)
    return int(scaled)


def from_minor(minor: int, currency: str) -> Decimal:
    return Decimal(minor).scaleb(-minor_exponent(currency))


def retry_delay(attempt: int, *, base_s: float = 0.5, cap_s: float = MAX_RETRY_DELAY_S) -> float:
    """Capped exponential backoff before retrying a pending operation (attempt counts from 1)."""
    return float(min(cap_s, base_s * 2 ** max(0, attempt - 1)))


def check_authorization(amount: Decimal, currency: str, token: str, attempt: int = 1) -> None:
    """What an authorization request must carry: a positive amount, an ISO currency code, a token."""
    if not is_money(amount):
        raise InvalidField("amount", f"must be above zero and at most {MAX_AMOUNT}, with at most two decimals")
    if len(currency) != 3 or not currency.isalpha():
        raise InvalidField("currency", "must be a 3-letter ISO 4217 code")
    if not token or len(token) > 255:
        raise InvalidField("payment_method.token", "must be a provider token of 1 to 255 characters")
    if attempt < 1:
        raise InvalidField("attempt", "must be 1 or more")
