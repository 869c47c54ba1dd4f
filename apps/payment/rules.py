"""Pure payment rules: statuses and their transitions, what may be captured, voided or refunded, what a
cancelled order's payment needs next, money in the provider's minor units, and the retry backoff.

No I/O here: services.py applies these to rows it has locked, and the CHECK constraints of the tables
are the backstop.
"""

from __future__ import annotations

import datetime as dt
import re
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Final, Protocol

from apps.common.errors import InconsistentFields, InvalidField, StateConflict
from apps.common.fields import has_control_characters, worded
from apps.common.pricing import check_places, minor_exponent, minor_units

__all__ = [
    "KINDS",
    "OUTCOMES",
    "STATUSES",
    "TRANSITIONS",
    "Compensation",
    "NamedRefund",
    "RefundRetry",
    "asks_refund_status",
    "blocked_by",
    "check_authorization",
    "check_capture",
    "check_currency",
    "check_reason",
    "check_refund",
    "check_transition",
    "check_void",
    "compensation",
    "counted_for_returns",
    "from_minor",
    "is_by_hand",
    "parse_amount",
    "plan_refund_retry",
    "plan_settlement",
    "refundable",
    "refused_while_awaited",
    "retry_delay",
    "return_refund_refusal",
    "sent_minor",
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
# A refund operation's request: the return it refunds (apps/payment/returns.py), the amount asked over HTTP
# (a refund by hand; a return's refund has a return_amount instead), and, on a retry settled by refunds by
# hand, what it counts of each ({operation id: amount}).
RETURN_ID: Final = "return_id"
BY_HAND: Final = "requested_amount"
SETTLED_BY: Final = "settled_by"
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

MAX_RETRY_DELAY_S: Final = 30.0
# NUMERIC(12, 2): the largest amount a payment row holds.
MAX_AMOUNT: Final = Decimal("9999999999.99")
# An amount in a request, exactly what is_money accepts: above zero, at most 10 digits and 2 decimals.
AMOUNT_PATTERN: Final = worded(
    r"^(?!0+(\.0{1,2})?$)(0|[1-9][0-9]{0,9})(\.[0-9]{1,2})?$",
    f"must be a decimal string above 0 and at most {MAX_AMOUNT}, with at most two decimals, e.g. 19.90",
)
# A currency a client names (a refund by hand's ``currency``): any case, checked against the payment's.
CURRENCY_PATTERN: Final = worded(r"^[A-Za-z]{3}$", "must be a 3-letter ISO 4217 currency code, e.g. USD")
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


class Authorized(Protocol):
    """What sent_minor reads of a payment (its row): the amount, currency and, once stored, the minor units and
    exponent its authorization was sent with (NULL on rows the release before payment_0005 wrote)."""

    @property
    def amount(self) -> Decimal: ...
    @property
    def currency(self) -> str: ...
    @property
    def amount_minor(self) -> int | None: ...
    @property
    def minor_exponent(self) -> int | None: ...


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
    retry (its answer may yet be a success). Refunds by hand that cover ``asked`` settle it (each one's
    amount counted once over all returns); that cover part of it refuse it, saying so: the provider is not
    asked for the whole again, and once staff refund the rest by hand, a retry settles it. A refund by hand
    since the return asked whose answer is not in yet (``by_hand_awaited``) refuses a retry they do not
    cover already: if it goes through, asking the provider for the whole as well would refund the return
    twice."""
    if (by_own := _by_its_own(own)) is not None:
        return by_own
    by_hand_total = sum((left for _, left in by_hand), Decimal(0))
    if asked <= 0:  # nothing asked is no claim on anyone's refund: check_refund answers it as the first time
        return RefundRetry(refund=True)
    if by_hand_total >= asked:
        return RefundRetry(settled_by=_claim(asked, by_hand)[0])
    if by_hand_awaited:
        return RefundRetry(refused=refused_while_awaited(by_hand_awaited, "retry after it"))
    if by_hand_total > 0:
        return RefundRetry(
            refused=f"{by_hand_total} of the {asked} to refund was refunded by hand since the return asked: "
            "refund the rest by hand, then retry"
        )
    return RefundRetry(refund=True)


def is_by_hand(request: Mapping[str, Any]) -> bool:
    """Whether a refund operation's request is one asked over HTTP (POST /api/payments/{id}/refund), not a
    return's refund nor a cancelled order's."""
    return BY_HAND in request and RETURN_ID not in request


def counted_for_returns(requests: Iterable[Mapping[str, Any]]) -> dict[str, Decimal]:
    """What returns' retries count of each refund by hand so far ({operation id: amount}), from the
    ledger's requests: a refund's amount counts once over all returns."""
    counted: dict[str, Decimal] = {}
    for request in requests:
        for op_id, amount in request.get(SETTLED_BY, {}).items():
            counted[op_id] = counted.get(op_id, Decimal(0)) + Decimal(amount)
    return counted


@dataclass(frozen=True, slots=True)
class NamedRefund:
    """A refund that staff named to settle a return (``settle_with``), as the payment's ledger has it:
    ``None`` fields when it is no refund of this payment. ``by_hand``: asked over HTTP (not a return's
    refund, not an order cancellation's); ``left``: its amount less what other returns counted already."""

    id: uuid.UUID
    outcome: str | None = None
    by_hand: bool = False
    left: Decimal = Decimal(0)

    @property
    def known(self) -> bool:
        """A refund by hand of this payment (whatever its outcome): otherwise naming it is a wrong reference."""
        return self.outcome is not None and self.by_hand

    def fault(self) -> str | None:
        """Why it cannot settle a return (completing "refund <id> ..."), or None."""
        if self.outcome is None:
            return "is no refund of this order's payment"
        if not self.by_hand:
            return "was not made by hand (POST /api/payments/{id}/refund): it is a return's or a cancellation's"
        if self.outcome == PENDING:
            return "still awaits the provider's answer: retry once it is answered"
        if self.outcome != SUCCEEDED:
            return f"did not go through ({self.outcome})"
        return None


SETTLE_WITH: Final = "settle_with"  # the field staff named the refunds in (POST /api/returns/{id}/retry-refund)


def plan_settlement(asked: Decimal, own: Sequence[tuple[uuid.UUID, str]], named: Sequence[NamedRefund]) -> RefundRetry:
    """A retry that names the refunds made by hand that paid the return back (``named``, in the order
    staff gave): settled by them, claiming what it needs of each, or refused saying which one is at
    fault (the reason opens with the field's name, ``settle_with``). Never the provider: staff said the
    money went back already, so asking it again could only refund twice. Its own refunds are looked at
    first, as for any retry: one that succeeded settles it, one still pending refuses it.

    Any refund made by hand counts, however long before the return asked (a refund by hand on receipt of
    the complaint, before the items came back, left nothing refundable and the return refund_failed for
    good): naming it is staff's word that it was this return's money, which no rule could tell from a
    goodwill credit. Each refund's amount counts once over all returns (``left``)."""
    if (by_own := _by_its_own(own)) is not None:
        return by_own
    if asked <= 0:
        return RefundRetry(refused=f"{SETTLE_WITH}: this return has nothing to refund")
    seen: set[uuid.UUID] = set()
    for refund in named:
        # Twice is refused, not merged: _claim keeps one claim per refund, and a second one would replace the
        # first (a return settled by more than the refund has left). The returns API refuses it first.
        fault = "is named twice" if refund.id in seen else refund.fault()
        if fault is not None:
            return RefundRetry(refused=f"{SETTLE_WITH}: refund {refund.id} {fault}")
        seen.add(refund.id)
    claims, needed = _claim(asked, [(refund.id, refund.left) for refund in named])
    if needed > 0:
        ids = ", ".join(str(refund.id) for refund in named)
        return RefundRetry(
            refused=f"{SETTLE_WITH}: refunds {ids} cover only {asked - needed} of the {asked} to refund (what "
            "other returns counted of them aside): refund the rest by hand and name it too"
        )
    return RefundRetry(settled_by=claims)


def _by_its_own(own: Sequence[tuple[uuid.UUID, str]]) -> RefundRetry | None:
    """A retry decided by the return's own refunds: one that succeeded settles it, one pending refuses it."""
    for op_id, outcome in own:
        if outcome == SUCCEEDED:
            return RefundRetry(already_refunded_by=op_id)
    for op_id, outcome in own:
        if outcome == PENDING:
            return RefundRetry(refused=f"refund {op_id} of this return still awaits the provider's answer")
    return None


def _claim(asked: Decimal, available: Sequence[tuple[uuid.UUID, Decimal]]) -> tuple[dict[uuid.UUID, Decimal], Decimal]:
    """What of each refund by hand (oldest or first named first) the return claims, and what is still needed."""
    claims: dict[uuid.UUID, Decimal] = {}
    needed = asked
    for op_id, left in available:
        if needed > 0 and left > 0:
            claims[op_id] = min(left, needed)
            needed -= claims[op_id]
    return claims, needed


def check_currency(asked: str, payment: str) -> None:
    """A refund is in its payment's currency (422 naming ``currency`` otherwise): the amounts of two
    currencies cannot be compared, and the provider refunds in the charge's currency whatever is asked."""
    if asked.upper() != payment.upper():
        raise InconsistentFields("currency", f"the refund is in {asked.upper()}, the payment in {payment.upper()}")


def return_refund_refusal(currency: str, payment_currency: str, by_hand_awaited: Sequence[uuid.UUID]) -> str | None:
    """Why a return's first refund is refused before its amount is looked at, or None: another currency
    than the payment's; a refund made by hand on the payment still awaiting the provider's answer (if it
    was this return's money and goes through, the return's own refund would pay it back twice; nothing
    here can tell, so staff retry once it is answered, naming it in settle_with if it paid the return)."""
    try:
        check_currency(currency, payment_currency)
    except InconsistentFields as exc:
        return exc.message
    if by_hand_awaited:
        return refused_while_awaited(
            by_hand_awaited, "once it is answered, retry (with settle_with naming it if it paid this return back)"
        )
    return None


# How a return's refund refused for a refund by hand still awaiting the provider's answer says so
# (refused_while_awaited); blocked_by reads the ids back (the returns service, from payment.refund_failed).
_AWAITED: Final = " made by hand still awaits the provider's answer: "


def refused_while_awaited(by_hand_awaited: Sequence[uuid.UUID], then: str) -> str:
    """The refusal of a return's refund (first or retry) while refunds by hand await the provider."""
    return f"refund {', '.join(str(op_id) for op_id in by_hand_awaited)}{_AWAITED}{then}"


def blocked_by(reason: str) -> list[uuid.UUID]:
    """The refunds by hand whose pending answer refused a return's refund, read from the refusal's reason
    (refused_while_awaited); [] for any other refusal (settle_with naming a pending refund is staff's word
    that it paid the return: not this). Once every one of them failed, nothing held the return back: the
    returns service asks again on its own (apps/returns/progress.py retry_unblocked)."""
    head, found, _ = reason.partition(_AWAITED)
    if not found or not head.startswith("refund "):
        return []
    ids: list[uuid.UUID] = []
    for part in head.removeprefix("refund ").split(", "):
        try:
            ids.append(uuid.UUID(part))
        except ValueError:
            return []  # not ours: never guess a blocker
    return ids


def asks_refund_status(kind: str, asked_at: dt.datetime, now: dt.datetime, after: dt.timedelta) -> bool:
    """Whether a pending operation is asked about rather than sent again: a refund unanswered for ``after``.
    Sending it again is idempotent but may never be answered (the provider's refund endpoint failing for
    good); asking what became of it settles it either way. Only refunds: an authorization has the saga's
    deadline, a capture or a void is answered with the order's next step."""
    return kind == REFUND and now - asked_at >= after


def to_minor(amount: Decimal, currency: str) -> int:
    """Major units (Decimal("12.34") USD) to the provider's integer minor units (1234) by today's table. A
    payment's own calls use the exponent it was authorized with (payments.minor_exponent, sent_minor)."""
    return minor_units(amount, minor_exponent(currency))


def from_minor(minor: int, currency: str) -> Decimal:
    return Decimal(minor).scaleb(-minor_exponent(currency))


def sent_minor(amount: Decimal, payment: Authorized) -> int:
    """What an operation of ``amount`` on ``payment`` sends the provider: in the minor unit its authorization
    was sent in, never recomputed with today's table. ff6ffb9 made the three-decimal currencies thousandths:
    a BHD payment authorized as 1050 hundredths before it and captured after would have been sent 10500 (an
    over-capture the provider refuses). The whole authorized amount is the stored integer itself."""
    if payment.amount_minor is not None and amount == payment.amount:
        return payment.amount_minor
    exponent = minor_exponent(payment.currency) if payment.minor_exponent is None else payment.minor_exponent
    return minor_units(amount, exponent)


def retry_delay(attempt: int, *, base_s: float = 0.5, cap_s: float = MAX_RETRY_DELAY_S) -> float:
    """Capped exponential backoff before retrying a pending operation (attempt counts from 1)."""
    return float(min(cap_s, base_s * 2 ** max(0, attempt - 1)))


def check_authorization(amount: Decimal, currency: str, token: str, attempt: int = 1) -> None:
    """What an authorization request must carry: a positive amount in the currency's precision, an ISO
    currency code, a token."""
    if not is_money(amount):
        raise InvalidField("amount", f"must be above zero and at most {MAX_AMOUNT}, with at most two decimals")
    if len(currency) != 3 or not currency.isalpha():
        raise InvalidField("currency", "must be a 3-letter ISO 4217 code")
    check_places("amount", amount, currency)
    if not token or len(token) > 255:
        raise InvalidField("payment_method.token", "must be a provider token of 1 to 255 characters")
    if attempt < 1:
        raise InvalidField("attempt", "must be 1 or more")
