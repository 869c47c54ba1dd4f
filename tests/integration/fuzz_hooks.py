"""Schemathesis hooks for tests/integration/test_openapi_fuzz.py: the fuzz changes only what it created.

The catalog fuzz PATCHed and DELETEd products it had not created: its stateful phase follows the links it
infers from answers, so an id read off ``GET /api/products`` (newest first: whatever a bench, a soak or
another test created a moment ago) went on to ``PATCH``/``DELETE /api/products/{product_id}``, renaming,
repricing, deactivating or deleting products that others were selling.

Before each call that changes an item (``CONFINED``), an id that an earlier answer of this run showed and
that the run did not create itself is replaced by one of the run's own items (``FUZZ_OWN_ITEMS`` made
through the API when the run starts, and what its own POSTs create). Nothing else changes: the same cases
are generated and sent, an id the service never handed out (a random UUID: the 404 path) is sent as drawn,
and one of the run's own items stays itself. Loaded by schemathesis from ``SCHEMATHESIS_HOOKS``; what it
did is written at exit to ``FUZZ_CONFINED_REPORT`` (JSON) for the test to assert on.
"""

from __future__ import annotations

import atexit
import json
import os
import urllib.request
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, NamedTuple

import schemathesis
from schemathesis import Case, HookContext, Response

MUTATING = frozenset({"PATCH", "PUT", "DELETE"})


class Confined(NamedTuple):
    """An item path whose changes are confined, the collection that creates such items and a body for one."""

    parameter: str
    collection: str
    body: dict[str, Any]


# The item paths whose changes stay on the run's own items: "template path" -> how to make one.
CONFINED: dict[str, Confined] = {
    "/api/products/{product_id}": Confined(
        "product_id", "/api/products", {"name": "Fuzz's own product", "price": "1.00", "currency": "USD"}
    ),
}


class Ledger:
    """What the run did. A plain class: schemathesis loads this file without a module in sys.modules,
    which dataclasses need."""

    def __init__(self) -> None:
        self.created: set[str] = set()  # ids the run created (its POSTs' 201s, and ours)
        self.alive: list[str] = []  # of those, the ones not deleted yet
        self.seen: set[str] = set()  # every id an answer showed
        self.replaced = 0  # changing calls whose id was not the run's own: replaced
        self.kept = 0  # changing calls sent as drawn (an own item, or an id no answer showed)
        self.made = 0  # items created during the run because it had none alive


LEDGER = Ledger()
# Items made when the run starts (``FUZZ_OWN_ITEMS`` of each CONFINED kind, before schemathesis' clock
# starts), so a replacement rarely has to make one inside the run's time budget: made one at a time there,
# ~100 per catalog run (its stateful phase deletes what it was given), they cost cases.
OWN_ITEMS = int(os.environ.get("FUZZ_OWN_ITEMS", "0"))


def _ids(value: Any) -> set[str]:
    """Every ``id`` in an answer's JSON (an item, a page's ``items``)."""
    found: set[str] = set()
    if isinstance(value, dict):
        if isinstance(value.get("id"), str):
            found.add(value["id"])
        for nested in value.values():
            if isinstance(nested, list | dict):
                found |= _ids(nested)
    elif isinstance(value, list):
        for nested in value:
            found |= _ids(nested)
    return found


def _own_item(confined: Confined) -> str:
    if not LEDGER.alive:
        LEDGER.alive.append(_create(confined))
        LEDGER.made += 1
    return LEDGER.alive[LEDGER.replaced % len(LEDGER.alive)]


def _create(confined: Confined) -> str:
    base = os.environ["FUZZ_BASE_URL"]
    body = {**confined.body, "sku": f"FUZZ-{uuid.uuid4().hex[:16].upper()}"}
    request = urllib.request.Request(
        base + confined.collection,
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json", "Authorization": os.environ["FUZZ_AUTHORIZATION"]},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=10) as answer:
        created = str(json.load(answer)["id"])
    LEDGER.created.add(created)
    return created


def _make_own_items() -> None:
    with ThreadPoolExecutor(8) as pool:
        for confined in CONFINED.values():
            LEDGER.alive += pool.map(_create, [confined] * OWN_ITEMS)


if OWN_ITEMS:
    _make_own_items()


@schemathesis.hook
def before_call(context: HookContext, case: Case[Any], kwargs: dict[str, Any]) -> None:
    confined = CONFINED.get(case.operation.path)
    if confined is None or case.method.upper() not in MUTATING or not case.path_parameters:
        return
    drawn = str(case.path_parameters.get(confined.parameter))
    if drawn in LEDGER.created or drawn not in LEDGER.seen:
        LEDGER.kept += 1
        return
    case.path_parameters[confined.parameter] = _own_item(confined)
    LEDGER.replaced += 1


@schemathesis.hook
def after_call(context: HookContext, case: Case[Any], response: Response) -> None:
    method, path = case.method.upper(), case.operation.path
    if method == "DELETE" and 200 <= response.status_code < 300 and (confined := CONFINED.get(path)):
        deleted = str(case.path_parameters.get(confined.parameter)) if case.path_parameters else None
        if deleted in LEDGER.alive:
            LEDGER.alive.remove(deleted)
    try:
        answer = response.json()
    except ValueError:  # no body (a 204), or not JSON
        return
    LEDGER.seen |= _ids(answer)
    creates = any(path == confined.collection for confined in CONFINED.values())
    if creates and method == "POST" and response.status_code == 201 and isinstance(answer, dict) and "id" in answer:
        LEDGER.created.add(str(answer["id"]))
        LEDGER.alive.append(str(answer["id"]))


@atexit.register
def _report() -> None:
    path = os.environ.get("FUZZ_CONFINED_REPORT")
    if path:
        summary: dict[str, Any] = {"replaced": LEDGER.replaced, "kept": LEDGER.kept, "made": LEDGER.made}
        summary["created"] = sorted(LEDGER.created)
        Path(path).write_text(json.dumps(summary))
