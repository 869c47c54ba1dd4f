"""The payment service's Litestar app: wiring only (run: uvicorn apps.payment.app:create_app --factory)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from litestar import Litestar

from apps.common.http import create_service_app
from apps.common.topology import BY_NAME
from apps.payment.controllers import PaymentController
from apps.payment.operations import refund_status_after
from apps.payment.provider import RetryPolicy, open_provider_session, provider_from_env
from apps.payment.services import INLINE_LEASE_S
from apps.payment.settings import settings


@asynccontextmanager
async def _provider(app: Litestar) -> AsyncIterator[None]:
    """The provider client the refund endpoint calls (opened at start, closed at stop), and when a refund
    retried there is asked about rather than sent again (as the worker does)."""
    app.state.refund_status_after = refund_status_after()
    RetryPolicy.from_env().check_within(INLINE_LEASE_S, "the refund endpoint's lease")
    async with open_provider_session() as session:
        app.state.payment_provider = provider_from_env(session)
        yield


def create_app() -> Litestar:
    return create_service_app(
        BY_NAME["payment"], controllers=[PaymentController], settings=settings, lifespan=[_provider]
    )
