"""The usual security headers on every answer of every service, errors and unknown paths included.

- ``X-Content-Type-Options: nosniff``: a browser never guesses a type for our JSON.
- ``X-Frame-Options: DENY`` and ``Content-Security-Policy: frame-ancestors 'none'``: no page may frame us.
  (Only ``frame-ancestors``: a stricter policy would break the Swagger UI at ``/schema/swagger``.)
- ``Referrer-Policy: no-referrer``: ids in our URLs never leak to another site.
- ``Cache-Control: no-store`` on every ``/api/`` answer that does not set its own: they carry customers,
  addresses, orders, payments; no shared or browser cache keeps them.
- ``Strict-Transport-Security`` only when ``SECURITY_HSTS_MAX_AGE`` (seconds) is set: TLS ends at the proxy
  in front of the services, and HSTS is its job; a deployment that serves TLS itself sets the variable.
  Read when the app is built (``SecurityHeaderSettings``); 0 leaves the header out, and a value that is not
  a whole number of seconds stops the start naming the variable (until session 34 it left the header out,
  silently).

And ``X-Request-ID`` on the answers the metrics middleware does not send itself (an HTTP error raised by a
middleware, such as the auth middleware's 401, and a 404 for an unknown path): the request's id if it has one,
else the client's when it is a UUID, else a new one (outbox/correlation.py).

A ``before_send`` hook, not a middleware: Litestar's middleware wraps route handlers only, so a 404 for an
unknown path or a 405 would pass by it; the app's ``before_send`` sees every answer.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

from litestar.plugins import InitPluginProtocol

from apps.common.settings import Settings, env
from outbox.correlation import HEADER, correlation_id, sent_or_new

if TYPE_CHECKING:
    from litestar.config.app import AppConfig
    from litestar.types import Message, Scope

__all__ = ["SecurityHeaderSettings", "SecurityHeadersPlugin", "security_headers"]

_ALWAYS: Final = (
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"content-security-policy", b"frame-ancestors 'none'"),
    (b"referrer-policy", b"no-referrer"),
)
_NO_STORE: Final = (b"cache-control", b"no-store")
_API_PREFIX: Final = "/api/"
_REQUEST_ID: Final = HEADER.encode()


def security_headers(hsts_max_age: int | None = None) -> tuple[tuple[bytes, bytes], ...]:
    """The headers every answer gets (without Cache-Control, which depends on the path)."""
    if not hsts_max_age:
        return _ALWAYS
    return (*_ALWAYS, (b"strict-transport-security", f"max-age={hsts_max_age}; includeSubDomains".encode()))


# The longest max-age means anything: a cache takes delta-seconds past what it can hold as 2**31 (RFC 9111,
# 1.2.2, which HSTS' max-age follows, RFC 6797 6.1.1); about 68 years.
HSTS_MAX_AGE_LIMIT = 2**31


@dataclass(frozen=True, slots=True)
class SecurityHeaderSettings(Settings):
    # seconds; 0: no header
    hsts_max_age: int | None = env("SECURITY_HSTS_MAX_AGE", None, minimum=0, maximum=HSTS_MAX_AGE_LIMIT)


class SecurityHeadersPlugin(InitPluginProtocol):
    """Adds the headers above to every response start (a header the handler set itself is kept)."""

    def __init__(self) -> None:
        self.headers = security_headers(SecurityHeaderSettings.from_env().hsts_max_age)

    def on_app_init(self, app_config: AppConfig) -> AppConfig:
        app_config.before_send.append(self.add_headers)
        return app_config

    async def add_headers(self, message: Message, scope: Scope) -> None:
        if message["type"] != "http.response.start":
            return
        present = {name.lower() for name, _ in message.get("headers", [])}
        extra = [(name, value) for name, value in self.headers if name not in present]
        if scope.get("path", "").startswith(_API_PREFIX) and b"cache-control" not in present:
            extra.append(_NO_STORE)
        if _REQUEST_ID not in present:
            extra.append((_REQUEST_ID, _request_id(scope).encode()))
        if extra:
            message["headers"] = [*message.get("headers", []), *extra]


def _request_id(scope: Scope) -> str:
    """The request's id (set by the metrics middleware), or for a request it never saw the client's or a new one."""
    known = correlation_id.get()
    return known if known is not None else sent_or_new(scope.get("headers", ()))
