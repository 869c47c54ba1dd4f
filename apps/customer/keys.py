"""Key rotation for the customer service's sealed columns: `just keys customer rotate|reseal|status|retire KID`
(or `python -m apps.customer.keys ...`); the walk itself is apps/common/sealed_tables.py, shared by every
service with sealed columns.

Sealed here: customers (email with its blind index, phone, date of birth), customer_addresses (every line)
and personal_data_keys (each person's data key, wrapped: apps/customer/data_keys.py). Old keys stay in the
file after a rotation: they still open values in backups taken before it (docs/decisions.md).
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Final

from apps.common.sealed_tables import DEFAULT_BATCH, SealedTable, ServiceKeys
from apps.customer.sealed import ADDRESS_COLUMNS, CUSTOMER_COLUMNS, SERVICE, keyring

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from sqlalchemy.engine import Connection

__all__ = ["SEALED_TABLES", "TABLES", "keyring", "main", "reseal_table", "retire", "rotate", "rows_per_key"]

# The tables customer_0005 sealed (its migration walks exactly these).
TABLES: Final = {"customers": CUSTOMER_COLUMNS, "customer_addresses": ADDRESS_COLUMNS}
SEALED_TABLES: Final = (
    SealedTable("customers", CUSTOMER_COLUMNS, index=("email", "email_index")),
    SealedTable("customer_addresses", ADDRESS_COLUMNS),
    SealedTable("personal_data_keys", ("wrapped_key",), key="subject_id"),
)
_KEYS: Final = ServiceKeys(SERVICE, keyring, SEALED_TABLES)


def reseal_table(
    conn: Connection, table: str, *, batch: int = DEFAULT_BATCH, commit: Callable[[], None] | None = None
) -> int:
    return _KEYS.reseal_table(conn, table, batch=batch, commit=commit)


def rows_per_key(conn: Connection) -> dict[str, dict[str, int]]:
    return _KEYS.rows_per_key(conn)


def rotate(batch: int = DEFAULT_BATCH, *, new_key: bool = True) -> tuple[str, dict[str, int]]:
    return _KEYS.rotate(batch, new_key=new_key)


def retire(kid: str) -> None:
    _KEYS.retire(kid)


def main(argv: Sequence[str] | None = None) -> int:
    return _KEYS.main(argv)


if __name__ == "__main__":
    sys.exit(main())
