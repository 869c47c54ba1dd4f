"""Personal data sealed in the application: AES-GCM envelopes with a key id, and a keyed blind index.

An envelope is ``v1:<kid>:<nonce>:<ciphertext>`` (nonce and ciphertext+tag in standard base64), stored
in the value's own text column. The associated data names the service, table, column and row, so a
value copied to another row or column fails to open. Look-ups of a sealed value (a customer's email)
go through ``blind_index``: an HMAC-SHA256 of the normalised value under its own key.

Keys live in a JSON key file outside the repository (``<SERVICE>_KEYRING_FILE``); when that variable is
unset (local stack, CI) the file is ``.stack/keys/<service>.json``, created on first use. The file holds
every key id still needed to open a value (``keys``), the one new values are sealed with (``current``),
and the blind-index key. A process re-reads the file when it changes (checked at most once a second)
and at once when it meets an unknown key id, so a rotation reaches running services without a restart.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hashlib
import hmac
import json
import os
import re
import secrets
import tempfile
import threading
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Final

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

__all__ = [
    "CryptoError",
    "Keyring",
    "KeyringFile",
    "associated_data",
    "blind_index",
    "generate_keyring",
    "key_id",
    "keyring_path",
    "open_envelope",
    "seal",
]

VERSION: Final = "v1"
_KEY_BYTES: Final = 32  # AES-256
_NONCE_BYTES: Final = 12  # random per value: 2**32 values per key stay far inside GCM's bounds
_KID: Final = re.compile(r"^[A-Za-z0-9_-]{1,40}$")
RELOAD_INTERVAL_S: Final = 1.0
_REPO: Final = Path(__file__).resolve().parent.parent.parent


class CryptoError(Exception):
    """A value that cannot be opened (unknown key, tampered, moved to another row) or a bad key file.

    The message never carries the value or a key."""


@dataclass(frozen=True)
class Keyring:
    current: str
    keys: dict[str, bytes]
    index_key: bytes

    def with_new_current(self, kid: str | None = None) -> Keyring:
        """A new random key becomes current; the others stay to open what they sealed."""
        new_kid = kid or "k" + dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S%f")
        _check_kid(new_kid)
        if new_kid in self.keys:
            raise CryptoError(f"key id {new_kid} exists already")
        return replace(self, current=new_kid, keys={**self.keys, new_kid: AESGCM.generate_key(bit_length=256)})

    def without(self, kid: str) -> Keyring:
        if kid == self.current:
            raise CryptoError("the current key cannot be removed")
        if kid not in self.keys:
            raise CryptoError(f"no key {kid} in the keyring")
        return replace(self, keys={k: v for k, v in self.keys.items() if k != kid})

    def to_json(self) -> str:
        return json.dumps(
            {
                "current": self.current,
                "keys": {kid: _b64(key) for kid, key in self.keys.items()},
                "index_key": _b64(self.index_key),
            },
            indent=2,
        )

    @classmethod
    def from_json(cls, text: str) -> Keyring:
        try:
            raw = json.loads(text)
            keys = {str(kid): base64.b64decode(key, validate=True) for kid, key in raw["keys"].items()}
            ring = cls(current=str(raw["current"]), keys=keys, index_key=base64.b64decode(raw["index_key"]))
        except (ValueError, KeyError, TypeError, AttributeError, binascii.Error):
            raise CryptoError("the key file is not a keyring") from None
        for kid, key in keys.items():
            _check_kid(kid)
            if len(key) != _KEY_BYTES:
                raise CryptoError(f"key {kid} is not {_KEY_BYTES} bytes")
        if ring.current not in keys or len(ring.index_key) < _KEY_BYTES:
            raise CryptoError("the key file names no usable current key or index key")
        return ring


def generate_keyring() -> Keyring:
    empty = Keyring(current="", keys={}, index_key=secrets.token_bytes(_KEY_BYTES))
    return empty.with_new_current()


def associated_data(service: str, table: str, column: str, row_id: object) -> bytes:
    """What a sealed value is bound to: its place. Opening it anywhere else fails."""
    return f"{service}/{table}/{column}/{row_id}".encode()


def seal(ring: Keyring, plaintext: str, aad: bytes) -> str:
    nonce = secrets.token_bytes(_NONCE_BYTES)
    ciphertext = AESGCM(ring.keys[ring.current]).encrypt(nonce, plaintext.encode(), aad)
    return f"{VERSION}:{ring.current}:{_b64(nonce)}:{_b64(ciphertext)}"


def key_id(value: str) -> str | None:
    """The key id of an envelope; None for anything else (a value stored before encryption)."""
    parts = value.split(":")
    if len(parts) != 4 or parts[0] != VERSION or not _KID.match(parts[1]):
        return None
    return parts[1]


def open_envelope(ring: Keyring, envelope: str, aad: bytes) -> str:
    kid = key_id(envelope)
    if kid is None:
        raise CryptoError("not an envelope")
    key = ring.keys.get(kid)
    if key is None:
        raise CryptoError(f"unknown key id {kid}")
    _, _, nonce, ciphertext = envelope.split(":")
    try:
        return AESGCM(key).decrypt(base64.b64decode(nonce), base64.b64decode(ciphertext), aad).decode()
    except (InvalidTag, ValueError, binascii.Error):
        raise CryptoError(f"a value under key {kid} does not open here (tampered or moved)") from None


def blind_index(ring: Keyring, normalised: str) -> bytes:
    """HMAC-SHA256 of an already normalised value: equal values match, the value itself stays unknown."""
    return hmac.new(ring.index_key, normalised.encode(), hashlib.sha256).digest()


def keyring_path(service: str) -> tuple[Path, bool]:
    """The service's key file and whether it may be created here (only the local default may)."""
    configured = os.environ.get(f"{service.upper()}_KEYRING_FILE")
    if configured:
        return Path(configured), False
    state = Path(os.environ.get("STACK_STATE_DIR", _REPO / ".stack"))
    return state / "keys" / f"{service}.json", True


class KeyringFile:
    """A key file, re-read when it changes: what services and the rotation command share."""

    def __init__(self, path: Path, *, create: bool = False) -> None:
        self.path = path
        self.create = create
        self._ring: Keyring | None = None
        self._mtime_ns = -1
        self._checked_at = 0.0
        self._lock = threading.Lock()

    def ring(self) -> Keyring:
        now = time.monotonic()
        if self._ring is None or now - self._checked_at >= RELOAD_INTERVAL_S:
            self._reload_if_changed(now)
        assert self._ring is not None
        return self._ring

    def seal(self, plaintext: str, aad: bytes) -> str:
        return seal(self.ring(), plaintext, aad)

    def open(self, envelope: str, aad: bytes) -> str:
        ring = self.ring()
        kid = key_id(envelope)
        if kid is not None and kid not in ring.keys:
            # Sealed by a process that saw a rotation first: read the file now rather than in a second.
            self._reload_if_changed(time.monotonic(), force=True)
            ring = self.ring()
        return open_envelope(ring, envelope, aad)

    def blind_index(self, normalised: str) -> bytes:
        return blind_index(self.ring(), normalised)

    def write(self, ring: Keyring) -> None:
        """Replace the file atomically (readers see the old or the new keyring, never half of one)."""
        _private_temp_file(self.path.parent, ring.to_json()).replace(self.path)
        self._reload_if_changed(time.monotonic(), force=True)

    def _reload_if_changed(self, now: float, *, force: bool = False) -> None:
        with self._lock:
            self._checked_at = now
            try:
                mtime = self.path.stat().st_mtime_ns
            except FileNotFoundError:
                self._create_once()
                mtime = self.path.stat().st_mtime_ns
            if force or mtime != self._mtime_ns or self._ring is None:
                self._ring = Keyring.from_json(self.path.read_text())
                self._mtime_ns = mtime

    def _create_once(self) -> None:
        if not self.create:
            raise CryptoError(f"no key file at {self.path}")
        temp = _private_temp_file(self.path.parent, generate_keyring().to_json())
        try:
            self.path.hardlink_to(temp)  # fails if another process created it first: theirs wins
        except FileExistsError:
            pass
        finally:
            temp.unlink()


def _private_temp_file(folder: Path, content: str) -> Path:
    """A new file only its owner may read, in ``folder`` (so a rename into place is atomic)."""
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd, name = tempfile.mkstemp(dir=folder, suffix=".tmp")  # mode 0600
    with os.fdopen(fd, "w") as file:
        file.write(content)
    return Path(name)


def _check_kid(kid: str) -> None:
    if not _KID.match(kid):
        raise CryptoError("a key id is 1-40 letters, digits, '_' or '-'")


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()
