"""The sandbox provider's own books: authorizations, refunds, stored answers per idempotency key, and every
request received, in one SQLite file (it survives a restart; it shares nothing with payment_db).

Why SQLite and not PostgreSQL: the sandbox stands in for a third party, so it must not share the payment
service's database or need a role of its own in the stack's bootstrap; a file under .stack/ is enough for
one process. Each method is synchronous and short, and the app runs in one event loop, so no two
requests interleave inside a method: "look up the key, decide, store the answer" is atomic.
"""

from __future__ import annotations

import json
import sqlite3
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["Answer", "Ledger", "StoredAnswer"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS answers (
    key TEXT PRIMARY KEY, fingerprint TEXT NOT NULL, status_code INTEGER NOT NULL, body TEXT NOT NULL,
    ready_at REAL NOT NULL, created_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS transient_failures (key TEXT PRIMARY KEY, failures INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS firsts (name TEXT PRIMARY KEY, key TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS authorizations (
    id TEXT PRIMARY KEY, reference TEXT NOT NULL, idempotency_key TEXT NOT NULL, token TEXT NOT NULL,
    amount INTEGER NOT NULL, currency TEXT NOT NULL, status TEXT NOT NULL,
    amount_captured INTEGER NOT NULL DEFAULT 0, amount_refunded INTEGER NOT NULL DEFAULT 0,
    created_at REAL NOT NULL, updated_at REAL NOT NULL);
CREATE INDEX IF NOT EXISTS authorizations_reference ON authorizations (reference);
CREATE TABLE IF NOT EXISTS refunds (
    id TEXT PRIMARY KEY, authorization_id TEXT NOT NULL, amount INTEGER NOT NULL, created_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS requests (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, idempotency_key TEXT NOT NULL, path TEXT NOT NULL,
    status_code INTEGER NOT NULL, replayed INTEGER NOT NULL, at REAL NOT NULL);
CREATE INDEX IF NOT EXISTS requests_key ON requests (idempotency_key);
"""

# Money is held, or taken and not all given back ("refunded" only once all of it went back): what a
# cancelled order must not leave behind.
LIVE_STATUSES = ("authorized", "captured")


@dataclass(frozen=True, slots=True)
class Answer:
    """An HTTP answer: status and JSON body; ``ready_at`` (epoch s) is when it may be sent (tok_slow)."""

    status_code: int
    body: dict[str, Any]
    ready_at: float = 0.0


@dataclass(frozen=True, slots=True)
class StoredAnswer:
    answer: Answer
    fingerprint: str


def new_id(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:24]}"


class Ledger:
    """The sandbox's SQLite file. Open it at startup (no I/O at import), close it at shutdown."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self.db.row_factory = sqlite3.Row
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.executescript(_SCHEMA)

    def close(self) -> None:
        self.db.close()

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """One decision's writes together: a process killed between a refund's row and its stored answer
        left the refund made with no answer under its key, and the caller's retry made it again."""
        self.db.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        self.db.execute("COMMIT")

    # --- idempotency -------------------------------------------------------------------------------

    def stored(self, key: str) -> StoredAnswer | None:
        row = self.db.execute("SELECT * FROM answers WHERE key = ?", (key,)).fetchone()
        if row is None:
            return None
        answer = Answer(row["status_code"], json.loads(row["body"]), row["ready_at"])
        return StoredAnswer(answer, row["fingerprint"])

    def store(self, key: str, fingerprint: str, answer: Answer) -> None:
        self.db.execute(
            "INSERT INTO answers (key, fingerprint, status_code, body, ready_at, created_at) VALUES (?, ?, ?, ?, ?, ?)",
            (key, fingerprint, answer.status_code, json.dumps(answer.body), answer.ready_at, time.time()),
        )

    def count_transient_failure(self, key: str) -> int:
        """Record one more 5xx answered for this key; return how many there were before it."""
        row = self.db.execute("SELECT failures FROM transient_failures WHERE key = ?", (key,)).fetchone()
        before = int(row["failures"]) if row else 0
        self.db.execute(
            "INSERT INTO transient_failures (key, failures) VALUES (?, 1) "
            "ON CONFLICT (key) DO UPDATE SET failures = failures + 1",
            (key,),
        )
        return before

    def first_key(self, name: str, key: str) -> str:
        """The first key ever given under ``name`` (``key`` if this is the first)."""
        self.db.execute("INSERT INTO firsts (name, key) VALUES (?, ?) ON CONFLICT (name) DO NOTHING", (name, key))
        return str(self.db.execute("SELECT key FROM firsts WHERE name = ?", (name,)).fetchone()["key"])

    def was_called(self, key: str, path: str) -> bool:
        """Whether a call under ``key`` was made to ``path`` (the answer stored under a key is that call's)."""
        row = self.db.execute(
            "SELECT 1 FROM requests WHERE idempotency_key = ? AND path = ? LIMIT 1", (key, path)
        ).fetchone()
        return row is not None

    def log_request(self, key: str, path: str, status_code: int, *, replayed: bool) -> None:
        self.db.execute(
            "INSERT INTO requests (idempotency_key, path, status_code, replayed, at) VALUES (?, ?, ?, ?, ?)",
            (key, path, status_code, int(replayed), time.time()),
        )

    # --- authorizations and refunds ----------------------------------------------------------------

    def authorization(self, auth_id: str) -> dict[str, Any] | None:
        row = self.db.execute("SELECT * FROM authorizations WHERE id = ?", (auth_id,)).fetchone()
        return dict(row) if row else None

    def add_authorization(self, *, reference: str, key: str, token: str, amount: int, currency: str) -> dict[str, Any]:
        now = time.time()
        auth_id = new_id("auth")
        self.db.execute(
            "INSERT INTO authorizations (id, reference, idempotency_key, token, amount, currency, status, "
            "created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, 'authorized', ?, ?)",
            (auth_id, reference, key, token, amount, currency, now, now),
        )
        return self.authorization(auth_id) or {}

    def set_authorization(self, auth_id: str, **values: Any) -> dict[str, Any]:
        columns = ", ".join(f"{name} = ?" for name in values)
        self.db.execute(
            f"UPDATE authorizations SET {columns}, updated_at = ? WHERE id = ?",
            (*values.values(), time.time(), auth_id),
        )
        return self.authorization(auth_id) or {}

    def add_refund(self, auth_id: str, amount: int) -> str:
        refund_id = new_id("re")
        self.db.execute(
            "INSERT INTO refunds (id, authorization_id, amount, created_at) VALUES (?, ?, ?, ?)",
            (refund_id, auth_id, amount, time.time()),
        )
        return refund_id

    # --- what tests read -----------------------------------------------------------------------------

    def for_reference(self, reference: str) -> dict[str, Any]:
        """Every authorization made for a reference (the order id), how many are live, and every request
        the sandbox received with their keys (retries included)."""
        auths = [
            dict(row)
            for row in self.db.execute(
                "SELECT * FROM authorizations WHERE reference = ? ORDER BY created_at", (reference,)
            ).fetchall()
        ]
        for auth in auths:
            auth["refunds"] = [
                dict(r)
                for r in self.db.execute(
                    "SELECT id, amount, created_at FROM refunds WHERE authorization_id = ? ORDER BY created_at",
                    (auth["id"],),
                ).fetchall()
            ]
            auth["requests"] = self.requests_for_key(auth["idempotency_key"])
        live = sum(1 for a in auths if a["status"] in LIVE_STATUSES)
        return {"reference": reference, "authorizations": auths, "live_authorizations": live}

    def requests_for_key(self, key: str) -> list[dict[str, Any]]:
        rows = self.db.execute(
            "SELECT path, status_code, replayed, at FROM requests WHERE idempotency_key = ? ORDER BY seq", (key,)
        ).fetchall()
        return [dict(r) for r in rows]
