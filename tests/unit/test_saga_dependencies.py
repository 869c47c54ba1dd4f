"""What the order saga's consumer makes of the customer service failing while it opens a checkout's sealed
addresses: a wait (retried), never a dead letter, unless the event itself names an impossible subject."""

from __future__ import annotations

import pytest

from apps.common.crypto import CryptoError
from apps.common.data_keys import DataKeys
from outbox.retry import is_retryable
from tests.unit.test_personal_data import SUBJECT, _FakeCustomers


@pytest.mark.parametrize("status", [500, 502, 503, 429, 401, 403])
async def test_a_failing_customer_service_makes_the_saga_retry_not_dead_letter_the_checkout(status: int) -> None:
    # As DependencyUnavailable it was not retryable: the runtime isolated the batch and dead-lettered the
    # checkout.completed, whose order was then never created (until someone redrove it).
    with pytest.raises(Exception) as raised:
        await DataKeys(_FakeCustomers(status), ttl_s=60).for_opening(SUBJECT)  # type: ignore[arg-type]
    assert is_retryable(raised.value), f"{status}: {raised.value!r}"


async def test_an_unreachable_customer_service_is_retried() -> None:
    class Refused(_FakeCustomers):
        async def get(self, path: str) -> tuple[int, bytes]:
            raise ConnectionRefusedError

    with pytest.raises(Exception) as raised:
        await DataKeys(Refused(0), ttl_s=60).for_opening(SUBJECT)  # type: ignore[arg-type]
    assert is_retryable(raised.value)


@pytest.mark.parametrize("subject", ["", "a/b", "x" * 65, "cs 1", "../customers", "cs_1\n"])
async def test_a_subject_no_key_can_have_is_the_events_fault_and_asks_nobody(subject: str) -> None:
    customers = _FakeCustomers(400)
    with pytest.raises(CryptoError) as raised:
        await DataKeys(customers, ttl_s=60).for_opening(subject)  # type: ignore[arg-type]
    assert not is_retryable(raised.value) and customers.calls == 0
