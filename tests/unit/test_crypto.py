"""The envelope, the associated data that binds it to its row, the blind index and the key file
(apps/common/crypto.py): pure functions and a key file in a temporary folder."""

from __future__ import annotations

import base64
import os
import time
from pathlib import Path

import pytest

from apps.common import crypto
from apps.common.crypto import (
    CryptoError,
    Keyring,
    KeyringFile,
    associated_data,
    blind_index,
    generate_keyring,
    key_id,
    open_envelope,
    seal,
)

ROW = "01a21629-ae02-768e-9279-e82c148f224a"
AAD = associated_data("customer", "customers", "email", ROW)


def test_a_sealed_value_opens_to_itself_and_shows_nothing_of_it() -> None:
    ring = generate_keyring()
    envelope = seal(ring, "ada@example.com", AAD)
    version, kid, nonce, ciphertext = envelope.split(":")
    assert (version, kid) == ("v1", ring.current)
    assert len(base64.b64decode(nonce)) == 12
    assert len(base64.b64decode(ciphertext)) == len("ada@example.com") + 16  # GCM tag
    assert "ada" not in envelope
    assert open_envelope(ring, envelope, AAD) == "ada@example.com"


def test_the_same_value_seals_differently_each_time() -> None:
    ring = generate_keyring()
    assert seal(ring, "same", AAD) != seal(ring, "same", AAD)


@pytest.mark.parametrize(
    "elsewhere",
    [
        associated_data("customer", "customers", "email", "01a21629-ae02-768e-9279-e82c148f2240"),  # another row
        associated_data("customer", "customers", "phone", ROW),  # another column
        associated_data("customer", "customer_addresses", "email", ROW),  # another table
        associated_data("order", "customers", "email", ROW),  # another service
    ],
)
def test_a_value_moved_to_another_place_does_not_open(elsewhere: bytes) -> None:
    ring = generate_keyring()
    envelope = seal(ring, "ada@example.com", AAD)
    with pytest.raises(CryptoError, match="tampered or moved") as raised:
        open_envelope(ring, envelope, elsewhere)
    assert "ada" not in str(raised.value)


def test_a_tampered_ciphertext_does_not_open() -> None:
    ring = generate_keyring()
    version, kid, nonce, ciphertext = seal(ring, "ada@example.com", AAD).split(":")
    raw = bytearray(base64.b64decode(ciphertext))
    raw[0] ^= 1
    with pytest.raises(CryptoError):
        open_envelope(ring, f"{version}:{kid}:{nonce}:{base64.b64encode(raw).decode()}", AAD)


def test_an_unknown_key_or_a_value_in_clear_does_not_open() -> None:
    ring, other = generate_keyring(), generate_keyring()
    with pytest.raises(CryptoError, match="unknown key id"):
        open_envelope(ring, seal(other, "x", AAD), AAD)
    with pytest.raises(CryptoError, match="not an envelope"):
        open_envelope(ring, "ada@example.com", AAD)


@pytest.mark.parametrize("value", ["ada@example.com", "v1:k1:abc", "v2:k1:a:b", "v1:bad kid:a:b", ""])
def test_key_id_is_none_for_what_is_not_an_envelope(value: str) -> None:
    assert key_id(value) is None


def test_after_a_new_current_key_old_values_still_open_and_new_ones_use_it() -> None:
    ring = generate_keyring()
    old = seal(ring, "ada@example.com", AAD)
    rotated = ring.with_new_current("k2")
    assert rotated.current == "k2" and set(rotated.keys) == {ring.current, "k2"}
    assert open_envelope(rotated, old, AAD) == "ada@example.com"
    assert key_id(seal(rotated, "x", AAD)) == "k2"
    with pytest.raises(CryptoError, match="current"):
        rotated.without("k2")
    assert set(rotated.without(ring.current).keys) == {"k2"}
    with pytest.raises(CryptoError, match="no key"):
        rotated.without("k9")


def test_the_blind_index_is_stable_keyed_and_does_not_change_with_the_data_key() -> None:
    ring, other = generate_keyring(), generate_keyring()
    assert blind_index(ring, "ada@example.com") == blind_index(ring, "ada@example.com")
    assert len(blind_index(ring, "ada@example.com")) == 32
    assert blind_index(ring, "ada@example.com") != blind_index(ring, "bob@example.com")
    assert blind_index(ring, "ada@example.com") != blind_index(other, "ada@example.com")
    assert blind_index(ring.with_new_current(), "ada@example.com") == blind_index(ring, "ada@example.com")


def test_the_keyring_survives_json_and_a_broken_file_is_refused() -> None:
    ring = generate_keyring().with_new_current("k2")
    assert Keyring.from_json(ring.to_json()) == ring
    for text in ["{}", "not json", '{"current": "k9", "keys": {}, "index_key": ""}']:
        with pytest.raises(CryptoError):
            Keyring.from_json(text)


def test_a_key_file_is_created_once_private_and_reread_when_it_changes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "keys" / "customer.json"
    first, second = KeyringFile(path, create=True), KeyringFile(path, create=True)
    ring = first.ring()
    assert second.ring() == ring  # the second reader found the first one's file
    assert path.stat().st_mode & 0o777 == 0o600
    envelope = first.seal("ada@example.com", AAD)

    monkeypatch.setattr(crypto, "RELOAD_INTERVAL_S", 0.0)
    first.write(ring.with_new_current("k2"))
    os.utime(path, ns=(time.time_ns(), time.time_ns() + 1_000_000))  # a distinct mtime on coarse clocks
    assert key_id(second.seal("x", AAD)) == "k2"  # a running reader picks up the rotation
    assert second.open(envelope, AAD) == "ada@example.com"  # and still opens the old key's values


def test_a_configured_key_file_that_is_missing_is_an_error_not_a_new_key(tmp_path: Path) -> None:
    with pytest.raises(CryptoError, match="no key file"):
        KeyringFile(tmp_path / "absent.json", create=False).ring()


def test_the_key_file_comes_from_the_environment_or_the_local_stack(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CUSTOMER_KEYRING_FILE", str(tmp_path / "k.json"))
    assert crypto.keyring_path("customer") == (tmp_path / "k.json", False)
    monkeypatch.delenv("CUSTOMER_KEYRING_FILE")
    monkeypatch.setenv("STACK_STATE_DIR", str(tmp_path))
    assert crypto.keyring_path("customer") == (tmp_path / "keys" / "customer.json", True)
