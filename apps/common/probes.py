"""The operational endpoints every service has: liveness, readiness and the Prometheus scrape."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Final

from litestar import Controller, MediaType, Response, get
from litestar.datastructures import State
from litestar.di import NamedDependency
from litestar.plugins.prometheus import PrometheusController
from litestar.status_codes import HTTP_503_SERVICE_UNAVAILABLE
from sqlalchemy import exc as sa_exc
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

__all__ = ["READINESS_CHECKS", "READY_TIMEOUT_S", "MetricsController", "ProbeController", "ReadinessCheck"]

# A readiness probe must answer before the orchestrator's own timeout, even when the database hangs.
READY_TIMEOUT_S: Final = 2.0

log = logging.getLogger("apps.http")

# An optional dependency (a cache, a session store): None when it answers, else the reason. A failing one
# makes /ready say "degraded" with a 200, because the service still serves from its database.
ReadinessCheck = Callable[[State], Awaitable[str | None]]
READINESS_CHECKS: Final = "readiness_checks"  # the app state key: {name: ReadinessCheck}


class ProbeController(Controller):
    """Liveness and readiness: the only endpoints an orchestrator needs."""

    include_in_schema = False

    @get("/health", media_type=MediaType.JSON, sync_to_thread=False)
    def health(self) -> dict[str, str]:
        """Liveness: the process serves requests. No I/O, so a database outage never restarts it."""
        return {"status": "ok"}

    @get("/ready", media_type=MediaType.JSON)
    async def ready(self, db_session: NamedDependency[AsyncSession], state: State) -> Response[dict[str, str]]:
        """Readiness: the database answers ``SELECT 1`` in time; otherwise 503 with the reason.
        Optional dependencies (``readiness_checks``) that fail make it "degraded", still 200."""
        try:
            async with asyncio.timeout(READY_TIMEOUT_S):
                await db_session.execute(text("SELECT 1"))
        except (TimeoutError, OSError, sa_exc.SQLAlchemyError) as exc:
            reason = _reason(exc)
            log.warning("not ready", extra={"check": "database", "reason": reason})
            return Response(
                {"status": "unavailable", "database": reason},
                status_code=HTTP_503_SERVICE_UNAVAILABLE,
                headers={"Retry-After": "5"},
            )
        body = {"status": "ready", "database": "ok"}
        checks: Mapping[str, ReadinessCheck] = state.get(READINESS_CHECKS, {})
        for name, check in checks.items():
            body[name] = await _optional(name, check, state) or "ok"
            if body[name] != "ok":
                body["status"] = "degraded"
        return Response(body)


class MetricsController(PrometheusController):
    """Prometheus scrape endpoint (/metrics); operational, so kept out of the API's OpenAPI document."""

    include_in_schema = False


def _reason(exc: BaseException) -> str:
    """Exception type and first line of its message (the DBAPI error's, not SQLAlchemy's long wrapper)."""
    original = getattr(exc, "orig", None) or exc
    lines = str(original).strip().splitlines()
    message = lines[0] if lines else ""
    if isinstance(exc, TimeoutError) and not message:
        message = f"no answer within {READY_TIMEOUT_S}s"
    return f"{type(original).__name__}: {message}"[:300]


async def _optional(name: str, check: ReadinessCheck, state: State) -> str | None:
    try:
        async with asyncio.timeout(READY_TIMEOUT_S):
            reason = await check(state)
    except Exception as exc:  # an optional dependency never makes the probe fail
        reason = _reason(exc)
    if reason is not None:
        log.warning("degraded", extra={"check": name, "reason": reason})
    return reason
