"""Route policies in the app: a default for routes that declare none, and bearer security in OpenAPI.

- :func:`undeclared_routes_admin_only` is an app guard: a route that forgot its policy is admin-only (and
  the route-policy test fails), never open. The probes, the OpenAPI document and Litestar's OPTIONS answers
  are public.
- :func:`document_policies` writes each route's policy into its OpenAPI operation: ``security`` (the
  bearer scheme; public routes list the empty requirement first, a token there is optional), the 401/403
  answers (a public route's 401 too: a token sent there is verified), and an "Access:" line in the
  description, so Swagger and schemathesis know it.
- :func:`guard_without_copies` runs a declared policy straight from its handler (see there).
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Sequence
from inspect import cleandoc
from typing import Any, Final

from litestar import Litestar
from litestar.connection import ASGIConnection
from litestar.exceptions import PermissionDeniedException
from litestar.handlers.base import BaseRouteHandler
from litestar.openapi.spec import Components, SecurityScheme
from litestar.routes import HTTPRoute
from litestar.types import Guard

from apps.common.auth import Policy, policy_of, principal_of, unauthorized
from apps.common.auth_tokens import UNAUTHENTICATED_PATHS
from apps.common.openapi import error_response

__all__ = ["BEARER", "bearer_components", "document_policies", "guard_without_copies", "undeclared_routes_admin_only"]

BEARER: Final = "bearer"
_PUBLIC_401: Final = "A bearer token was sent and is invalid or expired (`WWW-Authenticate`): none is needed here"
_OPEN_PATHS: Final = re.compile("|".join(UNAUTHENTICATED_PATHS))


def bearer_components() -> Components:
    description = (
        "A JWT from the identity provider (locally: `just token ROLE [--customer ID]`), signed with an "
        "asymmetric key of the JWKS the services read; claims iss, aud, exp, sub, role (customer, staff, "
        "admin, service), customer_id (customer), service and scope (service)."
    )
    scheme = SecurityScheme(type="http", scheme="bearer", bearer_format="JWT", description=description)
    return Components(security_schemes={BEARER: scheme})


async def undeclared_routes_admin_only(
    connection: ASGIConnection[Any, Any, Any, Any], handler: BaseRouteHandler
) -> None:
    if policy_of(handler) is not None or _OPEN_PATHS.match(connection.scope.get("path", "")):
        return
    if connection.scope.get("method") == "OPTIONS":
        return  # Litestar's own OPTIONS answers: the path's Allow header, no data
    principal = principal_of(connection)
    if principal is None:
        raise unauthorized("a bearer token is required (Authorization: Bearer <token>)", error=None)
    if principal.role != "admin":
        raise PermissionDeniedException(detail="this route declares no policy: admin only")


def document_policies(app: Litestar) -> None:
    """Run once the app is built (Litestar writes the document on its first request)."""
    for route in app.routes:
        if not isinstance(route, HTTPRoute):
            continue
        for handler in route.route_handlers:
            policy = policy_of(handler)
            if policy is None or not handler.resolve_include_in_schema():
                continue
            _document(handler, policy)


def _document(handler: Any, policy: Policy) -> None:
    if policy.is_public:
        handler.security = [{}, {BEARER: []}]
        # A public route needs no token, but one that is sent is verified like anywhere else.
        answers = {401: error_response(401, _PUBLIC_401)}
        handler.responses = {**answers, **(handler.responses or {})}
    else:
        handler.security = [{BEARER: []}]
        answers = {
            401: error_response(401, "No bearer token, or one that is invalid or expired (`WWW-Authenticate`)"),
            403: error_response(403, "The caller's role may not call this operation"),
        }
        if policy.own:
            answers[404] = error_response(404, "Unknown, or another customer's")
        handler.responses = {**answers, **(handler.responses or {})}
    doc = handler.description
    if doc is None and handler.fn.__doc__:
        doc = cleandoc(handler.fn.__doc__)
    handler.description = f"{doc or ''}\n\nAccess: {policy.describe()}.".lstrip()


def guard_without_copies(app: Litestar) -> None:
    """Run once the app is built: a route that declares a policy runs its guards on the handler itself.

    Litestar hands each guard a shallow copy of the route handler (~8 us each, two guards per request: the
    app's default and the route's policy) so that a guard cannot change the handler; ours only read it. And
    the app's default returns at once on a route with a policy (after looking the policy up through every
    layer, per request), so such a route skips it. Routes without a policy keep Litestar's own path."""
    for route in app.routes:
        if not isinstance(route, HTTPRoute):
            continue
        for handler in route.route_handlers:
            # An instance attribute shadows the method Litestar's route calls; a handler without a __dict__
            # (Litestar's own OPTIONS handler) keeps Litestar's path.
            attributes = getattr(handler, "__dict__", None)
            if attributes is None or policy_of(handler) is None:
                continue
            guards = [g for g in handler.resolve_guards() if g is not undeclared_routes_admin_only]
            attributes["authorize_connection"] = _authorizer(handler, guards)


def _authorizer(
    handler: BaseRouteHandler, guards: Sequence[Guard]
) -> Callable[[ASGIConnection[Any, Any, Any, Any]], Awaitable[None]]:
    async def authorize_connection(connection: ASGIConnection[Any, Any, Any, Any]) -> None:
        for guard in guards:
            await guard(connection, handler)  # type: ignore[misc]  # resolve_guards made each one async

    return authorize_connection
