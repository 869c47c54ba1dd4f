"""Each person's data key (apps/common/personal.py): kept here, wrapped under the customer service's keyring.

personal_data_keys holds one row per subject (a customer's id, or a guest's ``cs_...`` session id): the
key id, and the key sealed under the customer keyring (bound to its subject, so a wrapped key copied to
another row does not open; the key rotation re-wraps them like any sealed column). Destroying a key
(GDPR erasure: ``destroy_data_key``, called by the erasure in the same transaction) drops the wrapped key
and keeps the row as a tombstone with ``destroyed_at``: no key is ever created again for that subject, and
every envelope sealed with the old one, in Kafka or anywhere, stays unreadable.

Other services reach the keys through the service-only routes below (role service, scope
``customer:data-keys``): POST creates the key on first use (a producer), GET only reads (a consumer);
both answer 410 for a destroyed key and GET 404 for one never created.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Final, TypeAlias

import msgspec
import sqlalchemy as sa
from litestar import Controller, Response, get, post
from litestar.di import NamedDependency
from litestar.exceptions import ClientException
from litestar.params import PathParameter
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from apps.common.auth import allow
from apps.common.crypto import CryptoError
from apps.common.errors import InvalidField, NotFound
from apps.common.models import timestamp
from apps.common.personal import (
    SUBJECT_PATTERN,
    DataKey,
    KeyDestroyed,
    check_subject,
    new_data_key,
    unwrap_data_key,
    wrap_data_key,
)
from apps.customer.models import Base
from apps.customer.sealed import open_value, seal_value

__all__ = ["DataKeyController", "DataKeyOut", "PersonalDataKey", "data_key", "destroy_data_key"]

TABLE: Final = "personal_data_keys"
# A customer's id or a guest's cs_... id (apps/common/personal.py); the pattern is checked and documented.
Subject: TypeAlias = Annotated[
    str, PathParameter(pattern=SUBJECT_PATTERN, max_length=64, description="a customer's id or a guest's cs_ id")
]
SCOPE: Final = "customer:data-keys"
_TOMBSTONE_KID: Final = "destroyed"  # the kid of a tombstone written where no key was ever made


class PersonalDataKey(Base):
    __tablename__ = TABLE

    subject_id: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    kid: Mapped[str] = mapped_column(sa.String(40))
    wrapped_key: Mapped[str | None] = mapped_column(sa.Text)  # NULL once destroyed
    created_at: Mapped[dt.datetime] = timestamp()
    destroyed_at: Mapped[dt.datetime | None] = mapped_column(sa.DateTime(timezone=True))


class DataKeyOut(msgspec.Struct, kw_only=True):
    subject: str
    kid: str
    key: str  # base64 of the 32-byte AES key


def _wrap(key: DataKey) -> str | None:
    return seal_value(TABLE, "wrapped_key", key.subject, wrap_data_key(key))


async def data_key(session: AsyncSession, subject: str, *, create: bool) -> DataKey:
    """The subject's key; created first when ``create`` (a concurrent creation wins, and is the one read).
    Raises KeyDestroyed for a destroyed key, NotFound for none when not ``create``."""
    check_subject(subject)
    if create:
        fresh = new_data_key(subject)
        inserted = await session.scalar(
            insert(PersonalDataKey)
            .values(subject_id=subject, kid=fresh.kid, wrapped_key=_wrap(fresh), created_at=dt.datetime.now(dt.UTC))
            .on_conflict_do_nothing(index_elements=["subject_id"])
            .returning(PersonalDataKey.kid)
        )
        if inserted is not None:
            return fresh  # ours is the key: no read back (a new customer's registration, a guest's checkout)
    row = (
        await session.execute(
            sa.select(PersonalDataKey.kid, PersonalDataKey.wrapped_key).where(PersonalDataKey.subject_id == subject)
        )
    ).one_or_none()
    if row is None:
        raise NotFound(f"no data key for {subject}")
    if row.wrapped_key is None:
        raise KeyDestroyed(f"the data key of {subject} was destroyed")
    clear = open_value(TABLE, "wrapped_key", subject, row.wrapped_key)
    assert clear is not None
    return unwrap_data_key(subject, row.kid, clear)


async def data_key_or_none(session: AsyncSession, subject: str) -> DataKey | None:
    """The subject's key, created on first use; None once destroyed (the caller publishes ERASED)."""
    try:
        return await data_key(session, subject, create=True)
    except KeyDestroyed:
        return None


async def destroy_data_key(session: AsyncSession, subject_id: str) -> bool:
    """Crypto-shred the subject's personal data in events: the key goes, a tombstone stays so no new key
    is made for the subject. In the caller's transaction (it commits); True if a key was destroyed now.

    One upsert, not an UPDATE then an INSERT .. DO NOTHING: a key whose creation is in flight (a customer
    registered before customer_0007 gets one at their first checkout, without their row's lock) is not seen
    by an UPDATE's snapshot, and DO NOTHING waited for that creation and then left the key live. ON CONFLICT
    DO UPDATE waits for it too, then destroys the committed row."""
    check_subject(subject_id)
    now = dt.datetime.now(dt.UTC)
    statement = insert(PersonalDataKey).values(
        subject_id=subject_id, kid=_TOMBSTONE_KID, wrapped_key=None, created_at=now, destroyed_at=now
    )
    kid = await session.scalar(
        statement.on_conflict_do_update(
            index_elements=["subject_id"],
            set_={"wrapped_key": None, "destroyed_at": now},
            where=PersonalDataKey.destroyed_at.is_(None),
        ).returning(PersonalDataKey.kid)
    )
    # No row: destroyed before. The tombstone's own kid: there was no key. Another kid: a key, destroyed now.
    return kid is not None and kid != _TOMBSTONE_KID


def _subject(subject: str) -> str:
    try:
        return check_subject(subject)
    except CryptoError as error:
        raise InvalidField("subject", str(error)) from None


async def _answer(session: AsyncSession, subject: str, *, create: bool) -> Response[DataKeyOut]:
    try:
        key = await data_key(session, _subject(subject), create=create)
    except KeyDestroyed:
        raise ClientException(status_code=410, detail="the data key was destroyed (erased)") from None
    if create:
        await session.commit()
    body = DataKeyOut(subject=key.subject, kid=key.kid, key=wrap_data_key(key))
    return Response(body, headers={"Cache-Control": "no-store"})


class DataKeyController(Controller):
    """Service-only: a person's data key, for producers and consumers of events with personal fields."""

    path = "/api/internal/data-keys"
    tags = ["internal"]
    guards = [allow(service=SCOPE)]  # service tokens with this scope (and admin); nobody else

    @get("/{subject:str}")
    async def get_data_key(self, subject: Subject, db_session: NamedDependency[AsyncSession]) -> Response[DataKeyOut]:
        """The subject's data key; 404 if none was ever made, 410 once destroyed."""
        return await _answer(db_session, subject, create=False)

    @post("/{subject:str}", status_code=200)
    async def ensure_data_key(
        self, subject: Subject, db_session: NamedDependency[AsyncSession]
    ) -> Response[DataKeyOut]:
        """The subject's data key, made on first use; 410 once destroyed."""
        return await _answer(db_session, subject, create=True)
