"""HTTP routes of the payment service: read payments with their ledger, refund a captured payment."""

from __future__ import annotations

# Litestar resolves handler annotations at runtime: everything named in a signature is a real import.
import uuid
from typing import Annotated, TypeAlias

from litestar import Controller, Response, get, post
from litestar.datastructures import State
from litestar.di import NamedDependency
from litestar.openapi.datastructures import ResponseSpec
from litestar.params import FromPath, FromQuery, JSONBody
from litestar.status_codes import HTTP_201_CREATED, HTTP_202_ACCEPTED

from apps.common.auth import allow
from apps.common.headers import REPLAYED, idempotency_key_header, replayed_header
from apps.common.providers import create_service_provider
from apps.payment.operations import RefundRequestByHand, refund_by_hand
from apps.payment.rules import check_reason, parse_amount
from apps.payment.schemas import PaymentOut, RefundOut, RefundRequest, to_payment_out
from apps.payment.services import PaymentService

__all__ = ["PaymentController"]

Payments: TypeAlias = NamedDependency[PaymentService]
RequiredIdempotencyKey = Annotated[
    str,
    idempotency_key_header(
        "a retry with the same key and body answers the first refund instead of refunding again", max_length=200
    ),
]


class PaymentController(Controller):
    """Payments are created by the order saga's requests (the consumer); here they are read and refunded."""

    path = "/api/payments"
    tags = ["payments"]
    dependencies = {"payments": create_service_provider(PaymentService)}

    @get("/{payment_id:uuid}", guards=[allow("staff")])
    async def get_payment(self, payment_id: FromPath[uuid.UUID], payments: Payments) -> PaymentOut:
        """A payment with its ledger of provider operations (authorize, capture, void, refund)."""
        return to_payment_out(await payments.get(payment_id))

    @get(guards=[allow("staff", service="payment:read")])
    async def list_payments(self, order_id: FromQuery[uuid.UUID], payments: Payments) -> list[PaymentOut]:
        """The order's payments, oldest first (usually one; an empty list before the saga asked for one).
        The returns service reads them to check the refunds staff name to settle a return (settle_with)."""
        return [to_payment_out(p) for p in await payments.for_order(order_id)]

    @post(
        "/{payment_id:uuid}/refund",
        status_code=HTTP_201_CREATED,
        guards=[allow("admin")],
        response_headers=[replayed_header()],
        responses={
            HTTP_202_ACCEPTED: ResponseSpec(
                data_container=RefundOut,
                description="Asked; the provider's answer is awaited (the worker keeps asking)",
            )
        },
    )
    async def refund(
        self,
        payment_id: FromPath[uuid.UUID],
        data: JSONBody[RefundRequest],
        payments: Payments,
        idempotency_key: RequiredIdempotencyKey,
        state: State,
    ) -> Response[RefundOut]:
        """Refund ``amount`` (all that is refundable when absent) of a captured payment.

        201 with the refund once the provider agreed; 202 while its answer is awaited (the worker keeps
        asking with the same key; GET the payment, or retry with the same Idempotency-Key); 409 above
        what was captured and not yet refunded, when the provider refuses, or while a return's refund on
        the payment awaits the provider's answer (both could go through: refund by hand once it is
        answered); 422 when the key was used for another refund, or ``currency`` is not the payment's.
        """
        ask = RefundRequestByHand(
            payment_id, parse_amount(data.amount), check_reason(data.reason), idempotency_key, data.currency
        )
        done = await refund_by_hand(payments, state.payment_provider, ask, status_after=state.refund_status_after)
        out = to_payment_out(done.payment)
        body = RefundOut(refund=next(op for op in out.operations if op.id == done.operation_id), payment=out)
        status = HTTP_202_ACCEPTED if done.pending else HTTP_201_CREATED
        return Response(body, status_code=status, headers=REPLAYED if done.replayed else None)
