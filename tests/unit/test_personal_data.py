"""Per-person envelopes (apps/common/personal.py), the event helpers built on them and the JSON address
sealing of apps/common/sealed_tables.py: pure logic, no I/O."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import msgspec
import pytest

from apps.checkout.events import CheckoutAddress, personal_address
from apps.common.crypto import CryptoError, associated_data, generate_keyring, key_id, open_envelope
from apps.common.data_keys import DataKeys
from apps.common.errors import DependencyUnavailable
from apps.common.personal import (
    ADDRESS_FIELDS,
    ERASED,
    envelope_subject,
    is_personal_envelope,
    new_data_key,
    open_personal,
    opened_struct,
    seal_personal,
    sealed_struct,
    subjects_of,
    unwrap_data_key,
    wrap_data_key,
)
from apps.common.sealed_rows import SealedTable, resealed_row, seal_json_fields, stale_condition
from apps.common.service_client import ServiceClient
from apps.customer.events import PERSONAL_FIELDS, CustomerRegistered

SUBJECT = str(uuid.UUID(int=7))
ADDRESS = CheckoutAddress(
    first_name="Ada", last_name="Lovelace", address_line1="12 St James's Square", city="London", country="GB"
)


def test_a_sealed_value_carries_no_clear_text_and_is_bound_to_field_and_person() -> None:
    key = new_data_key(SUBJECT)
    envelope = seal_personal(key, "email", "ada@example.com")
    assert "ada" not in envelope and envelope.startswith(f"pd1:{SUBJECT}:{key.kid}:")
    assert envelope_subject(envelope) == (SUBJECT, key.kid) and is_personal_envelope(envelope)
    assert open_personal(key, "email", envelope) == "ada@example.com"
    with pytest.raises(CryptoError, match="does not open"):
        open_personal(key, "first_name", envelope)  # moved to another field
    other = new_data_key("cs_" + "a" * 32)
    with pytest.raises(CryptoError, match="offered to the key"):
        open_personal(other, "email", envelope)  # another person's key
    tampered = envelope[:-4] + ("AAAA" if not envelope.endswith("AAAA") else "BBBB")
    with pytest.raises(CryptoError):
        open_personal(key, "email", tampered)


def test_a_destroyed_key_reads_as_erased_and_clear_values_pass_through() -> None:
    envelope = seal_personal(new_data_key(SUBJECT), "email", "ada@example.com")
    assert open_personal(None, "email", envelope) == ERASED
    assert open_personal(None, "email", "ada@example.com") == "ada@example.com"  # a v1 event's clear value
    assert envelope_subject("v1:k1:abc:def") is None and not is_personal_envelope(None)


def test_subjects_must_be_safe_and_keys_round_trip_as_text() -> None:
    with pytest.raises(CryptoError):
        new_data_key("a:b")
    key = new_data_key("cs_" + "0" * 32)
    assert unwrap_data_key(key.subject, key.kid, wrap_data_key(key)) == key
    assert "key=" not in repr(key)  # a key never lands in a log
    with pytest.raises(CryptoError):
        unwrap_data_key(key.subject, key.kid, "c2hvcnQ=")


def test_an_event_struct_round_trips_and_erases_without_its_key() -> None:
    key = new_data_key(SUBJECT)
    event = CustomerRegistered(
        id=uuid.UUID(SUBJECT),
        email="ada@example.com",
        first_name="Ada",
        last_name="L",
        created_at=dt.datetime.now(dt.UTC),
    )
    sealed = sealed_struct(event, key, PERSONAL_FIELDS)
    assert all(is_personal_envelope(getattr(sealed, f)) for f in PERSONAL_FIELDS)
    assert subjects_of(getattr(sealed, f) for f in PERSONAL_FIELDS) == {SUBJECT}
    assert opened_struct(sealed, key, PERSONAL_FIELDS) == event
    assert {getattr(opened_struct(sealed, None, PERSONAL_FIELDS), f) for f in PERSONAL_FIELDS} == {ERASED}
    assert {getattr(sealed_struct(event, None, PERSONAL_FIELDS), f) for f in PERSONAL_FIELDS} == {ERASED}


def test_an_address_keeps_its_country_and_nulls_and_seals_every_line() -> None:
    key = new_data_key(SUBJECT)
    sealed = personal_address(ADDRESS, key, "shipping_address.", seal=True)
    assert sealed.country == "GB" and sealed.company is None
    assert all(is_personal_envelope(getattr(sealed, f)) for f in ADDRESS_FIELDS if getattr(ADDRESS, f) is not None)
    assert personal_address(sealed, key, "shipping_address.", seal=False) == ADDRESS
    with pytest.raises(CryptoError):
        personal_address(sealed, key, "billing_address.", seal=False)  # the shipping lines, as billing
    erased = personal_address(sealed, None, "shipping_address.", seal=False)
    assert erased.city == ERASED and erased.country == "GB"


def test_json_address_sealing_at_rest_is_bound_to_row_and_resealed_by_rotation() -> None:
    ring = generate_keyring()
    clear = msgspec.to_builtins(ADDRESS)
    sealed = seal_json_fields(ring, "order", "orders", "shipping_address", 1, clear, ADDRESS_FIELDS)
    assert isinstance(sealed, dict) and sealed["country"] == "GB" and key_id(sealed["city"]) == ring.current
    assert seal_json_fields(ring, "order", "orders", "shipping_address", 1, None, ADDRESS_FIELDS) is None
    rotated = ring.with_new_current("k2")
    spec = SealedTable("orders", ("shipping_address",), json_fields=ADDRESS_FIELDS)
    params = resealed_row(rotated, "order", spec, (1, sealed))
    again = msgspec.json.decode(str(params["shipping_address"]))
    assert key_id(again["city"]) == "k2" and again["country"] == "GB"
    assert "jsonb_each_text(shipping_address)" in stale_condition(spec)


def test_the_row_is_in_the_associated_data() -> None:
    ring = generate_keyring()
    sealed = seal_json_fields(ring, "order", "orders", "shipping_address", 1, {"city": "Paris"}, ("city",))
    assert isinstance(sealed, dict)
    with pytest.raises(CryptoError):
        open_envelope(ring, sealed["city"], associated_data("order", "orders", "shipping_address.city", 2))


class _FakeCustomers:
    """The customer service's answers to the data-key route, counted (a fake client: pure cache logic)."""

    name = "customer"

    def __init__(self, status: int, body: bytes = b"") -> None:
        self.status, self.body, self.calls = status, body, 0

    async def get(self, path: str) -> tuple[int, bytes]:
        self.calls += 1
        return self.status, self.body

    async def post_json(self, path: str, body: object) -> tuple[int, bytes]:
        return await self.get(path)

    def decode(self, status: int, content: bytes, type_: type[Any]) -> Any:
        return ServiceClient.decode(self, status, content, type_)  # type: ignore[arg-type]


async def test_data_keys_are_cached_briefly_and_an_erased_key_for_good() -> None:
    key = new_data_key(SUBJECT)
    body = msgspec.json.encode({"subject": key.subject, "kid": key.kid, "key": wrap_data_key(key)})
    found = _FakeCustomers(200, body)
    keys = DataKeys(found, ttl_s=60)  # type: ignore[arg-type]
    assert await keys.for_opening(SUBJECT) == key and await keys.for_opening(SUBJECT) == key
    assert found.calls == 1
    expired = DataKeys(found, ttl_s=0)  # type: ignore[arg-type]
    await expired.for_sealing(SUBJECT)
    await expired.for_sealing(SUBJECT)
    assert found.calls == 3
    for status in (404, 410):
        gone = _FakeCustomers(status)
        erased = DataKeys(gone, ttl_s=0)  # type: ignore[arg-type]
        assert await erased.for_opening(SUBJECT) is None and await erased.for_opening(SUBJECT) is None
        assert gone.calls == 1  # destroyed stays destroyed: never asked again
    with pytest.raises(DependencyUnavailable):
        await DataKeys(_FakeCustomers(503), ttl_s=60).for_sealing(SUBJECT)  # type: ignore[arg-type]


async def test_data_keys_keep_at_most_their_cap_expired_keys_first_then_the_longest_unused() -> None:
    key = new_data_key(SUBJECT)
    body = msgspec.json.encode({"subject": key.subject, "kid": key.kid, "key": wrap_data_key(key)})
    found, gone = _FakeCustomers(200, body), _FakeCustomers(410)
    keys = DataKeys(found, ttl_s=60, max_entries=10)  # type: ignore[arg-type]
    erased = DataKeys(gone, ttl_s=60, max_entries=10)  # type: ignore[arg-type]
    subjects = [str(uuid.UUID(int=n)) for n in range(100, 125)]
    for subject in subjects:
        await keys.for_opening(subject)
        await erased.for_opening(subject)
    assert len(keys._cache) <= 10 and len(erased._cache) <= 10
    # The most recent stay cached; the first were evicted and are asked again.
    calls = found.calls
    await keys.for_opening(subjects[-1])
    assert found.calls == calls
    await keys.for_opening(subjects[0])
    assert found.calls == calls + 1
    # A hit keeps an entry: the one used last is not the one evicted next.
    fresh = DataKeys(found, ttl_s=60, max_entries=3)  # type: ignore[arg-type]
    for subject in subjects[:3]:
        await fresh.for_opening(subject)
    await fresh.for_opening(subjects[0])
    await fresh.for_opening(subjects[3])
    assert (subjects[0], False) in fresh._cache and (subjects[1], False) not in fresh._cache
    # Expired keys go before the longest unused: two tombstones (never expire) asked first stay.
    mixed = DataKeys(gone, ttl_s=0, max_entries=3)  # type: ignore[arg-type]
    for subject in subjects[:2]:
        await mixed.for_opening(subject)
    mixed.customers = found  # type: ignore[assignment]
    for subject in subjects[2:4]:
        await mixed.for_opening(subject)
    assert set(mixed._cache) == {(subjects[0], False), (subjects[1], False)}
