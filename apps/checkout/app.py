"""The checkout service's Litestar app: wiring only (run: uvicorn apps.checkout.app:create_app --factory)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from litestar import Litestar

from apps.checkout.cache import CartCache
from apps.checkout.clients import dependencies_lifespan
from apps.checkout.controllers import CartController, CheckoutController
from apps.checkout.settings import settings
from apps.common.access_log_api import internal_access_log_controller
from apps.common.http import create_service_app
from apps.common.redis_store import redis_lifespan, redis_readiness
from apps.common.topology import BY_NAME


@asynccontextmanager
async def cart_cache_lifespan(app: Litestar) -> AsyncIterator[None]:
    """One cart cache per process (it remembers invalidations Redis could not be told yet), and the settings."""
    config = settings()
    app.state.checkout_settings = config
    app.state.cart_cache = CartCache(app.state.redis, view_ttl=config.cart_view_ttl, guest_ttl=config.cart_idle)
    yield


def create_app() -> Litestar:
    return create_service_app(
        BY_NAME["checkout"],
        controllers=[CartController, CheckoutController, internal_access_log_controller("checkout")],
        settings=settings,
        lifespan=[dependencies_lifespan, redis_lifespan, cart_cache_lifespan],
        readiness_checks={"redis": redis_readiness},
    )
