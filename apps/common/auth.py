"""Who is calling and what they may do: the Principal of a verified bearer token, and route policies.

Tokens are verified by ``apps/common/auth_tokens.py`` (a middleware every service app has); on every
route but the probes the caller's Principal (or None without a token) is ``request.user``, and
:func:`principal_of` reads it. Every route declares its policy in its decorator, as a guard::

    @get("/{customer_id:uuid}", guards=[allow("customer", "staff", service="customer:read", own="customer_id")])
    @post(guards=[public("registration")])

- ``allow(*roles)``: those roles, and ``admin`` always (admin may do everything). No token: 401; another
  role: 403. ``service="<service>:<what>"`` also admits service tokens that hold that scope.
- ``own="<path parameter>"``: a customer may only name their own id there; someone else's is a 404, as if
  it did not exist (a customer learns nothing about other customers).
- ``public(why)``: anyone, token or not (probes, catalog browsing, registration, the guest checkout flow).

Rows whose owner is only known once read (an order, a return) are checked with :func:`ensure_visible`,
and read with :func:`read_owner` in their statement, so that another customer's row costs the same
statements as an unknown id (no timing oracle); listings take their customer filter from :func:`own_rows`;
a body that acts for a customer (``customer_id`` of a new order) from :func:`ensure_acting_for`.
The policy table: README, Security.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Final, Literal, TypeAlias, get_args

import msgspec
from litestar import Request
from litestar.connection import ASGIConnection
from litestar.exceptions import NotAuthorizedException, PermissionDeniedException
from litestar.handlers.base import BaseRouteHandler

from apps.common.errors import NotFound

__all__ = [
    "ROLES",
    "WWW_AUTHENTICATE",
    "AnyRequest",
    "Policy",
    "Principal",
    "Role",
    "actor_id",
    "allow",
    "ensure_acting_for",
    "ensure_owner_or_guest",
    "ensure_visible",
    "own_rows",
    "policy_of",
    "principal_of",
    "public",
    "read_owner",
    "unauthorized",
]

Role = Literal["customer", "staff", "admin", "service"]
ROLES: Final[tuple[Role, ...]] = get_args(Role)
AnyRequest: TypeAlias = Request[Any, Any, Any]
WWW_AUTHENTICATE: Final = "WWW-Authenticate"


class Principal(msgspec.Struct, frozen=True):
    """The verified caller: ``customer_id`` for a customer, ``service`` for a service token."""

    subject: str
    role: Role
    customer_id: uuid.UUID | None = None
    service: str | None = None
    scopes: frozenset[str] = frozenset()


def unauthorized(detail: str, *, error: str | None = "invalid_token") -> NotAuthorizedException:
    """A 401 with ``WWW-Authenticate: Bearer`` (RFC 6750), saying what was wrong with the token."""
    challenge = 'Bearer realm="commerce-outbox"'
    if error:
        challenge += f', error="{error}", error_description="{detail}"'
    return NotAuthorizedException(detail=detail, headers={WWW_AUTHENTICATE: challenge})


def principal_of(connection: ASGIConnection[Any, Any, Any, Any]) -> Principal | None:
    """The caller of this request, None for a caller without a token (guests) and on the probes."""
    user = connection.scope.get("user")
    return user if isinstance(user, Principal) else None


def actor_id(principal: Principal | None) -> str:
    """Who did it, for logs and data_access_log: never an email or a name."""
    if principal is None:
        return "anonymous"
    if principal.role == "customer":
        return f"customer:{principal.customer_id}"
    if principal.role == "service":
        return f"service:{principal.service}"
    return f"{principal.role}:{principal.subject}"


@dataclass(frozen=True)
class Policy:
    """A route's policy, used as its guard (Litestar calls it before the handler)."""

    roles: frozenset[Role]
    service_scope: str | None = None
    own: str | None = None
    rows: bool = False
    why_public: str | None = None

    @property
    def is_public(self) -> bool:
        return self.why_public is not None

    def permits(self, principal: Principal) -> bool:
        """Whether this caller's role (and, for a service, its scope) may call the route at all."""
        if principal.role == "admin":
            return True
        if principal.role == "service" and self.service_scope is not None:
            return self.service_scope in principal.scopes
        return principal.role in self.roles

    def describe(self) -> str:
        """One line for OpenAPI and the README: "public (why)" or the roles, e.g. "customer (own), staff, admin"."""
        if self.why_public is not None:
            return f"public ({self.why_public})" if self.why_public else "public"
        mine = self.own is not None or self.rows
        names = [f"{role} (own)" if role == "customer" and mine else role for role in self.roles_in_order()]
        if self.service_scope:
            names.append(f"service ({self.service_scope})")
        return ", ".join(names)

    def roles_in_order(self) -> list[Role]:
        return [role for role in ROLES if role in self.roles or role == "admin"]

    async def __call__(self, connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
        if self.is_public:
            return
        principal = principal_of(connection)
        if principal is None:
            raise unauthorized("a bearer token is required (Authorization: Bearer <token>)", error=None)
        if not self.permits(principal):
            raise PermissionDeniedException(detail=f"the {principal.role} role may not {self._action(connection)}")
        if self.own and principal.role == "customer":
            named = connection.path_params.get(self.own)
            if named != principal.customer_id:
                noun = self.own.removesuffix("_id")
                raise NotFound(f"{noun} {named} not found")

    @staticmethod
    def _action(connection: ASGIConnection[Any, Any, Any, Any]) -> str:
        return f"call {connection.scope.get('method', '')} {connection.scope.get('path', '')}".rstrip()


def allow(*roles: Role, service: str | None = None, own: str | None = None, rows: bool = False) -> Policy:
    """Only these roles (and admin); ``service``: service tokens with this scope; ``own``: see the module
    doc; ``rows``: the handler shows a customer only their own rows (:func:`ensure_visible`, :func:`own_rows`)."""
    unknown = set(roles) - set(ROLES)
    if unknown:
        raise ValueError(f"unknown roles {sorted(unknown)}")
    if (own or rows) and "customer" not in roles:
        raise ValueError("own= and rows= only restrict customers: allow 'customer' too")
    return Policy(roles=frozenset((*roles, "admin")), service_scope=service, own=own, rows=rows)


def public(why: str = "") -> Policy:
    """Anyone may call it, with a token or without; ``why`` is shown in the policy table."""
    return Policy(roles=frozenset(ROLES), why_public=why)


def policy_of(handler: BaseRouteHandler) -> Policy | None:
    """The policy a route declared (on itself or its controller), None if it declared none."""
    found = [guard for layer in handler.ownership_layers for guard in (layer.guards or []) if isinstance(guard, Policy)]
    return found[-1] if found else None


def _as_uuid(value: uuid.UUID | str | None) -> uuid.UUID | None:
    if value is None or isinstance(value, uuid.UUID):
        return value
    try:
        return uuid.UUID(value)
    except ValueError:
        return None  # a guest's "cs_..." id: no customer owns it


def ensure_visible(principal: Principal | None, owner: uuid.UUID | str | None, missing: str | Exception) -> None:
    """A customer reads only their own rows: someone else's (or a guest's) is ``missing`` (a NotFound
    detail, or the exception to raise, e.g. an UnknownReference for an id named in a body)."""
    if principal is None or principal.role != "customer":
        return
    if principal.customer_id is None or _as_uuid(owner) != principal.customer_id:
        raise NotFound(missing) if isinstance(missing, str) else missing


# Owns no row: a customer token without a customer id reads nothing.
_NOBODY: Final = uuid.UUID(int=0)


def read_owner(principal: Principal | None) -> uuid.UUID | None:
    """The owner a read by id must name in its statement: a customer's own id (None for anyone else).
    Read by id first and checked after, another customer's row took the reads of a found one (its items,
    its saga) and an unknown id the reads of a missing one, and the 404s differed by ~0.65 ms (S, session
    29, #51): with the owner in the statement both find nothing the same way. :func:`ensure_visible` still
    checks what was read."""
    if principal is None or principal.role != "customer":
        return None
    return principal.customer_id or _NOBODY


def ensure_owner_or_guest(principal: Principal | None, owner: uuid.UUID | str | None, missing: str | Exception) -> None:
    """A customer's row (a cart, a checkout) needs that customer's token (or staff's, admin's): none is a
    401, another customer's a 404, a service's a 403. A guest's row (no owner, or a guest's ``cs_...`` id)
    is left to its guest token."""
    if _as_uuid(owner) is None:
        return
    if principal is None:
        raise unauthorized("this belongs to a customer: send their bearer token", error=None)
    _refuse_service(principal)
    ensure_visible(principal, owner, missing)


def _refuse_service(principal: Principal) -> None:
    """A service token is no customer's proxy on a public route: such routes (the checkout's) admit every
    token, and a scope names only what a service may call, so without this any service's token (even one
    holding no scope) read every customer's checkout addresses and completed their checkouts. No service
    calls them; one that must would get a scope of its own."""
    if principal.role == "service":
        raise PermissionDeniedException(detail="a service token acts for no customer here")


def ensure_acting_for(principal: Principal | None, customer_id: uuid.UUID | str | None, field: str) -> None:
    """Acting for a customer takes a token (401 without); a customer acts only for themselves: naming
    another customer in ``field`` is a 403 naming it; a service token is a 403 too."""
    if principal is None:
        raise unauthorized(f"{field}: acting for a customer needs their bearer token", error=None)
    _refuse_service(principal)
    if principal.role == "customer" and _as_uuid(customer_id) != principal.customer_id:
        raise PermissionDeniedException(
            detail=f"{field}: a customer acts only for themselves", extra=[{"key": field, "source": "body"}]
        )


def own_rows(principal: Principal | None, requested: uuid.UUID | str | None, not_found: str) -> str | None:
    """The customer filter of a listing: a customer's own id (asking for another customer's rows is a 404);
    others get what they asked for."""
    if principal is None or principal.role != "customer":
        return None if requested is None else str(requested)
    ensure_visible(principal, principal.customer_id if requested is None else requested, not_found)
    return str(principal.customer_id)


def scopes_of(claim: object) -> frozenset[str]:
    """OAuth's ``scope`` (space separated) or a list (``scp``, as some identity providers send it)."""
    if isinstance(claim, str):
        return frozenset(claim.split())
    if isinstance(claim, Iterable):
        return frozenset(str(s) for s in claim)
    return frozenset()
