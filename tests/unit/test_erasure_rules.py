"""GDPR erasure's pure rules (apps/customer/erasure.py) and who listens for customer.erased."""

from __future__ import annotations

import datetime as dt
import importlib
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from apps.common.crypto import associated_data, blind_index, generate_keyring, open_envelope
from apps.customer import sealed
from apps.customer.erasure import (
    ADDRESS_PLACEHOLDER,
    ERASED,
    anonymise_customer,
    anonymised_address_lines,
    anonymised_email,
)
from apps.customer.models import Customer, CustomerAddress
from apps.customer.rules import check_email

# Every consumer group that keeps a copy of a person's data, by module (see docs/operations.md).
ERASING_MODULES = ("apps.order.references", "apps.returns.consumers", "apps.checkout.consumers")


@pytest.fixture
def keyring_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """The customer service's key file: a fresh one of this test's own."""
    path = tmp_path / "customer.json"
    path.write_text(generate_keyring().to_json())
    monkeypatch.setenv("CUSTOMER_KEYRING_FILE", str(path))
    sealed.keyring.cache_clear()
    yield path
    sealed.keyring.cache_clear()


def test_the_anonymised_email_is_the_seeds_a_valid_address_and_unique_per_customer() -> None:
    one, other = uuid.uuid4(), uuid.uuid4()
    assert anonymised_email(one) == f"anonymized_{one}@deleted.com"
    assert check_email(anonymised_email(one)) == anonymised_email(one)  # lower-case already: the index holds
    assert anonymised_email(one) != anonymised_email(other)


def test_every_address_line_is_cleared_and_the_not_null_ones_hold_the_placeholder() -> None:
    lines = anonymised_address_lines()
    assert set(lines) == set(sealed.ADDRESS_COLUMNS)
    not_null = {
        column.name
        for column in CustomerAddress.__table__.columns
        if not column.nullable and column.name in sealed.ADDRESS_COLUMNS
    }
    assert not_null == {"address_line1", "city"}
    assert {c: v for c, v in lines.items() if v is not None} == dict.fromkeys(not_null, ADDRESS_PLACEHOLDER)


def test_a_customer_row_is_anonymised_as_the_seed_says_and_its_email_index_follows(keyring_file: Path) -> None:
    customer = Customer(id=uuid.uuid4(), first_name="Ada", last_name="Lovelace", gender="f", customer_number="C-1")
    sealed.seal_email(customer, "ada@example.com")
    sealed.seal_phone(customer, "+442079460958")
    customer.date_of_birth_sealed = sealed.seal_value("customers", "date_of_birth", customer.id, "1815-12-10")
    customer.metadata_ = {"note": "prefers post"}
    customer.marketing_consent = customer.email_verified = True
    now = dt.datetime(2026, 11, 26, 7, 0, tzinfo=dt.UTC)

    anonymise_customer(customer, now)

    ring = sealed.keyring().ring()
    aad = associated_data("customer", "customers", "email", customer.id)
    assert open_envelope(ring, customer.email_sealed, aad) == anonymised_email(customer.id)
    assert customer.email_index == blind_index(ring, anonymised_email(customer.id))
    assert (customer.first_name, customer.last_name) == ("Deleted", "User")
    assert customer.phone_sealed is None and customer.date_of_birth_sealed is None
    assert customer.gender is None and customer.customer_number is None and customer.metadata_ == {}
    assert not (customer.marketing_consent or customer.email_verified or customer.phone_verified)
    assert (customer.status, customer.deleted_at, customer.updated_at) == (ERASED, now, now)


@pytest.mark.parametrize("module_name", ERASING_MODULES)
def test_every_group_holding_personal_copies_handles_customer_erased(module_name: str) -> None:
    group = importlib.import_module(module_name).group
    assert group.handles("customer.erased")
    assert "commerce.customer" in group.topics
