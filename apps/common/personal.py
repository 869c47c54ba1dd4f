"""Personal data in events, sealed per person: crypto-shredding for what Kafka keeps for a year.

Every person (a customer, or a guest's checkout subject ``cs_...``) has a data key of their own: a random
AES-256 key the customer service keeps wrapped under its keyring (table personal_data_keys,
apps/customer/data_keys.py). An event field that names or locates a person is an envelope
``pd1:<subject>:<kid>:<nonce>:<ciphertext>`` sealed with that key; its associated data names the subject
and the field (``shipping_address.city``), so an envelope moved to another field or person fails to
open. Destroying the person's key (GDPR erasure) makes every copy unreadable at once: in Kafka, in dead
letters, in any event store. A consumer that meets such an envelope treats the field as erased.

The envelope names its subject, so a consumer knows whose key to ask for without reading anything else.
"""

from __future__ import annotations

import base64
import binascii
import re
import secrets
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Final, TypeVar

import msgspec
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from apps.common.crypto import CryptoError

__all__ = [
    "ADDRESS_FIELDS",
    "ERASED",
    "PD_VERSION",
    "SUBJECT_PATTERN",
    "DataKey",
    "KeyDestroyed",
    "check_subject",
    "envelope_subject",
    "is_personal_envelope",
    "new_data_key",
    "open_fields",
    "open_personal",
    "opened_struct",
    "seal_fields",
    "seal_personal",
    "sealed_struct",
    "subjects_of",
    "unwrap_data_key",
    "wrap_data_key",
]

S = TypeVar("S", bound=msgspec.Struct)

PD_VERSION: Final = "pd1"
# What a consumer keeps where a field's key is gone: the field existed, its value is erased.
ERASED: Final = "[erased]"
# The lines of a postal address that name or locate a person (its country stays clear, everywhere).
ADDRESS_FIELDS: Final = (
    "first_name",
    "last_name",
    "company",
    "address_line1",
    "address_line2",
    "city",
    "state",
    "postal_code",
    "phone",
)
_KEY_BYTES: Final = 32
_NONCE_BYTES: Final = 12
# Customer ids (UUIDs) and guests' session ids (cs_ + hex) both fit; ':' never does (the separator).
SUBJECT_PATTERN: Final = r"^[A-Za-z0-9_-]{1,64}$"
_SUBJECT: Final = re.compile(SUBJECT_PATTERN)
_KID: Final = re.compile(r"^[A-Za-z0-9_-]{1,40}$")


class KeyDestroyed(CryptoError):
    """The person's data key was destroyed (erasure) or never existed: their values cannot be opened."""


@dataclass(frozen=True)
class DataKey:
    subject: str
    kid: str
    key: bytes = b""

    def __repr__(self) -> str:  # never a key in a log or a traceback
        return f"DataKey(subject={self.subject!r}, kid={self.kid!r})"


def check_subject(subject: str) -> str:
    if not _SUBJECT.fullmatch(subject):  # match() let "id\n" through (`$` matches before it)
        raise CryptoError("a data-key subject is 1-64 letters, digits, '_' or '-'")
    return subject


def new_data_key(subject: str) -> DataKey:
    """A fresh random key for ``subject`` (the customer service stores it wrapped)."""
    kid = "d" + secrets.token_hex(6)
    return DataKey(check_subject(subject), kid, AESGCM.generate_key(bit_length=256))


def _aad(subject: str, field: str) -> bytes:
    return f"{PD_VERSION}/{subject}/{field}".encode()


def seal_personal(key: DataKey, field: str, value: str) -> str:
    nonce = secrets.token_bytes(_NONCE_BYTES)
    ciphertext = AESGCM(key.key).encrypt(nonce, value.encode(), _aad(key.subject, field))
    return f"{PD_VERSION}:{key.subject}:{key.kid}:{_b64(nonce)}:{_b64(ciphertext)}"


def envelope_subject(value: str) -> tuple[str, str] | None:
    """(subject, key id) of a personal-data envelope; None for anything else (a clear value of an older
    event version)."""
    parts = value.split(":")
    if len(parts) != 5 or parts[0] != PD_VERSION or not _SUBJECT.match(parts[1]) or not _KID.match(parts[2]):
        return None
    return parts[1], parts[2]


def is_personal_envelope(value: object) -> bool:
    return isinstance(value, str) and envelope_subject(value) is not None


def open_personal(key: DataKey | None, field: str, value: str) -> str:
    """The clear value; a value that is no envelope is returned as it is (events published before
    fields were sealed); ERASED when the key is gone (``key`` None). Raises CryptoError when the key
    does not open it (tampered, moved, another person's)."""
    found = envelope_subject(value)
    if found is None:
        return value
    if key is None:
        return ERASED
    subject, kid = found
    if (subject, kid) != (key.subject, key.kid):
        raise CryptoError(f"an envelope of {subject}/{kid} offered to the key of {key.subject}/{key.kid}")
    _, _, _, nonce, ciphertext = value.split(":")
    try:
        return (
            AESGCM(key.key)
            .decrypt(base64.b64decode(nonce), base64.b64decode(ciphertext), _aad(subject, field))
            .decode()
        )
    except (InvalidTag, ValueError, binascii.Error):
        raise CryptoError(f"a value of {subject}/{field} does not open (tampered or moved)") from None


def seal_fields(key: DataKey, prefix: str, values: Mapping[str, object], fields: Iterable[str]) -> dict[str, object]:
    """``values`` with each of ``fields`` that holds a string sealed (field name ``<prefix><name>``)."""
    return _each_string(values, fields, lambda name, value: seal_personal(key, prefix + name, value))


def open_fields(
    key: DataKey | None, prefix: str, values: Mapping[str, object], fields: Iterable[str]
) -> dict[str, object]:
    """The reverse of seal_fields: ERASED for each sealed field when ``key`` is None (destroyed)."""
    return _each_string(values, fields, lambda name, value: open_personal(key, prefix + name, value))


def _each_string(
    values: Mapping[str, object], fields: Iterable[str], change: Callable[[str, str], str]
) -> dict[str, object]:
    changed = dict(values)
    for name in fields:
        value = changed.get(name)
        if isinstance(value, str):
            changed[name] = change(name, value)
    return changed


def sealed_struct(struct: S, key: DataKey | None, fields: Iterable[str], prefix: str = "") -> S:
    """``struct`` with its personal ``fields`` sealed; ERASED in each when the key is gone (destroyed)."""
    names = tuple(fields)
    values = {name: getattr(struct, name) for name in names}
    changed: dict[str, object]
    if key is None:
        changed = {name: ERASED for name, value in values.items() if isinstance(value, str)}
    else:
        changed = seal_fields(key, prefix, values, names)
    return msgspec.structs.replace(struct, **changed)


def opened_struct(struct: S, key: DataKey | None, fields: Iterable[str], prefix: str = "") -> S:
    """``struct`` with its personal ``fields`` opened (ERASED in each when ``key`` is None)."""
    names = tuple(fields)
    return msgspec.structs.replace(struct, **open_fields(key, prefix, {n: getattr(struct, n) for n in names}, names))


def subjects_of(values: Iterable[object]) -> set[str]:
    """The subjects whose keys the envelopes among ``values`` need."""
    return {found[0] for value in values if isinstance(value, str) and (found := envelope_subject(value))}


def wrap_data_key(key: DataKey) -> str:
    """The key's bytes as text, for the customer service to seal under its keyring (never stored clear)."""
    return _b64(key.key)


def unwrap_data_key(subject: str, kid: str, text: str) -> DataKey:
    try:
        raw = base64.b64decode(text, validate=True)
    except (ValueError, binascii.Error):
        raise CryptoError("a data key that is not base64") from None
    if len(raw) != _KEY_BYTES:
        raise CryptoError(f"a data key is {_KEY_BYTES} bytes")
    return DataKey(check_subject(subject), kid, raw)


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()
