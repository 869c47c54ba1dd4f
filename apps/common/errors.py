"""The one error vocabulary of every service; ``apps/common/error_handlers.py`` maps each to its HTTP answer.

- ``InvalidField`` (400): well-formed input that breaks a rule (a quantity of zero, a malformed date).
- ``UnknownReference`` (422): a field names something that does not exist (a customer, a product).
- ``OutOfRange`` (422): valid fields that together exceed a stated limit (an order total too large).
- ``InconsistentFields`` (422): fields valid one by one that contradict each other (a product on two
  lines, two currencies in one cart or order, an address sent both inline and by id). The schema cannot
  state these, so a schema-valid request gets a 422, not a 400.
- ``StateConflict`` (409): valid, but not in the resource's current state (a taken sku, a wrong status).
- ``NotFound`` (404): the resource the path names does not exist.
- ``DependencyUnavailable`` (503): another service did not answer in time or failed.

The field errors name the field at fault so the client can fix its request. Every message is our own
wording: no SQL, no parameter values.
"""

from __future__ import annotations

from typing import ClassVar

__all__ = [
    "DependencyUnavailable",
    "FieldProblem",
    "InconsistentFields",
    "InvalidField",
    "NotFound",
    "OutOfRange",
    "StateConflict",
    "UnknownReference",
]


class FieldProblem(Exception):
    """Base: a problem with one input field (``field`` is a dotted path like ``items[2].product_id``).

    ``source`` says where the field came from: "body", "query", "path" or "header".
    """

    status_code: ClassVar[int] = 400

    def __init__(self, field: str, message: str, *, source: str = "body") -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message
        self.source = source


class InvalidField(FieldProblem):
    """Well-formed input that breaks a rule (a quantity of zero, mixed currencies): 400."""


class UnknownReference(FieldProblem):
    """The field refers to something that does not exist (an unknown customer or product): 422."""

    status_code = 422


class OutOfRange(FieldProblem):
    """Each field is valid, but what they add up to is beyond a limit the service states (an order total
    larger than an amount can hold): 422."""

    status_code = 422


class InconsistentFields(FieldProblem):
    """Each field is valid on its own, but they contradict each other (a product on two lines, mixed
    currencies, an address given both inline and by id): 422."""

    status_code = 422


class StateConflict(FieldProblem):
    """The request is valid but not in the resource's current state (a wrong status transition, a taken
    unique value, stock below what is reserved): 409."""

    status_code = 409


class NotFound(Exception):
    """The resource named by the path does not exist (or is soft-deleted): 404 with ``detail``."""

    status_code: ClassVar[int] = 404

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class DependencyUnavailable(Exception):
    """Another service did not answer in time or failed: 503, naming the dependency."""

    status_code: ClassVar[int] = 503

    def __init__(self, dependency: str, reason: str) -> None:
        super().__init__(f"{dependency} service unavailable: {reason}")
        self.dependency = dependency
        self.reason = reason
