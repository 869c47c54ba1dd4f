"""The returns service's Litestar app: wiring only (run: uvicorn apps.returns.app:create_app --factory)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from litestar import Litestar

from apps.common.access_log_api import internal_access_log_controller
from apps.common.http import create_service_app
from apps.common.topology import BY_NAME
from apps.returns.clients import customers_lifespan, orders_lifespan, payments_lifespan
from apps.returns.controllers import ReturnController
from apps.returns.settings import settings


@asynccontextmanager
async def settings_lifespan(app: Litestar) -> AsyncIterator[None]:
    """The policy's numbers, read from the environment once per process."""
    app.state.returns_settings = settings()
    yield


def create_app() -> Litestar:
    return create_service_app(
        BY_NAME["returns"],
        controllers=[ReturnController, internal_access_log_controller("returns")],
        settings=settings,
        lifespan=[orders_lifespan, payments_lifespan, customers_lifespan, settings_lifespan],
    )
