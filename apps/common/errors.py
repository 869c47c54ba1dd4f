"""Domain errors every service raises from its service layer; apps/common/http.py maps them to HTTP.

They name the field at fault so the client can fix its request, and carry our own wording only.
"""

from __future__ import annotations


class FieldProblem(Exception):
    """Base: a problem with one input field (``field`` is a dotted path like ``items[2].product_id``)."""

    status_code = 400

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


class StateConflict(FieldProblem):
    """The request is valid but not in the resource's current state (a wrong status transition): 409."""

    status_code = 409


class DependencyUnavailable(Exception):
    """Another service did not answer in time or failed: 503, naming the dependency."""

    def __init__(self, dependency: str, reason: str) -> None:
        super().__init__(f"{dependency} service unavailable: {reason}")
        self.dependency = dependency
        self.reason = reason
