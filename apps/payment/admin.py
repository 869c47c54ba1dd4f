"""Operators' refund commands (`just refunds ...`, docs/operations.md "A refund the provider never answers").

    just refunds pending [--older-than SECONDS]
        refunds awaiting the provider's answer, oldest first: id, payment, order, amount, since, attempts,
        the last error, the return it pays back (if any)
    just refunds fail OPERATION_ID --by NAME --reason TEXT
        settle one pending refund now. The command holds the row from the worker (and from the payments
        API's retries, which lease the same way) and waits out a call in
        flight (its lease, ~30 s), asks the provider what became of it once more, and applies that answer if
        there is one (succeeded, refused, or no such refund: then failed, NO_RECORD); only if the provider
        still does not answer is the refund failed on the operator's word. Either way ``--by`` and
        ``--reason`` are written on the ledger row (response.settled_by_operator) and the log; a failure by
        hand also in its error and in payment.refund_failed's reason, so the return shows who and why.

A refund failed here is a refund the payment service will never send again (its key is spent): a return's
refund goes to refund_failed and staff retry it (a new key), a refund by hand can be asked again. Returns
whose refund was refused because this refund by hand was pending are printed: the returns service asks
their refunds again on its own once it applies payment.refund_failed (session 29), nothing to redrive. Fail one
by hand only after checking with the provider (its dashboard or support) that it has no such refund: if it
has, the money went back and a retry would refund it twice.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import sys
import uuid
from typing import Any

from sqlalchemy import select, text, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from apps.common.models import utc_now
from apps.common.poller import poller_engine
from apps.payment.models import Payment, PaymentOperation
from apps.payment.operations import apply_result
from apps.payment.provider import (
    PaymentProvider,
    ProviderResult,
    RetryPolicy,
    open_provider_session,
    provider_from_env,
)
from apps.payment.rules import OP_FAILED, PENDING, REFUND, RETURN_ID, blocked_by
from apps.payment.settings import settings

__all__ = ["fail_refund", "held_back", "main", "pending_refunds"]

# While `fail` settles a refund it holds the row this long (the worker claims only rows due by now): a
# command that dies leaves it to the worker again after that.
HOLD_S = 600.0
# A call of the worker (or the API) in flight ends within its lease (PAYMENT_WORKER_LEASE_S; the worker's own
# assumption): a hold unchanged after that long had no call in flight. Tried a few times (an answer "unknown"
# in flight moves the row's due time, which the next round holds again).
HOLD_ROUNDS = 4

_HOLD = text(
    "UPDATE payment_operations SET next_attempt_at = now() + make_interval(secs => :hold) "
    "WHERE id = :id AND kind = 'refund' AND outcome = 'pending' RETURNING next_attempt_at"
)


def lease_s() -> float:
    return settings().worker_lease_s


class CommandError(Exception):
    """What the operator is told instead of a traceback (exit status 1)."""


async def pending_refunds(session: AsyncSession, older_than: dt.timedelta) -> list[dict[str, Any]]:
    """Refunds awaiting the provider's answer for at least ``older_than``, oldest first."""
    rows = await session.execute(
        select(PaymentOperation, Payment.order_id)
        .join(Payment, Payment.id == PaymentOperation.payment_id)
        .where(
            PaymentOperation.kind == REFUND,
            PaymentOperation.outcome == PENDING,
            PaymentOperation.created_at <= utc_now() - older_than,
        )
        .order_by(PaymentOperation.created_at, PaymentOperation.id)
    )
    return [
        {
            "id": str(op.id),
            "payment_id": str(op.payment_id),
            "order_id": str(order_id),
            "amount": str(op.amount),
            "asked_at": op.created_at.isoformat(),
            "attempts": op.attempts,
            "error": op.error,
            "return_id": op.request.get(RETURN_ID),
        }
        for op, order_id in rows.tuples()
    ]


async def fail_refund(
    sessions: async_sessionmaker[AsyncSession],
    provider: PaymentProvider,
    op_id: uuid.UUID,
    *,
    by: str,
    reason: str,
    settle_s: float | None = None,
) -> ProviderResult:
    """Settle the pending refund ``op_id`` (see the module's doc); returns the answer applied."""
    if settle_s is None:
        try:
            RetryPolicy.from_env().check_within(lease_s(), "PAYMENT_WORKER_LEASE_S")
        except ValueError as exc:
            raise CommandError(f"{exc}: waiting one lease would not wait out a call in flight") from exc
    key = await _hold(sessions, op_id, lease_s() + 1.0 if settle_s is None else settle_s)
    try:
        asked = await provider.refund_status(key=key)
    except BaseException:
        await _release(sessions, op_id)  # ours to give back: nothing was decided
        raise
    operator = {"by": by, "reason": reason, "at": utc_now().isoformat(), "provider_answered": asked.known}
    if asked.known:
        result = ProviderResult(asked.outcome, asked.reference, asked.code, {**asked.response, "operator": operator})
    else:
        why = f"failed by hand by {by}: {reason}"
        result = ProviderResult(OP_FAILED, None, why, {"operator": operator, "provider": asked.response})
    async with sessions() as session:
        await apply_result(session, op_id, result)
    return result


async def held_back(session: AsyncSession, op_id: uuid.UUID) -> list[str]:
    """The returns whose refund (first or retry) was refused because refund ``op_id`` was pending."""
    refused = await session.scalars(
        select(PaymentOperation)
        .where(
            PaymentOperation.payment_id
            == select(PaymentOperation.payment_id).where(PaymentOperation.id == op_id).scalar_subquery(),
            PaymentOperation.kind == REFUND,
            PaymentOperation.outcome == OP_FAILED,
        )
        .order_by(PaymentOperation.created_at, PaymentOperation.id)
    )
    found = [
        str(op.request[RETURN_ID]) for op in refused if RETURN_ID in op.request and op_id in blocked_by(op.error or "")
    ]
    return list(dict.fromkeys(found))


async def _hold(sessions: async_sessionmaker[AsyncSession], op_id: uuid.UUID, settle_s: float) -> str:
    """Hold the row from the worker's claims, then wait out a call in flight (its lease): settled once
    the hold is still ours after ``settle_s``. Returns the provider key. Refuses what is no pending
    refund, and one answered meanwhile (the provider spoke: nothing for the operator to decide)."""
    for _ in range(HOLD_ROUNDS):
        async with sessions() as session:
            held = await session.scalar(_HOLD, {"id": op_id, "hold": HOLD_S})
            await session.commit()
        if held is None:
            break
        await asyncio.sleep(settle_s)
        async with sessions() as session:
            op = await session.scalar(select(PaymentOperation).where(PaymentOperation.id == op_id))
        assert op is not None
        if op.outcome != PENDING:
            raise CommandError(f"refund {op_id} was answered meanwhile: {op.outcome} ({op.error or 'ok'})")
        if op.next_attempt_at == held:
            return op.idempotency_key
    async with sessions() as session:
        op = await session.scalar(select(PaymentOperation).where(PaymentOperation.id == op_id))
    if op is None:
        raise CommandError(f"no payment operation {op_id}")
    if op.kind != REFUND or op.outcome != PENDING:
        raise CommandError(f"operation {op_id} is a {op.outcome} {op.kind}, not a pending refund: nothing to do")
    raise CommandError(f"refund {op_id} was still being called after {HOLD_ROUNDS} holds: try again")


async def _release(sessions: async_sessionmaker[AsyncSession], op_id: uuid.UUID) -> None:
    """Give a claimed row back to the worker at once (the command failed before answering it)."""
    async with sessions() as session:
        await session.execute(
            update(PaymentOperation)
            .where(PaymentOperation.id == op_id, PaymentOperation.outcome == PENDING)
            .values(next_attempt_at=utc_now())
        )
        await session.commit()


async def _run(args: argparse.Namespace) -> int:
    engine = poller_engine("payment", "payment-admin", pool_size=1, max_overflow=0)
    sessions = async_sessionmaker(engine, expire_on_commit=False)
    try:
        if args.command == "pending":
            async with sessions() as session:
                found = await pending_refunds(session, dt.timedelta(seconds=args.older_than))
            for row in found:
                print(" ".join(f"{name}={value}" for name, value in row.items()))
            print(f"{len(found)} pending refund(s) asked at least {args.older_than:g} s ago")
            return 0
        async with open_provider_session() as http:
            result = await fail_refund(
                sessions, provider_from_env(http), args.operation_id, by=args.by, reason=args.reason
            )
        verdict = "failed on your word" if result.code and result.code.startswith("failed by hand") else "settled"
        print(f"refund {args.operation_id}: {result.outcome} ({result.code or 'ok'}), {verdict}")
        if result.outcome != "succeeded":
            async with sessions() as session:
                waiting = await held_back(session, args.operation_id)
            if waiting:
                print(f"returns refused while it was pending, asked again by the returns service: {', '.join(waiting)}")
        return 0
    except CommandError as exc:
        print(f"refunds: {exc}", file=sys.stderr)
        return 1
    finally:
        await engine.dispose()


def _one_line(value: str) -> str:
    if not value.strip() or any(ch in value for ch in "\r\n\t"):
        raise argparse.ArgumentTypeError("one line of text")
    return value.strip()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="just refunds", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    pending = commands.add_parser("pending", help="refunds awaiting the provider's answer")
    pending.add_argument("--older-than", type=float, default=0.0, metavar="SECONDS")
    fail = commands.add_parser("fail", help="settle a pending refund now (failed on your word if no answer)")
    fail.add_argument("operation_id", type=uuid.UUID)
    fail.add_argument("--by", required=True, type=_one_line, help="who decides (recorded)")
    fail.add_argument("--reason", required=True, type=_one_line, help="why, e.g. the provider's ticket (recorded)")
    return asyncio.run(_run(parser.parse_args(argv)))


if __name__ == "__main__":
    raise SystemExit(main())
