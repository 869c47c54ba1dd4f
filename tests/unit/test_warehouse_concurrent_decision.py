"""The warehouse's "decided concurrently" retry is contention: the consumer stays ready through it.

ReservationService.reserve raises when its reservation insert skipped an order that a second consumer
decided at the same moment; the retried batch sees that decision and leaves the order alone, so the retry
is expected to pass at once. It raised a plain RetryableError, which made GET /ready answer 503 for the
retry's 0.2-0.4 s (R, session 31); it is now a ContentionError, which the runtime counts as it counts a
deadlock (outbox.runtime.CONTENTION_RETRIES_READY). Pure logic: the decision statements are replaced, and
the runtime is test_consumer_readiness' (nothing connects).
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest

from apps.warehouse import services
from apps.warehouse.rules import Line
from apps.warehouse.services import ReservationRequest, ReservationService
from outbox.errors import ContentionError, RetryableError
from outbox.retry import contended, is_retryable, waits_for
from outbox.runtime import CONTENTION_RETRIES_READY
from tests.unit.test_consumer_readiness import apply_one, runtime


def _decided_concurrently(monkeypatch: pytest.MonkeyPatch, skipped: list[int]) -> ReservationService:
    """A service whose decision insert skips ``skipped[0]`` orders, then ``skipped[1]``, ... (a second
    consumer decided them first); no database."""

    async def lock_and_look(*_: Any) -> tuple[list[Any], set[uuid.UUID]]:
        return [], set()

    async def write_decisions(_: Any, reservations: list[dict[str, Any]], *__: Any) -> int:
        return len(reservations) - skipped.pop(0)

    monkeypatch.setattr(services, "lock_and_look", lock_and_look)
    monkeypatch.setattr(services, "write_decisions", write_decisions)
    return ReservationService(None)  # type: ignore[arg-type]  # the two statements above are all it sends


def _request() -> ReservationRequest:
    return ReservationRequest(uuid.uuid4(), [Line(uuid.uuid4(), 1)])


def test_an_order_decided_concurrently_is_a_contention_retry(monkeypatch: pytest.MonkeyPatch) -> None:
    service = _decided_concurrently(monkeypatch, [1])
    with pytest.raises(ContentionError) as raised:
        asyncio.run(service.reserve([_request()]))
    error = raised.value
    assert isinstance(error, RetryableError) and is_retryable(error)
    assert contended(error) and waits_for(error) == "database"


def test_the_consumer_stays_ready_while_the_batch_is_retried(monkeypatch: pytest.MonkeyPatch) -> None:
    """The runtime's retry loop around the real reserve(): skipped once, then the retry decides nothing new
    (the other consumer's decision is seen): ready, database up, no waiting_for, throughout."""
    service = _decided_concurrently(monkeypatch, [1, 0])
    rt, seen = runtime([])
    attempts: list[int] = []

    async def apply(*_: Any, **__: Any) -> None:
        attempts.append(await service.reserve([_request()]))

    rt.transaction.apply = apply  # type: ignore[method-assign]
    apply_one(rt)
    assert attempts == [1]  # the second attempt applied; the first raised
    assert len(seen) == 1
    [(ready, body)] = seen
    assert ready is True and body["database"] is True and "waiting_for" not in body, body


def test_a_decision_lost_again_and_again_makes_the_consumer_not_ready() -> None:
    """Past CONTENTION_RETRIES_READY in a row it is no moment's collision: not ready, and /ready says why."""
    failures = [ContentionError("an order of this batch was decided concurrently")] * (CONTENTION_RETRIES_READY + 1)
    rt, seen = runtime(list(failures))
    apply_one(rt)
    assert [ready for ready, _ in seen] == [True] * CONTENTION_RETRIES_READY + [False]
    body = seen[-1][1]
    assert body["database"] is True and body["waiting_for"] == "database"
    assert "decided concurrently" in str(body["error"])
