"""The app factory: a service's controllers plus the Litestar plumbing every service shares.

A service's ``app.py`` is one call::

    def create_app() -> Litestar:
        return create_service_app(BY_NAME["catalog"], controllers=[ProductController])

What every service gets from it, each from its own module:

- ``db_session`` (``apps/common/db.py``): an ``AsyncSession`` per request (advanced-alchemy's
  ``SQLAlchemyPlugin``). Nothing commits behind the handler's back: write paths commit in their service
  method, so a failed commit raises and the client hears an error, never a 2xx for rolled-back data. The
  session is closed (rolled back if still open) once the response is sent.
- ``GET /health`` (liveness, no I/O), ``GET /ready`` (``SELECT 1``; 503 with the reason when it fails),
  ``GET /metrics`` (Prometheus) (``apps/common/probes.py``); ``/schema/swagger`` (OpenAPI, titled
  "<service> service").
- JSON log lines (one object per line) and one access-log line per request (``apps/common/logs.py``).
- Errors mapped (``apps/common/error_handlers.py``) so that bad input is a 4xx naming the field and a
  database outage a 503, and no response ever carries SQL, parameter values or a traceback.
- Bearer tokens (``apps/common/auth_tokens.py``): ``request.user`` is the caller's Principal; every route
  declares its policy as a guard (``apps/common/auth.py``), a route without one is admin-only; OpenAPI
  shows each operation's policy (``apps/common/auth_openapi.py``).
- An OpenAPI document that says what the service does (``apps/common/openapi.py``): every operation's
  error answers, unknown body fields refused, ``Allow`` listing every method of a path.
- Settings (``apps/common/settings.py``): the service's own, and the shared modules' (logs, the
  collector's threshold), read from the environment once, here.
- The read replica (``apps/common/read_routing.py``): listings and reports that take their service from
  ``replica_reads`` read from it when it is up and caught up; ``X-Read-Source`` says which database answered.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Any, Final

from advanced_alchemy.extensions.litestar import SQLAlchemyPlugin
from litestar import Litestar
from litestar.datastructures import State
from litestar.di import Provide
from litestar.middleware.base import DefineMiddleware
from litestar.openapi.config import OpenAPIConfig
from litestar.openapi.plugins import SwaggerRenderPlugin
from litestar.plugins.prometheus import PrometheusConfig
from litestar.types import ControllerRouterHandler

from apps.common import access_log, rate_limit, security_headers
from apps.common.auth_openapi import (
    bearer_components,
    document_policies,
    guard_without_copies,
    undeclared_routes_admin_only,
)
from apps.common.auth_tokens import auth_middleware
from apps.common.db import SESSION_CONFIG, litestar_alchemy_config
from apps.common.error_handlers import Handler, exception_handlers
from apps.common.heap import heap_settings, settle_heap
from apps.common.logs import AccessLog, SentStatusPrometheusMiddleware, log_settings, logging_config
from apps.common.openapi import AllowHeaderMiddleware, StrictStructSchemaPlugin, document_error_responses
from apps.common.probes import READINESS_CHECKS, MetricsController, ProbeController, ReadinessCheck
from apps.common.read_routing import ReadReplicaPlugin
from apps.common.topology import ServiceSpec

__all__ = ["MAX_BODY_BYTES", "create_service_app"]

# What the shared modules read from the environment, each read (and a bad value refused) when the app is built.
SHARED_SETTINGS: Final[tuple[Callable[[], object], ...]] = (log_settings, heap_settings)

# No request of ours needs more; a larger body is refused with 413 before it is read into memory.
MAX_BODY_BYTES: Final = 1024 * 1024


def create_service_app(
    spec: ServiceSpec,
    *,
    controllers: Sequence[ControllerRouterHandler],
    settings: Callable[[], object] | None = None,
    dependencies: Mapping[str, Provide | Callable[..., Any]] | None = None,
    on_startup: Sequence[Callable[[Litestar], Any]] = (),
    on_shutdown: Sequence[Callable[[Litestar], Any]] = (),
    lifespan: Sequence[Callable[[Litestar], AbstractAsyncContextManager[Any]]] = (),
    readiness_checks: Mapping[str, ReadinessCheck] | None = None,
    extra_exception_handlers: Mapping[int | type[Exception], Handler] | None = None,
    middleware: Sequence[Any] = (),
    signature_namespace: Mapping[str, Any] | None = None,
    request_max_body_size: int = MAX_BODY_BYTES,
    version: str = "0.1.0",
    debug: bool = False,
) -> Litestar:
    """Build a service's Litestar app: its controllers plus the shared plumbing (see the module docstring).

    Services raise the errors of ``apps/common/errors.py``; each has its handler already.
    ``on_startup``/``on_shutdown`` hooks take the app; ``lifespan`` context managers (also given the app)
    suit clients opened at start and closed at stop (Redis, a Kafka producer, HTTP sessions): nothing does
    I/O at import time. ``readiness_checks`` name optional dependencies whose failure makes ``/ready``
    say "degraded" (200) rather than down (see ``apps/common/probes.py``). ``settings``, the service's
    ``settings.py`` reader, is read here with ``SHARED_SETTINGS``, so a variable with a bad value stops the
    start naming it (``apps/common/settings.py``).
    """
    for read in (*SHARED_SETTINGS, *([settings] if settings is not None else [])):
        read()
    handlers = exception_handlers()
    handlers.update(extra_exception_handlers or {})
    alchemy = litestar_alchemy_config(spec)
    metrics = PrometheusConfig(
        app_name=spec.name, prefix="commerce", group_path=True, middleware_class=SentStatusPrometheusMiddleware
    )
    app = Litestar(
        route_handlers=[ProbeController, MetricsController, *controllers],
        dependencies=dict(dependencies or {}),
        plugins=[
            SQLAlchemyPlugin(config=alchemy),
            StrictStructSchemaPlugin(),
            ReadReplicaPlugin(spec),
            security_headers.SecurityHeadersPlugin(),
            access_log.AccessLogContextPlugin(),
            rate_limit.RateLimitPlugin(spec),
        ],
        # The metrics middleware writes the access log line too (apps/common/logs.py AccessLog).
        middleware=[
            DefineMiddleware(SentStatusPrometheusMiddleware, config=metrics, access_log=AccessLog()),
            AllowHeaderMiddleware(),
            auth_middleware(),
            *middleware,
        ],
        guards=[undeclared_routes_admin_only],
        exception_handlers=handlers,
        logging_config=logging_config(spec),
        openapi_config=OpenAPIConfig(
            title=f"{spec.name} service",
            version=version,
            path="/schema",
            render_plugins=[SwaggerRenderPlugin()],
            components=bearer_components(),
        ),
        on_startup=[*on_startup, settle_heap],  # last: after the app's own start-up (apps/common/heap.py)
        on_shutdown=list(on_shutdown),
        lifespan=list(lifespan),
        signature_namespace=dict(signature_namespace or {}),
        request_max_body_size=request_max_body_size,
        state=State({"service": spec.name, READINESS_CHECKS: dict(readiness_checks or {}), SESSION_CONFIG: alchemy}),
        debug=debug,
    )
    document_error_responses(app)
    document_policies(app)
    guard_without_copies(app)
    return app
