"""Every service's logs: one JSON object per line, and one access-log line per request.

Records are handed to a background thread (``BatchingHandler``): the request path only builds the record
and appends it to a deque; the thread sleeps until a record arrives, lets ``LOG_FLUSH_MS`` (default 50) of
them gather, formats them and writes them in one call. (Litestar's queue handler formatted each record on
the event loop, and woke its listener thread and wrote once per line: measured, those wake-ups and writes
were most of the access log's cost.) An idle process's writer does not wake at all: a timer every 50 ms
cost each API ~2.5 ms of CPU a second doing nothing (~130 us per wake-up on this machine; the seven APIs an
order does not reach ~18 ms/s; docs/benchmarks.md, session 31). Lines are written in order; what is
pending is written at exit. Every record emitted during a request carries its ``request_id`` (the
client's ``X-Request-ID`` when a UUID, else a new one, answered in the response's; outbox/correlation.py),
set by the metrics middleware, the outermost of ours: ~1.5 us a request. Under load the access log can be
sampled: ``ACCESS_LOG_SAMPLE`` (0 to 1, default 1) is the share of ordinary requests logged; a 4xx or 5xx
answer and a request slower than ``ACCESS_LOG_SLOW_MS`` (default 500) are always logged. These and
``LOG_LEVEL`` are ``LogSettings``, read when the app is built: a value that is not a number (or not a level)
stops the start naming the variable, where until session 34 a bad number was ignored for its default.

Nothing that identifies a person is logged (issue 14). Our own lines carry ids, routes and statuses, never
field values; and every line is passed through ``redact`` on its way out, which blanks what slips in
through text we do not write ourselves (exception messages, Litestar's details, tracebacks): query-string
values, email addresses (also URL-encoded), phone numbers, bearer tokens and JWTs, SQLAlchemy's
``[parameters: ...]`` and the values a database error names (outbox.redaction), in extras too, however
nested.
"""

from __future__ import annotations

import atexit
import collections
import datetime as dt
import logging
import random
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

import msgspec
from litestar.enums import ScopeType
from litestar.exceptions import HTTPException
from litestar.logging.config import LoggingConfig
from litestar.plugins.prometheus import PrometheusConfig, PrometheusMiddleware
from litestar.status_codes import HTTP_500_INTERNAL_SERVER_ERROR
from litestar.types import ASGIApp, Message, Receive, Scope, Send

from apps.common.settings import DAY_S, Settings, env, once
from apps.common.topology import ServiceSpec
from outbox.correlation import HEADER, correlation_id, sent_or_new
from outbox.redaction import redact

__all__ = [
    "AccessLog",
    "BatchingHandler",
    "JsonLogFormatter",
    "LogSettings",
    "SentStatusPrometheusMiddleware",
    "log_settings",
    "logging_config",
    "redact",
]

log = logging.getLogger("apps.http")


@dataclass(frozen=True, slots=True)
class LogSettings(Settings):
    """What an API's logs read from the environment (see the module docstring)."""

    level: str = env("LOG_LEVEL", "INFO")
    flush_ms: float = env(
        "LOG_FLUSH_MS", 50.0, minimum=0, maximum=DAY_S * 1000
    )  # 0: written without waiting for a batch
    access_log_sample: float = env("ACCESS_LOG_SAMPLE", 1.0, minimum=0, maximum=1)
    access_log_slow_ms: float = env("ACCESS_LOG_SLOW_MS", 500.0, minimum=0, maximum=DAY_S * 1000)  # 0: every request

    def __post_init__(self) -> None:
        if self.level.upper() not in logging.getLevelNamesMapping():
            raise self.invalid("level", "not a level (DEBUG, INFO, WARNING, ERROR, CRITICAL)")


log_settings = once(LogSettings)

# Attributes every LogRecord has; anything else on a record came in through ``extra=`` and is logged.
# (uvicorn adds "color_message", the same text with terminal colours.)
_RECORD_ATTRS: Final = frozenset(logging.makeLogRecord({}).__dict__) | {
    "message",
    "asctime",
    "taskName",
    "color_message",
}


def _as_text(value: Any) -> str:
    # An extra the encoder has no JSON for (an exception, a UUID): its text, redacted like any other.
    return redact(str(value))


def _redacted(value: Any) -> Any:
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, list | tuple):
        return [_redacted(v) for v in value]
    if isinstance(value, dict):
        return {k: _redacted(v) for k, v in value.items()}
    return value


# msgspec rather than json.dumps: the access log formats one line per request, and this is several
# times faster; anything it cannot encode natively is logged as its str().
_ENCODER: Final = msgspec.json.Encoder(enc_hook=_as_text)


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
            "msg": redact(record.getMessage()),
        }
        if self.service:
            entry["service"] = self.service
        entry.update(
            {k: _redacted(v) for k, v in record.__dict__.items() if k not in _RECORD_ATTRS and not k.startswith("_")}
        )
        if record.exc_info:
            entry["exc"] = redact(self.formatException(record.exc_info))
        return _ENCODER.encode(entry).decode()


class BatchingHandler(logging.Handler):
    """Formats and writes records on a background thread, a batch at a time (see the module docstring)."""

    def __init__(self, stream: Any = None, flush_ms: float | None = None) -> None:
        super().__init__()
        self.stream = stream if stream is not None else sys.stderr
        self.interval_s = (flush_ms if flush_ms is not None else log_settings().flush_ms) / 1000
        self._pending: collections.deque[logging.LogRecord] = collections.deque()
        # Set by the first record after the writer last cleared it; the writer sleeps on it while idle.
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="log-writer", daemon=True)
        self._thread.start()
        atexit.register(self.close)

    def emit(self, record: logging.LogRecord) -> None:
        # The message is fixed now: its arguments may change after this returns.
        record.msg, record.args = record.getMessage(), None
        # And the request (or applied event) it belongs to: the writer thread has no context of its own.
        request_id = correlation_id.get()
        if request_id is not None and "request_id" not in record.__dict__:
            record.request_id = request_id
        self._pending.append(record)  # deque.append is atomic: no lock
        # Appended before it looks: a record the writer's drain misses was appended after its clear(), so
        # this sees the event clear and sets it (one set() per batch; is_set() is an attribute read).
        if not self._wake.is_set():
            self._wake.set()

    def _run(self) -> None:
        while True:
            self._wake.wait()
            if self._stop.wait(self.interval_s):  # a batch gathers meanwhile; close() ends the wait early
                break
            self._wake.clear()  # before the drain: see emit()
            self.write_pending()
        self.write_pending()

    def write_pending(self) -> None:
        lines = []
        while self._pending:
            record = self._pending.popleft()
            try:
                lines.append(self.format(record))
            except Exception:
                self.handleError(record)
        if lines:
            try:
                self.stream.write("\n".join(lines) + "\n")
                self.stream.flush()
            except Exception:  # a closed or full stream: nowhere left to say so
                return

    def close(self) -> None:
        if not self._stop.is_set():
            self._stop.set()
            self._wake.set()  # a writer asleep with nothing pending
            self._thread.join(timeout=5)
        super().close()


def logging_config(spec: ServiceSpec) -> LoggingConfig:
    """Litestar's logging set-up with every line (ours, Litestar's, uvicorn's) as JSON."""
    level = log_settings().level.upper()
    json_formatter = {"()": JsonLogFormatter, "service": spec.name}
    via_queue = {"level": level, "handlers": ["queue_listener"], "propagate": False}
    return LoggingConfig(
        # Overriding "standard" makes Litestar's own console handler emit JSON too.
        formatters={"standard": json_formatter},
        # The name every logger below uses; the handler is ours (see the module docstring).
        handlers={"queue_listener": {"()": BatchingHandler, "level": "DEBUG", "formatter": "standard"}},
        loggers={
            "litestar": via_queue,
            "apps": via_queue,
            "outbox": via_queue,
            # Only uvicorn's server log: naming "uvicorn" itself would reset its children, turning its
            # access log back on under `--no-access-log`. Ours is AccessLog.
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


def should_log(status: int, duration_ms: float, sample: float, slow_ms: float, draw: float) -> bool:
    """Errors and slow requests always; the others when the draw falls within the sampled share."""
    return status >= 400 or duration_ms >= slow_ms or draw < sample


class AccessLog:
    """One line per request: method, route, the status the client received, duration. Probes and scrapes
    are not logged; ordinary requests are sampled at ``ACCESS_LOG_SAMPLE``.

    Written by the metrics middleware (``SentStatusPrometheusMiddleware``), which knows the status the client
    received and the duration already: a middleware of its own cost the order API a layer, a send wrapper
    and a second clock per request (docs/benchmarks.md, session 29)."""

    def __init__(self) -> None:
        settings = log_settings()
        self.sample = settings.access_log_sample
        self.slow_ms = settings.access_log_slow_ms

    def write(self, scope: Scope, status: int, duration_ms: float) -> None:
        if scope["type"] != ScopeType.HTTP or _is_probe_or_scrape(scope):
            return
        if should_log(status, duration_ms, self.sample, self.slow_ms, random.random()) and log.isEnabledFor(
            logging.INFO
        ):
            # The record made and handled here, not by log.info: that one walks the stack for the caller's
            # file and line (findCaller), which no JSON line shows.
            extra = {
                "method": scope.get("method"),
                # The route template, not the raw path: ids stay out of the access log's keys.
                "route": scope.get("path_template", scope.get("path")),
                "path": scope.get("path"),
                "status": status,
                "duration_ms": duration_ms,
            }
            log.handle(log.makeRecord(log.name, logging.INFO, "", 0, "request", (), None, extra=extra))


_REQUEST_ID_HEADER: Final = HEADER.encode()


class _SpanSend:
    """The send a request's inner app gets: records the status once the start is sent, and the duration;
    adds the request's X-Request-ID to the start."""

    __slots__ = ("request_id", "send", "sent", "span")

    def __init__(self, send: Send, span: dict[str, float], request_id: str | None = None) -> None:
        self.send = send
        self.span = span
        self.sent = False
        self.request_id = None if request_id is None else (_REQUEST_ID_HEADER, request_id.encode())
        span["status_code"] = HTTP_500_INTERNAL_SERVER_ERROR

    async def __call__(self, message: Message) -> None:
        if message["type"] == "http.response.body":
            self.span["end_time"] = time.perf_counter()
            self.span["duration"] = self.span["end_time"] - self.span["start_time"]
        elif message["type"] == "http.response.start" and self.request_id is not None:
            message["headers"] = [*message.get("headers", ()), self.request_id]
        await self.send(message)
        if message["type"] == "http.response.start":
            self.span["status_code"] = message["status"]
            self.sent = True

    def refused(self, exc: HTTPException) -> None:
        """An HTTP error raised before any answer (the auth middleware's 401): the status the outer
        exception handler will send."""
        if not self.sent:
            self.span["status_code"] = exc.status_code
            self.span["duration"] = time.perf_counter() - self.span["start_time"]


def _counting_refusals(app: ASGIApp) -> ASGIApp:
    async def counted(scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await app(scope, receive, send)
        except HTTPException as exc:
            if isinstance(send, _SpanSend):
                send.refused(exc)
            raise

    return counted


class SentStatusPrometheusMiddleware(PrometheusMiddleware):
    """Litestar's HTTP metrics, counted under the status the client received.

    The stock middleware takes the status from the start message before passing it on, and counts a
    request that raised before any answer as a 200; here the status is recorded once the start is sent,
    a request that never sent one counts as the server's 500, and an HTTP error raised by a middleware
    inside this one (answered by Litestar's outer exception handler) counts under its own status.
    """

    def __init__(self, app: ASGIApp, config: PrometheusConfig, access_log: AccessLog | None = None) -> None:
        super().__init__(app, config)
        self.app = _counting_refusals(self.app)
        # The lean path below serves the configuration every service uses: the four default labels only.
        self._lean = config.group_path and not (config.labels or config.exemplars or config.excluded_http_methods)
        if access_log is not None and not self._lean:
            raise ValueError("the access log is written on the lean path only (group_path, default labels)")
        self._access_log = access_log
        self._children: dict[tuple[str, str, int], Any] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Litestar's metrics and labels, without a Request and its URL per request (the label is the route
        template) and each label set's children looked up once, not five times per request (~35 us).
        The request's id (X-Request-ID) is set here too, the outermost of our middleware: every line logged
        while it runs, the access log's too, carries it; its answer says it."""
        if not self._lean:
            await super().__call__(scope, receive, send)
            return
        method = scope["method"] if scope["type"] == ScopeType.HTTP else scope["type"]
        path: str = scope["path_template"]
        span = {"start_time": time.perf_counter(), "end_time": 0.0, "duration": 0.0, "status_code": 200}
        request_id = sent_or_new(scope.get("headers", ()))
        # Not reset on the way out: the request's task (one per request) ends with it, and an error raised
        # through here is answered by Litestar's outer handler, whose lines and answer (the security headers'
        # before_send adds the header there) must carry the same id.
        correlation_id.set(request_id)
        in_progress = self._in_progress(method, path)
        in_progress.inc()
        try:
            await self.app(scope, receive, _SpanSend(send, span, request_id))
        finally:
            in_progress.dec()
            status = int(span["status_code"])
            count, duration = self._outcome(method, path, status)
            if status >= HTTP_500_INTERNAL_SERVER_ERROR:
                labels = self._labels(method, path, status)
                self.requests_error_count(labels).labels(*labels.values()).inc()
            count.inc()
            duration.observe(span["duration"])
            if self._access_log is not None:
                self._access_log.write(scope, status, round((time.perf_counter() - span["start_time"]) * 1000, 2))

    def _labels(self, method: str, path: str, status: int) -> dict[str, str | int | float]:
        return {"method": method, "path": path, "status_code": status, "app_name": self._config.app_name}

    def _in_progress(self, method: str, path: str) -> Any:  # labelled status 200, as Litestar labels it
        key = (method, path, 0)
        found = self._children.get(key)
        if found is None:
            labels = self._labels(method, path, 200)
            found = self._remember(key, self.requests_in_progress(labels).labels(*labels.values()))
        return found

    def _outcome(self, method: str, path: str, status: int) -> tuple[Any, Any]:
        """The request counter's and the duration histogram's children for these labels."""
        key = (method, path, status)
        found = self._children.get(key)
        if found is None:
            labels = self._labels(method, path, status)
            values = labels.values()
            counter, histogram = self.request_count(labels), self.request_time(labels)
            found = self._remember(key, (counter.labels(*values), histogram.labels(*values)))
        return found  # type: ignore[no-any-return]

    def _remember(self, key: tuple[str, str, int], children: Any) -> Any:
        # Routes and statuses are few; should the table ever grow past 4096 entries, it starts over.
        if len(self._children) >= 4096:
            self._children.clear()
        self._children[key] = children
        return children

    def _get_wrapped_send(self, send: Send, request_span: dict[str, float]) -> Callable[[Message], Any]:
        return _SpanSend(send, request_span)
