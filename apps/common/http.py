"""Litestar plumbing every service shares: database session, probes, metrics, logs, error mapping, OpenAPI.

A service's ``app.py`` is one call::

    def create_app() -> Litestar:
        return create_service_app(BY_NAME["catalog"], controllers=[ProductController], field_errors=(RuleViolation,))

What every service gets from it:

- ``db_session``: an ``AsyncSession`` per request (advanced-alchemy's ``SQLAlchemyPlugin``). Nothing commits
  behind the handler's back: write paths commit in their service method, so a failed commit raises and the
  client hears an error, never a 2xx for rolled-back data. The session is closed (rolled back if still
  open) once the response is sent.
- ``GET /health`` (liveness, no I/O), ``GET /ready`` (``SELECT 1``; 503 with the reason when it fails),
  ``GET /metrics`` (Prometheus), ``/schema/swagger`` (OpenAPI, titled "<service> service").
- JSON log lines (one object per line) and one access-log line per request.
- Errors mapped so that bad input is a 4xx naming the field and a database outage a 503, and no response
  ever carries SQL, parameter values or a traceback.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
import os
import re
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import fields
from typing import Any, Final, Protocol

import msgspec
from advanced_alchemy.exceptions import IntegrityError as RepositoryIntegrityError
from advanced_alchemy.exceptions import NotFoundError, RepositoryError
from advanced_alchemy.extensions.litestar import SQLAlchemyAsyncConfig, SQLAlchemyPlugin
from litestar import Controller, Litestar, MediaType, Request, Response, get
from litestar.datastructures import State
from litestar.di import NamedDependency, Provide
from litestar.enums import ScopeType
from litestar.exceptions import ClientException, HTTPException, SerializationException, ValidationException
from litestar.logging.config import LoggingConfig
from litestar.middleware import ASGIMiddleware
from litestar.openapi.config import OpenAPIConfig
from litestar.openapi.plugins import SwaggerRenderPlugin
from litestar.plugins.prometheus import PrometheusConfig, PrometheusController
from litestar.status_codes import (
    HTTP_400_BAD_REQUEST,
    HTTP_404_NOT_FOUND,
    HTTP_409_CONFLICT,
    HTTP_500_INTERNAL_SERVER_ERROR,
    HTTP_503_SERVICE_UNAVAILABLE,
)
from litestar.types import ASGIApp, ControllerRouterHandler, Message, Receive, Scope, Send
from sqlalchemy import exc as sa_exc
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from apps.common.db import alchemy_config
from apps.common.errors import DependencyUnavailable, FieldProblem
from apps.common.topology import ServiceSpec

__all__ = [
    "MAX_BODY_BYTES",
    "READY_TIMEOUT_S",
    "AccessLogMiddleware",
    "FieldError",
    "JsonLogFormatter",
    "MetricsController",
    "ProbeController",
    "classify_database_error",
    "create_service_app",
    "exception_handlers",
    "litestar_alchemy_config",
    "logging_config",
]

# No request of ours needs more; a larger body is refused with 413 before it is read into memory.
MAX_BODY_BYTES: Final = 1024 * 1024
# A readiness probe must answer before the orchestrator's own timeout, even when the database hangs.
READY_TIMEOUT_S: Final = 2.0

log = logging.getLogger("apps.http")

Handler = Callable[[Request[Any, Any, Any], Exception], Response[Any]]


class FieldError(Protocol):
    """What a service's input-rule exception exposes so the client is told which field is at fault.

    An optional ``source`` attribute ("body", "query", "path") says where the field came from; "body"
    when absent.
    """

    field: str
    message: str


# --- database session -----------------------------------------------------------------------------


def litestar_alchemy_config(spec: ServiceSpec) -> SQLAlchemyAsyncConfig:
    """The service's ``alchemy_config`` as advanced-alchemy's Litestar config (session per request).

    The default before-send handler only closes the session; there is deliberately no autocommit handler,
    which would log a failed commit and still send the 2xx.
    """
    base = alchemy_config(spec)
    shared = {f.name: getattr(base, f.name) for f in fields(base) if f.init}
    return SQLAlchemyAsyncConfig(**shared, set_default_exception_handler=False)


# --- probes ---------------------------------------------------------------------------------------


class ProbeController(Controller):
    """Liveness and readiness: the only endpoints an orchestrator needs."""

    include_in_schema = False

    @get("/health", media_type=MediaType.JSON, sync_to_thread=False)
    def health(self) -> dict[str, str]:
        """Liveness: the process serves requests. No I/O, so a database outage never restarts it."""
        return {"status": "ok"}

    @get("/ready", media_type=MediaType.JSON)
    async def ready(self, db_session: NamedDependency[AsyncSession]) -> Response[dict[str, str]]:
        """Readiness: the database answers ``SELECT 1`` in time; otherwise 503 with the reason."""
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
        return Response({"status": "ready", "database": "ok"})


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


# --- error mapping --------------------------------------------------------------------------------

_UNAVAILABLE: Final = (
    OSError,  # refused or dropped connections, timeouts (TimeoutError is an OSError)
    sa_exc.OperationalError,  # the server is shutting down, out of connections, a query was cancelled
    sa_exc.InterfaceError,  # the connection is gone
    sa_exc.DisconnectionError,
    sa_exc.TimeoutError,  # no pooled connection within pool_timeout
)
_CONFLICT_DETAIL: Final = "The request conflicts with existing data"
_INVALID_VALUE_DETAIL: Final = "A value is invalid or out of range"
_UNAVAILABLE_DETAIL: Final = "Service temporarily unavailable: a backing service could not be reached; retry later"


def _chain(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def _raised_by_us(exc: BaseException) -> bool:
    """advanced-alchemy wraps database errors ``from`` the SQLAlchemy error, with text derived from the
    database (SQL, parameter values); an error a service raised itself has no such cause."""
    return not isinstance(exc.__cause__, sa_exc.SQLAlchemyError)


def classify_database_error(exc: BaseException) -> tuple[int, str]:
    """Status code and client-safe detail for a database or repository error."""
    chain = list(_chain(exc))
    if any(
        isinstance(e, _UNAVAILABLE) or (isinstance(e, sa_exc.DBAPIError) and e.connection_invalidated) for e in chain
    ):
        return HTTP_503_SERVICE_UNAVAILABLE, _UNAVAILABLE_DETAIL
    if isinstance(exc, NotFoundError):
        return HTTP_404_NOT_FOUND, exc.detail if _raised_by_us(exc) and exc.detail else "Not found"
    if isinstance(exc, RepositoryIntegrityError) and _raised_by_us(exc):
        return HTTP_409_CONFLICT, exc.detail or _CONFLICT_DETAIL
    if any(isinstance(e, sa_exc.IntegrityError) for e in chain):
        return HTTP_409_CONFLICT, _CONFLICT_DETAIL
    if any(isinstance(e, sa_exc.DataError) for e in chain):
        # A value the database refused (overflow, bad encoding): input that slipped past validation.
        return HTTP_400_BAD_REQUEST, _INVALID_VALUE_DETAIL
    return HTTP_500_INTERNAL_SERVER_ERROR, "Internal Server Error"


def _error_response(
    request: Request[Any, Any, Any],
    status_code: int,
    detail: str,
    *,
    extra: list[dict[str, Any]] | None = None,
    headers: dict[str, str] | None = None,
) -> Response[Any]:
    # The same body shape as Litestar's own errors: {"status_code", "detail", "extra"?}.
    body: dict[str, Any] = {"status_code": status_code, "detail": detail}
    if extra:
        body["extra"] = extra
    return Response(body, status_code=status_code, headers=headers, media_type=MediaType.JSON)


def _log_error(request: Request[Any, Any, Any], status_code: int, exc: Exception) -> None:
    fields_ = {"method": request.method, "path": request.url.path, "status": status_code, "error": type(exc).__name__}
    if status_code == HTTP_503_SERVICE_UNAVAILABLE:
        # An outage, not a bug: every request fails the same way until the dependency is back.
        log.warning("request failed: dependency unavailable", extra=fields_, exc_info=exc)
    elif status_code >= HTTP_500_INTERNAL_SERVER_ERROR:
        # Server side we keep everything, traceback and database text included.
        log.error("request failed", extra=fields_, exc_info=exc)
    else:
        log.info("request refused", extra={**fields_, "reason": str(exc)[:500]})


def _validation_failed(request: Request[Any, Any, Any]) -> str:
    return f"Validation failed for {request.method} {request.url.path}"


_OBJECT_FIELD = re.compile(r"(?:unknown|missing required) field `(?P<field>[^`]+)`")


def _name_the_field(entry: Any) -> Any:
    """Litestar reports body-wide problems under the handler argument ``data``; name the real culprit."""
    if not isinstance(entry, dict) or entry.get("key") != "data":
        return entry
    if match := _OBJECT_FIELD.search(str(entry.get("message", ""))):
        return {**entry, "key": match["field"]}
    if entry.get("message") == "'data'":  # the KeyError text Litestar shows when there is no body at all
        return {**entry, "message": "a JSON body is required", "key": "body"}
    return {**entry, "key": "body"}  # the body as a whole, e.g. an array where an object belongs


def validation_exception_handler(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    """Litestar's 400 as it is (its ``extra`` names the field: key, message, source), plus a log line."""
    assert isinstance(exc, HTTPException)
    _log_error(request, exc.status_code, exc)
    extra = exc.extra if isinstance(exc.extra, list) else ([exc.extra] if exc.extra else [])
    return _error_response(
        request, exc.status_code, exc.detail, extra=[_name_the_field(e) for e in extra], headers=exc.headers
    )


def client_error_handler(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    """Other 4xx raised by Litestar (404, 405, 413, unreadable JSON): logged, and an unreadable body is
    reported like any other bad field (key ``body``)."""
    assert isinstance(exc, HTTPException)
    _log_error(request, exc.status_code, exc)
    extra = exc.extra if isinstance(exc.extra, list) else None
    detail = exc.detail
    if isinstance(exc.__cause__, SerializationException):
        # Litestar re-raises the decoder's message ("JSON is malformed: ...") as a bare 400.
        detail = "Malformed JSON body"
        extra = [{"message": exc.detail, "key": "body", "source": "body"}]
    return _error_response(request, exc.status_code, detail, extra=extra, headers=exc.headers)


# msgspec's messages end with the JSON path of the bad value: "Expected `int`, got `str` - at `$.items[0].qty`".
_MSGSPEC_PATH = re.compile(r" - at `\$\.?(?P<path>[^`]*)`$")


def msgspec_validation_handler(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    """A msgspec validation error raised by our own decoding: 400 with the field taken from its path."""
    message = str(exc)
    entry: dict[str, Any] = {"message": message}
    if match := _MSGSPEC_PATH.search(message):
        entry = {"message": message[: match.start()], "key": match["path"]}
    _log_error(request, HTTP_400_BAD_REQUEST, exc)
    return _error_response(request, HTTP_400_BAD_REQUEST, _validation_failed(request), extra=[entry])


def field_error_handler(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    """A service rule refused a field (see ``FieldError``): 400 in the shape of Litestar's validation errors."""
    entry = {
        "message": getattr(exc, "message", str(exc)),
        "key": getattr(exc, "field", None),
        "source": getattr(exc, "source", "body"),
    }
    _log_error(request, HTTP_400_BAD_REQUEST, exc)
    return _error_response(request, HTTP_400_BAD_REQUEST, _validation_failed(request), extra=[entry])


def database_error_handler(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    """Repository, database and unexpected errors: 404, 409, 400, 503 or 500, with a detail we wrote.

    Also the catch-all: an outage can surface as any exception type, and whatever else escapes a handler
    is logged with its traceback and answered without one.
    """
    status_code, detail = classify_database_error(exc)
    _log_error(request, status_code, exc)
    headers = {"Retry-After": "5"} if status_code == HTTP_503_SERVICE_UNAVAILABLE else None
    return _error_response(request, status_code, detail, headers=headers)


def field_problem_handler(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    """A service's FieldProblem: its own status (400, 409, 422) and the field at fault."""
    assert isinstance(exc, FieldProblem)
    entry = {"message": exc.message, "key": exc.field, "source": exc.source}
    _log_error(request, exc.status_code, exc)
    return _error_response(request, exc.status_code, exc.message, extra=[entry])


def dependency_unavailable_handler(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    """Another service is down or too slow: 503 naming it, so the client knows retrying may help."""
    assert isinstance(exc, DependencyUnavailable)
    _log_error(request, HTTP_503_SERVICE_UNAVAILABLE, exc)
    detail = f"The {exc.dependency} service is unavailable; retry later"
    return _error_response(
        request,
        HTTP_503_SERVICE_UNAVAILABLE,
        detail,
        extra=[{"dependency": exc.dependency}],
        headers={"Retry-After": "5"},
    )


def exception_handlers(field_errors: Sequence[type[Exception]] = ()) -> dict[int | type[Exception], Handler]:
    """The handler map every service uses; ``field_errors`` are its rule exceptions (see ``FieldError``)."""
    handlers: dict[int | type[Exception], Handler] = {
        ValidationException: validation_exception_handler,
        ClientException: client_error_handler,
        msgspec.ValidationError: msgspec_validation_handler,
        RepositoryError: database_error_handler,
        sa_exc.SQLAlchemyError: database_error_handler,
        OSError: database_error_handler,
        # Litestar gives the 500 handler every exception that is not an HTTPException and has no
        # handler of its own type.
        HTTP_500_INTERNAL_SERVER_ERROR: database_error_handler,
        FieldProblem: field_problem_handler,
        DependencyUnavailable: dependency_unavailable_handler,
    }
    handlers.update(dict.fromkeys(field_errors, field_error_handler))
    return handlers


# --- logs -----------------------------------------------------------------------------------------

# Attributes every LogRecord has; anything else on a record came in through ``extra=`` and is logged.
# (uvicorn adds "color_message", the same text with terminal colours.)
_RECORD_ATTRS: Final = frozenset(logging.makeLogRecord({}).__dict__) | {
    "message",
    "asctime",
    "taskName",
    "color_message",
}


class JsonLogFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, msg, service, the record's extras, exc."""

    def __init__(self, service: str = "") -> None:
        super().__init__()
        self.service = service

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        if self.service:
            entry["service"] = self.service
        entry.update({k: v for k, v in record.__dict__.items() if k not in _RECORD_ATTRS and not k.startswith("_")})
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str, ensure_ascii=False)


def logging_config(spec: ServiceSpec) -> LoggingConfig:
    """Litestar's logging set-up with every line (ours, Litestar's, uvicorn's) as JSON."""
    level = os.environ.get("LOG_LEVEL", "INFO").upper()
    json_formatter = {"()": JsonLogFormatter, "service": spec.name}
    via_queue = {"level": level, "handlers": ["queue_listener"], "propagate": False}
    return LoggingConfig(
        # Overriding "standard" makes Litestar's own console and queue handlers emit JSON too.
        formatters={"standard": json_formatter},
        loggers={
            "litestar": via_queue,
            "apps": via_queue,
            "outbox": via_queue,
            # Only uvicorn's server log: naming "uvicorn" itself would reset its children, turning its
            # access log back on under `--no-access-log`. Ours is AccessLogMiddleware.
            "uvicorn.error": via_queue,
        },
        root={"handlers": ["queue_listener"], "level": level},
        # Our exception handlers log each error once, at the right level; Litestar's would repeat it.
        log_exceptions="never",
    )


_NOT_ACCESS_LOGGED: Final = frozenset({"/health", "/ready", "/metrics"})


def _is_probe_or_scrape(scope: Scope) -> bool:
    # Every few seconds per replica: logging them would drown the requests that matter.
    return scope["path"] in _NOT_ACCESS_LOGGED


class AccessLogMiddleware(ASGIMiddleware):
    """One line per request: method, route, status, duration. Probes and scrapes are not logged."""

    scopes = (ScopeType.HTTP,)
    should_bypass_for_scope = staticmethod(_is_probe_or_scrape)

    async def handle(self, scope: Scope, receive: Receive, send: Send, next_app: ASGIApp) -> None:
        started = time.perf_counter()
        status = HTTP_500_INTERNAL_SERVER_ERROR

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await next_app(scope, receive, send_wrapper)
        finally:
            log.info(
                "request",
                extra={
                    "method": scope.get("method"),
                    # The route template, not the raw path: ids stay out of the access log's keys.
                    "route": scope.get("path_template", scope.get("path")),
                    "path": scope.get("path"),
                    "status": status,
                    "duration_ms": round((time.perf_counter() - started) * 1000, 2),
                },
            )


# --- the app --------------------------------------------------------------------------------------


def create_service_app(
    spec: ServiceSpec,
    *,
    controllers: Sequence[ControllerRouterHandler],
    dependencies: Mapping[str, Provide | Callable[..., Any]] | None = None,
    on_startup: Sequence[Callable[[Litestar], Any]] = (),
    on_shutdown: Sequence[Callable[[Litestar], Any]] = (),
    lifespan: Sequence[Callable[[Litestar], AbstractAsyncContextManager[Any]]] = (),
    field_errors: Sequence[type[Exception]] = (),
    extra_exception_handlers: Mapping[int | type[Exception], Handler] | None = None,
    middleware: Sequence[Any] = (),
    signature_namespace: Mapping[str, Any] | None = None,
    request_max_body_size: int = MAX_BODY_BYTES,
    version: str = "0.1.0",
    debug: bool = False,
) -> Litestar:
    """Build a service's Litestar app: its controllers plus the shared plumbing (see the module docstring).

    ``field_errors`` are the service's rule exceptions (each with ``field`` and ``message``, see
    ``FieldError``): they become 400s naming the field. ``on_startup``/``on_shutdown`` hooks take the app;
    ``lifespan`` context managers (also given the app) suit clients opened at start and closed at stop
    (Redis, a Kafka producer): nothing does I/O at import time.
    """
    handlers: dict[int | type[Exception], Handler] = exception_handlers(field_errors)
    handlers.update(extra_exception_handlers or {})
    return Litestar(
        route_handlers=[ProbeController, MetricsController, *controllers],
        dependencies=dict(dependencies or {}),
        plugins=[SQLAlchemyPlugin(config=litestar_alchemy_config(spec))],
        middleware=[
            PrometheusConfig(app_name=spec.name, prefix="commerce", group_path=True).middleware,
            AccessLogMiddleware(),
            *middleware,
        ],
        exception_handlers=handlers,
        logging_config=logging_config(spec),
        openapi_config=OpenAPIConfig(
            title=f"{spec.name} service",
            version=version,
            path="/schema",
            render_plugins=[SwaggerRenderPlugin()],
        ),
        on_startup=list(on_startup),
        on_shutdown=list(on_shutdown),
        lifespan=list(lifespan),
        signature_namespace=dict(signature_namespace or {}),
        request_max_body_size=request_max_body_size,
        state=State({"service": spec.name}),
        debug=debug,
    )
