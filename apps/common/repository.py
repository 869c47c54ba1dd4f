"""What services share on top of advanced-alchemy's repositories: our wording for database errors, the live
(not soft-deleted) row by id or a 404, and a taken unique value as a 409 naming the field."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from advanced_alchemy.exceptions import DuplicateKeyError, ErrorMessages, wrap_sqlalchemy_exception
from advanced_alchemy.repository.typing import ModelT
from sqlalchemy import select

from apps.common.errors import NotFound, StateConflict

if TYPE_CHECKING:
    from advanced_alchemy.repository import SQLAlchemyAsyncRepository

__all__ = ["error_messages", "get_live", "not_found", "unique"]


def error_messages(noun: str, database: str, *, duplicate: str) -> ErrorMessages:
    """Our wording for what a repository wraps, so no database text (SQL, values) reaches a client."""
    return {
        "duplicate_key": duplicate,
        "integrity": f"the {noun} conflicts with existing data",
        "foreign_key": f"the {noun} refers to something that does not exist",
        "check_constraint": f"a {noun} value is out of range",
        "not_found": f"{noun} not found",
        "multiple_rows": f"more than one {noun} matched",
        "other": f"the {database} database failed",
    }


def not_found(noun: str, row_id: uuid.UUID) -> NotFound:
    return NotFound(f"{noun} {row_id} not found")


async def get_live(
    repository: SQLAlchemyAsyncRepository[ModelT], row_id: uuid.UUID, *, noun: str, for_update: bool = False
) -> ModelT:
    """The row with this id that is not soft-deleted (``deleted_at IS NULL``), or NotFound naming it.

    ``for_update`` locks it until commit: two concurrent changes of one row are serialised, so each
    event's snapshot is the state its own commit produced, in the order the commits happened.
    """
    statement = select(repository.model_type).filter_by(id=row_id, deleted_at=None)
    if for_update:
        statement = statement.with_for_update()
    row = await repository.get_one_or_none(statement=statement)
    if row is None:
        raise not_found(noun, row_id)
    return row


@contextmanager
def unique(field: str, message: str, messages: ErrorMessages) -> Iterator[None]:
    """Turn a unique-key violation inside the block (a flush, a repository add) into StateConflict (409).

    The unique constraint decides, not a racy look-up before the write; ``from None`` drops the wrapped
    error, which carries database text.
    """
    try:
        with wrap_sqlalchemy_exception(error_messages=messages, dialect_name="postgresql"):
            yield
    except DuplicateKeyError:
        raise StateConflict(field, message) from None
