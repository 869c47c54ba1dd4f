"""Every service's exception handlers: each error becomes a status and a body we wrote.

Bad input is a 4xx naming the field, an unknown id a 404, a conflict a 409 with our own message, a
database or dependency outage a 503 with ``Retry-After``, and so is a transaction the database refused for
another's sake (a deadlock, a serialization failure, a lock timeout) or because it takes no writes right now;
no response ever carries SQL, parameter values or a traceback. Bodies have the shape of Litestar's own
errors: ``{"status_code", "detail", "extra"?}``.
A 500 is what is left for bugs: it is logged with its traceback and answered without one.
"""

from __future__ import annotations

import ast
import logging
import re
import traceback
from collections.abc import Callable, Iterator
from typing import Any, Final

import asyncpg
import msgspec
from advanced_alchemy.exceptions import IntegrityError as RepositoryIntegrityError
from advanced_alchemy.exceptions import NotFoundError, RepositoryError
from litestar import MediaType, Request, Response
from litestar.exceptions import ClientException, HTTPException, SerializationException, ValidationException
from litestar.serialization import decode_json, decode_msgpack
from litestar.status_codes import (
    HTTP_400_BAD_REQUEST,
    HTTP_404_NOT_FOUND,
    HTTP_409_CONFLICT,
    HTTP_500_INTERNAL_SERVER_ERROR,
    HTTP_503_SERVICE_UNAVAILABLE,
)
from sqlalchemy import exc as sa_exc

from apps.common.errors import DependencyUnavailable, FieldProblem, NotFound
from apps.common.fields import pattern_in_words
from outbox.redaction import redact
from outbox.retry import CONTENTION_SQLSTATES, READ_ONLY_SQLSTATE

__all__ = [
    "HTTP_499_CLIENT_CLOSED_REQUEST",
    "Handler",
    "classify_database_error",
    "client_went_away",
    "exception_handlers",
]

log = logging.getLogger("apps.http")

Handler = Callable[[Request[Any, Any, Any], Exception], Response[Any]]

_UNAVAILABLE: Final = (
    OSError,  # refused or dropped connections, timeouts (TimeoutError is an OSError)
    sa_exc.OperationalError,  # the server is shutting down, out of connections, a query was cancelled
    sa_exc.InterfaceError,  # the connection is gone
    sa_exc.DisconnectionError,
    sa_exc.TimeoutError,  # no pooled connection within pool_timeout
    asyncpg.InterfaceError,  # "connection is closed": asyncpg's own, often wrapped as a plain DBAPIError
    # "cannot switch to state ...; another operation is in progress": a connection whose protocol was cut off
    # mid-operation (PostgreSQL killed under load); the connection is discarded and a retry gets another.
    asyncpg.InternalClientError,
)
# SQLSTATE classes of an outage rather than a bad request: 08 connection exception (the connection
# was lost), 53 insufficient resources (too many connections), 57 operator intervention (the server is
# shutting down or "starting up", a query was cancelled). asyncpg raises them as its own classes, which
# SQLAlchemy wraps as a plain DBAPIError, so they are told apart by code.
_UNAVAILABLE_SQLSTATE_CLASSES: Final = frozenset({"08", "53", "57"})
# A transaction refused for another's sake (40P01 deadlock, 40001 serialization failure, 55P03 lock timeout:
# the same request is likely to pass a moment later) or because the server takes no writes right now (25006,
# a failover) is a 503, not a 500: outbox/retry.py holds the codes, the consumers retry the same ones. Class
# 40 is not taken whole: 40003 statement_completion_unknown does not say whether anything was written.
# Class 22, data exception: a value the database refused (numeric overflow, a NUL in a text, a date out
# of range), also a plain DBAPIError.
_DATA_SQLSTATE_CLASS: Final = "22"
# Litestar's Request.stream() raises an HTTPException 500 with this detail when the client goes away before
# its body has arrived (a load generator stopping mid-request, a closed tab): nothing failed on our side and
# nobody reads the answer. Logged and counted as a 500 it paged as a bug (150 "request failed" tracebacks in
# order-api.log at the ends of two benches, each a 5xx in commerce_requests_total). Answered (to no one) as
# 499, nginx's "client closed request", so a 5xx keeps meaning ours.
_CLIENT_GONE_DETAIL: Final = "client disconnected prematurely"
HTTP_499_CLIENT_CLOSED_REQUEST: Final = 499
_CONFLICT_DETAIL: Final = "The request conflicts with existing data"
_INVALID_VALUE_DETAIL: Final = "A value is invalid or out of range"
_UNAVAILABLE_DETAIL: Final = "The database is unavailable; retry later"
_CONTENTION_DETAIL: Final = "The request met a concurrent one on the same data and was rolled back; retry it"
_READ_ONLY_DETAIL: Final = "The database accepts no writes right now (a failover); nothing was written; retry later"
RETRY_AFTER_S: Final = "5"
# A deadlock or a serialization failure is over once the other transaction ends (milliseconds); a lock_timeout
# has already waited as long as the database allows.
CONTENTION_RETRY_AFTER_S: Final = "1"
_RETRY_AFTER: Final = {
    _UNAVAILABLE_DETAIL: RETRY_AFTER_S,
    _READ_ONLY_DETAIL: RETRY_AFTER_S,
    _CONTENTION_DETAIL: CONTENTION_RETRY_AFTER_S,
}


# --- shared by every handler ----------------------------------------------------------------------


def _error_response(
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
        # Redacted before it is cut: cut first, an email or a key's value at the cut escapes the patterns.
        log.info("request refused", extra={**fields_, "reason": redact(str(exc))[:500]})


def _validation_failed(request: Request[Any, Any, Any]) -> str:
    return f"Validation failed for {request.method} {request.url.path}"


# --- our vocabulary (apps/common/errors.py) -------------------------------------------------------


def field_problem_handler(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    """InvalidField, UnknownReference, StateConflict: their own status (400, 422, 409) and the field at fault.

    A 400 reads like Litestar's own validation errors ("Validation failed for ..."), so a client handles
    every bad field alike; a 409 or 422 says what is wrong in ``detail``.
    """
    assert isinstance(exc, FieldProblem)
    entry = {"message": exc.message, "key": exc.field, "source": exc.source}
    _log_error(request, exc.status_code, exc)
    detail = _validation_failed(request) if exc.status_code == HTTP_400_BAD_REQUEST else exc.message
    return _error_response(exc.status_code, detail, extra=[entry])


def not_found_handler(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    """NotFound: 404 with the service's own detail ("product ... not found")."""
    assert isinstance(exc, NotFound)
    _log_error(request, exc.status_code, exc)
    return _error_response(exc.status_code, exc.detail)


def dependency_unavailable_handler(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    """Another service is down or too slow: 503 naming it, so the client knows retrying may help."""
    assert isinstance(exc, DependencyUnavailable)
    _log_error(request, exc.status_code, exc)
    detail = f"The {exc.dependency} service is unavailable; retry later"
    return _error_response(
        exc.status_code, detail, extra=[{"dependency": exc.dependency}], headers={"Retry-After": RETRY_AFTER_S}
    )


# --- what Litestar and msgspec raise ----------------------------------------------------------------

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


# msgspec, and Litestar which decodes with it, show a pattern the value missed as its Python repr.
_PATTERN_MISMATCH = re.compile(r"Expected `str` matching regex (?P<pattern>'.*'|\".*\")", re.DOTALL)
# A pattern nobody put in words is shown only if it is short enough to read (a country code's was 1,100
# characters of alternatives).
_SHOWN_PATTERN_MAX: Final = 60
_UNWORDED_PATTERN: Final = "does not match this field's pattern (see the service's OpenAPI document, /schema)"


def _in_words(message: str) -> str:
    """A pattern mismatch says what the field must be (apps/common/fields.py ``worded``), not the regex."""
    match = _PATTERN_MISMATCH.fullmatch(message)
    if match is None:
        return message
    try:
        pattern = ast.literal_eval(match["pattern"])
    except (ValueError, SyntaxError):
        return message
    if not isinstance(pattern, str):
        return message
    if (words := pattern_in_words(pattern)) is not None:
        return words
    return message if len(pattern) <= _SHOWN_PATTERN_MAX else _UNWORDED_PATTERN


def _worded(entry: Any) -> Any:
    if isinstance(entry, dict) and isinstance(message := entry.get("message"), str):
        return {**entry, "message": _in_words(message)}
    return entry


# Litestar's text for a required parameter that is absent, with nothing in ``extra``.
_MISSING_PARAMETER = re.compile(r"Missing required (?P<source>query|header|path|cookie) parameter '(?P<key>[^']+)'")


def _as_sent(request: Request[Any, Any, Any], entry: Any) -> Any:
    """A header, query or cookie parameter named as the client sent it, not by its handler argument.

    Litestar's ``extra`` names a bad parameter value by the argument (``idempotency_key``), while its
    missing-parameter text, and our own errors, name the header (``Idempotency-Key``)."""
    if not isinstance(entry, dict) or entry.get("source") not in ("header", "query", "cookie"):
        return entry
    handler = request.scope.get("route_handler")
    parameters = getattr(getattr(handler, "parsed_fn_signature", None), "parameters", {})
    field = parameters.get(entry.get("key"))
    kwarg = getattr(field, "kwarg_definition", None)
    sent = getattr(kwarg, entry["source"], None) or getattr(kwarg, "name", None)
    return {**entry, "key": sent} if isinstance(sent, str) and sent else entry


def validation_exception_handler(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    """Litestar's 400 (its ``extra`` names the field: key, message, source), a pattern mismatch in words,
    a missing parameter named in ``extra`` like every other bad field, plus a log line.

    Litestar's detail names the URL with its query string, which may hold what the caller typed (an email
    as ``customer_id``): the answer names the path only, as our own 400s do; the log line is redacted anyway.
    """
    assert isinstance(exc, HTTPException)
    _log_error(request, exc.status_code, exc)
    extra = exc.extra if isinstance(exc.extra, list) else ([exc.extra] if exc.extra else [])
    detail = exc.detail
    if missing := _MISSING_PARAMETER.match(detail):
        detail = (
            f"Missing required {missing['source']} parameter '{missing['key']}' for {request.method} {request.url.path}"
        )
        if not extra:
            extra = [{"message": "required", "key": missing["key"], "source": missing["source"]}]
    elif detail.startswith("Validation failed for "):
        detail = _validation_failed(request)
    entries = [_worded(_name_the_field(_as_sent(request, e))) for e in extra]
    return _error_response(exc.status_code, detail, extra=entries, headers=exc.headers)


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
    return _error_response(exc.status_code, detail, extra=extra, headers=exc.headers)


# msgspec's messages end with the JSON path of the bad value: "Expected `int`, got `str` - at `$.items[0].qty`".
_MSGSPEC_PATH = re.compile(r" - at `\$\.?(?P<path>[^`]*)`$")


def msgspec_validation_handler(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    """A msgspec validation error raised by our own decoding: 400 with the field taken from its path."""
    message = str(exc)
    entry: dict[str, Any] = {"message": message}
    if match := _MSGSPEC_PATH.search(message):
        entry = {"message": _in_words(message[: match.start()]), "key": match["path"]}
    _log_error(request, HTTP_400_BAD_REQUEST, exc)
    return _error_response(HTTP_400_BAD_REQUEST, _validation_failed(request), extra=[entry])


# CPython's text for the recursion limit msgspec's decoder hits on JSON nested a few thousand deep (valid
# JSON: Litestar decodes every body untyped before converting it, so no schema stops it earlier). Any other
# RecursionError is ours: a bug, still a 500.
_DECODE_TOO_DEEP: Final = "while deserializing an object"


def too_deep_handler(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    """A body nested deeper than the decoder goes: 400 naming the body (it was a 500 on every write)."""
    if not str(exc).endswith(_DECODE_TOO_DEEP):
        return database_error_handler(request, exc)
    _log_error(request, HTTP_400_BAD_REQUEST, exc)
    entry = {"message": "the JSON is nested too deeply", "key": "body", "source": "body"}
    return _error_response(HTTP_400_BAD_REQUEST, _validation_failed(request), extra=[entry])


# Litestar decodes a body with these; for a JSON string that is not UTF-8 msgspec raises UnicodeDecodeError, not
# the DecodeError Litestar turns into its 400. Told from a decoding error of ours by the frame it came from.
_BODY_DECODERS: Final = frozenset({decode_json.__code__, decode_msgpack.__code__})


def _raised_decoding_the_body(exc: BaseException) -> bool:
    return any(frame.f_code in _BODY_DECODERS for frame, _ in traceback.walk_tb(exc.__traceback__))


def not_utf8_handler(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    """A body whose strings are not UTF-8 (Latin-1 text, a stray byte): 400 naming the body (it was a 500 on
    every write). Any other UnicodeDecodeError is ours: a bug, still a 500."""
    if not _raised_decoding_the_body(exc):
        return database_error_handler(request, exc)
    _log_error(request, HTTP_400_BAD_REQUEST, exc)
    entry = {"message": "is not UTF-8", "key": "body", "source": "body"}
    return _error_response(HTTP_400_BAD_REQUEST, "Malformed JSON body", extra=[entry])


# --- the database, and whatever else escapes a handler ---------------------------------------------


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


def _sqlstate(exc: BaseException) -> str:
    code = getattr(exc, "sqlstate", None) or getattr(exc, "pgcode", None)
    return code if isinstance(code, str) else ""


def _sqlstate_class(exc: BaseException) -> str:
    return _sqlstate(exc)[:2]


def _is_unavailable(exc: BaseException) -> bool:
    return (
        isinstance(exc, _UNAVAILABLE)
        or (isinstance(exc, sa_exc.DBAPIError) and exc.connection_invalidated)
        or _sqlstate_class(exc) in _UNAVAILABLE_SQLSTATE_CLASSES
    )


def client_went_away(exc: BaseException) -> bool:
    """The client disconnected before its request body arrived (Litestar reports it as a 500)."""
    return (
        isinstance(exc, HTTPException)
        and exc.status_code == HTTP_500_INTERNAL_SERVER_ERROR
        and exc.detail == _CLIENT_GONE_DETAIL
    )


def classify_database_error(exc: BaseException) -> tuple[int, str]:
    """Status code and client-safe detail for a database or repository error."""
    chain = list(_chain(exc))
    if any(_is_unavailable(e) for e in chain):
        return HTTP_503_SERVICE_UNAVAILABLE, _UNAVAILABLE_DETAIL
    codes = {_sqlstate(e) for e in chain}
    if codes & CONTENTION_SQLSTATES:
        return HTTP_503_SERVICE_UNAVAILABLE, _CONTENTION_DETAIL
    if READ_ONLY_SQLSTATE in codes:
        return HTTP_503_SERVICE_UNAVAILABLE, _READ_ONLY_DETAIL
    if isinstance(exc, NotFoundError):
        return HTTP_404_NOT_FOUND, exc.detail if _raised_by_us(exc) and exc.detail else "Not found"
    if isinstance(exc, RepositoryIntegrityError) and _raised_by_us(exc):
        return HTTP_409_CONFLICT, exc.detail or _CONFLICT_DETAIL
    if any(isinstance(e, sa_exc.IntegrityError) for e in chain):
        return HTTP_409_CONFLICT, _CONFLICT_DETAIL
    if any(isinstance(e, sa_exc.DataError) or _sqlstate_class(e) == _DATA_SQLSTATE_CLASS for e in chain):
        # A value the database refused (overflow, bad encoding): input that slipped past validation.
        return HTTP_400_BAD_REQUEST, _INVALID_VALUE_DETAIL
    return HTTP_500_INTERNAL_SERVER_ERROR, "Internal Server Error"


def database_error_handler(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    """Repository, database and unexpected errors: 404, 409, 400, 503 or 500, with a detail we wrote.

    Also the catch-all: an outage can surface as any exception type, and whatever else escapes a handler
    is logged with its traceback and answered without one.
    """
    if client_went_away(exc):
        log.info(
            "client disconnected",
            extra={"method": request.method, "path": request.url.path, "status": HTTP_499_CLIENT_CLOSED_REQUEST},
        )
        return _error_response(HTTP_499_CLIENT_CLOSED_REQUEST, "Client closed request")
    status_code, detail = classify_database_error(exc)
    _log_error(request, status_code, exc)
    if status_code == HTTP_503_SERVICE_UNAVAILABLE:
        headers = {"Retry-After": _RETRY_AFTER.get(detail, RETRY_AFTER_S)}
        return _error_response(status_code, detail, extra=[{"dependency": "database"}], headers=headers)
    return _error_response(status_code, detail)


def exception_handlers() -> dict[int | type[Exception], Handler]:
    """The handler map every service uses: one handler per kind of error."""
    return {
        FieldProblem: field_problem_handler,
        NotFound: not_found_handler,
        DependencyUnavailable: dependency_unavailable_handler,
        ValidationException: validation_exception_handler,
        ClientException: client_error_handler,
        msgspec.ValidationError: msgspec_validation_handler,
        RecursionError: too_deep_handler,
        UnicodeDecodeError: not_utf8_handler,
        RepositoryError: database_error_handler,
        sa_exc.SQLAlchemyError: database_error_handler,
        OSError: database_error_handler,
        # Litestar gives the 500 handler every exception that is not an HTTPException and has no
        # handler of its own type.
        HTTP_500_INTERNAL_SERVER_ERROR: database_error_handler,
    }
