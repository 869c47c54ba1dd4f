"""Structs built from table rows: the ``to_*_out`` mappers' one step, written once.

A response (or event) struct mostly names columns of a row; ``from_row`` reads those attributes, takes
the rest from keyword arguments, and converts the whole (nested rows too) with msgspec, so a mapper only
says what differs from the row.
"""

from __future__ import annotations

from typing import Any, TypeVar

import msgspec

__all__ = ["from_row"]

S = TypeVar("S", bound=msgspec.Struct)


def from_row(type_: type[S], row: object = None, /, **given: Any) -> S:
    """``type_`` with each field from ``given`` where it is named there, else from the row's attribute of
    that name; a field the row lacks keeps its default."""
    values = {
        name: given[name] if name in given else getattr(row, name)
        for name in type_.__struct_fields__
        if name in given or hasattr(row, name)
    }
    return msgspec.convert(values, type_, from_attributes=True)
