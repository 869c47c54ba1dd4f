"""Postal addresses copied onto a service's rows (orders, checkout sessions), sealed at rest field by field.

The address stays a JSON object in its JSONB column; each line that names or locates a person becomes an
envelope of the service's own keyring (apps/common/crypto.py), bound to the service, table, column and
field, and row (``order/orders/shipping_address.city/<id>``), so a value moved elsewhere does not open.
``country`` stays clear (tax and shipping read it; it names nobody), as on the customer service's rows.
An address written before sealing (clear lines) reads as it is until the migration or a reseal seals it.
"""

from __future__ import annotations

import functools
from typing import Any, Protocol

from apps.common.crypto import KeyringFile, keyring_path
from apps.common.personal import ADDRESS_FIELDS
from apps.common.sealed_rows import SealedTable, open_json_fields, seal_json_fields

__all__ = ["ADDRESS_FIELDS", "SealedAddresses"]


class _Row(Protocol):
    @property
    def id(self) -> object: ...


class SealedAddresses:
    """One service's sealed address columns: seal before a write, open after a read."""

    def __init__(self, service: str) -> None:
        self.service = service

    @functools.cached_property
    def _file(self) -> KeyringFile:
        path, create = keyring_path(self.service)
        return KeyringFile(path, create=create)

    def keyring(self) -> KeyringFile:
        """The service's key file, opened on first use (never at import)."""
        return self._file

    def table(self, table: str, columns: tuple[str, ...], *, aad_table: str | None = None) -> SealedTable:
        """The rotation's view of a table whose ``columns`` hold addresses."""
        return SealedTable(table, columns, aad_table=aad_table, json_fields=ADDRESS_FIELDS)

    def seal(self, table: str, column: str, row_id: object, address: dict[str, Any] | None) -> dict[str, Any] | None:
        if address is None:
            return None
        sealed = seal_json_fields(self._file.ring(), self.service, table, column, row_id, address, ADDRESS_FIELDS)
        assert isinstance(sealed, dict)
        return sealed

    def open(self, table: str, column: str, row_id: object, stored: object) -> dict[str, Any] | None:
        return open_json_fields(self._file, self.service, table, column, row_id, stored, ADDRESS_FIELDS)

    def seal_row(self, table: str, row: _Row, columns: tuple[str, ...]) -> None:
        """Seal the row's address ``columns`` in place; its ``id`` must be set (it is in the associated data)."""
        for column in columns:
            setattr(row, column, self.seal(table, column, row.id, getattr(row, column)))

    def open_row(self, table: str, row: _Row, columns: tuple[str, ...]) -> dict[str, Any]:
        """The row's address ``columns`` in clear, by column name."""
        return {column: self.open(table, column, row.id, getattr(row, column)) for column in columns}
