"""What every service's OpenAPI document says beyond Litestar's defaults, so that it matches what the service does.

- Each operation lists the error answers it can give (400, 404, 409, 413, 422, 503), each with the one error
  body every handler writes (``ErrorBody``). ``document_error_responses`` derives them from the method and
  the path; a handler's own ``responses={...}`` win.
- Request bodies that refuse unknown fields (msgspec ``forbid_unknown_fields=True``) say so:
  ``additionalProperties: false`` (``StrictStructSchemaPlugin``).
- ``OPTIONS`` answers ``Allow`` with every method of the path (``AllowHeaderMiddleware``).

A fuzzer (schemathesis) checks each of these against the running service.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

import msgspec
from litestar._openapi.schema_generation.plugins.struct import StructSchemaPlugin
from litestar.enums import ScopeType
from litestar.handlers import HTTPRouteHandler
from litestar.middleware import ASGIMiddleware
from litestar.openapi.datastructures import ResponseSpec
from litestar.routes import HTTPRoute
from msgspec import UNSET, UnsetType

if TYPE_CHECKING:
    from litestar import Litestar
    from litestar._openapi.schema_generation import SchemaCreator
    from litestar.openapi.spec import Schema
    from litestar.types import ASGIApp, Message, Receive, Scope, Send
    from litestar.typing import FieldDefinition

__all__ = [
    "AllowHeaderMiddleware",
    "ErrorBody",
    "ErrorEntry",
    "StrictStructSchemaPlugin",
    "document_error_responses",
    "error_response",
]


class ErrorEntry(msgspec.Struct, kw_only=True, omit_defaults=True):
    """One problem: the field at fault (``key``, where it came from: ``source``) or the dependency that is down."""

    message: str | UnsetType = UNSET
    key: str | UnsetType = UNSET
    source: str | UnsetType = UNSET
    dependency: str | UnsetType = UNSET


class ErrorBody(msgspec.Struct, kw_only=True, omit_defaults=True):
    """Every error answer: the status, a sentence we wrote, and the problems one by one."""

    status_code: int
    detail: str
    extra: list[ErrorEntry] | UnsetType = UNSET


_DESCRIPTIONS: Final = {
    400: "Bad input: a field is missing, malformed or breaks a rule; `extra[].key` names it",
    404: "The resource the path names does not exist",
    409: "The request conflicts with the resource's current state or a taken unique value",
    413: "The request body is larger than the service accepts",
    422: "A field refers to something that does not exist; `extra[].key` names it",
    503: "A dependency (the database, another service) is unavailable; retry after `Retry-After` seconds",
}
_WRITES: Final = frozenset({"POST", "PUT", "PATCH", "DELETE"})
_BODIES: Final = frozenset({"POST", "PUT", "PATCH"})


def error_response(status_code: int, description: str | None = None) -> ResponseSpec:
    """The OpenAPI answer for one error status, with the shared error body."""
    return ResponseSpec(
        data_container=ErrorBody,
        description=description or _DESCRIPTIONS.get(status_code, "Error"),
        generate_examples=False,
    )


def _error_statuses(handler: HTTPRouteHandler, route: HTTPRoute) -> list[int]:
    """The errors any handler of ours can answer, from its method and path alone.

    Every operation reads its input (400) and the database (503); a path with parameters names a
    resource that may not exist (404); a write may conflict (409) or refer to something unknown (422);
    a body may be too large (413).
    """
    methods = set(handler.http_methods)
    statuses = [400, 503]
    if route.path_parameters:
        statuses.append(404)
    if methods & _WRITES:
        statuses += [409, 422]
    if methods & _BODIES:
        statuses.append(413)
    return sorted(statuses)


def document_error_responses(app: Litestar) -> None:
    """Add the error answers to every documented operation; a status the handler documents itself stays
    as it is. Litestar builds the document on first request, so this runs once the app is built."""
    for route in app.routes:
        if not isinstance(route, HTTPRoute):
            continue
        for handler in route.route_handlers:
            if not handler.resolve_include_in_schema():
                continue
            defaults = {status: error_response(status) for status in _error_statuses(handler, route)}
            handler.responses = {**defaults, **(handler.responses or {})}


class StrictStructSchemaPlugin(StructSchemaPlugin):
    """Litestar's msgspec schema, plus ``additionalProperties: false`` for structs that refuse unknown fields."""

    def to_openapi_schema(self, field_definition: FieldDefinition, schema_creator: SchemaCreator) -> Schema:
        schema: Schema = super().to_openapi_schema(field_definition, schema_creator)
        info = msgspec.inspect.type_info(field_definition.type_)
        if isinstance(info, msgspec.inspect.StructType) and info.forbid_unknown_fields:
            schema.additional_properties = False
        return schema


def _not_options(scope: Scope) -> bool:
    return scope.get("method") != "OPTIONS"


class AllowHeaderMiddleware(ASGIMiddleware):
    """``Allow`` on an OPTIONS answer lists every method of the path.

    Litestar's automatic OPTIONS handler only knows the methods of the first handler registered on a path:
    a controller registers its handlers one by one, and the merged route keeps the first OPTIONS handler
    (``GET /api/products`` and ``POST /api/products`` answered ``Allow: OPTIONS, POST``).
    """

    scopes = (ScopeType.HTTP,)
    should_bypass_for_scope = staticmethod(_not_options)

    async def handle(self, scope: Scope, receive: Receive, send: Send, next_app: ASGIApp) -> None:
        methods = _methods_of(scope)

        async def send_with_allow(message: Message) -> None:
            if message["type"] == "http.response.start" and methods:
                headers = [(k, v) for k, v in message.get("headers", []) if k.lower() != b"allow"]
                message = {**message, "headers": [*headers, (b"allow", ", ".join(methods).encode())]}
            await send(message)

        await next_app(scope, receive, send_with_allow)


def _methods_of(scope: Scope) -> list[str]:
    template = scope.get("path_template")
    app = scope.get("litestar_app")
    if not template or app is None:
        return []
    for route in app.routes:
        if isinstance(route, HTTPRoute) and route.path_format == template:
            return sorted(route.methods)
    return []
