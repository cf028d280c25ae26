"""Keyed DataTable updates: change only the cells that changed, so nothing flickers."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from textual.widgets import DataTable
from textual.widgets._data_table import CellDoesNotExist


def sync_rows(
    table: DataTable[Any], rows: Mapping[str, Sequence[Any]], *, ordered: bool = False
) -> None:
    """Make ``table`` show ``rows`` (row key -> cells in column order).

    Rows whose key is gone are removed, new keys are appended, and in the rest only the
    cells whose value differs are updated with ``update_cell``. With ``ordered``, a table
    whose keys are not already in the order of ``rows`` (a new page, a re-sorted list) is
    refilled instead, keeping the cursor's row position.
    """
    if ordered and [k.value for k in table.rows] != list(rows):
        cursor = table.cursor_row
        table.clear()
        for key, cells in rows.items():
            table.add_row(*cells, key=key)
        if rows:
            table.move_cursor(row=min(max(cursor, 0), len(rows) - 1), animate=False)
        return
    columns = list(table.columns)
    for gone in [k for k in table.rows if k.value not in rows]:
        table.remove_row(gone)
    for key, cells in rows.items():
        if key in table.rows:
            for column, value in zip(columns, cells, strict=False):
                try:
                    same = table.get_cell(key, column) == value
                except CellDoesNotExist:
                    same = False
                if not same:
                    table.update_cell(key, column, value, update_width=True)
        else:
            table.add_row(*cells, key=key)


def selected_key(table: DataTable[Any]) -> str | None:
    """The row key under the cursor, or None for an empty table."""
    if not table.row_count:
        return None
    key = table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value
    return None if key is None else str(key)
