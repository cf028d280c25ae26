"""Plain inserts of many rows at once, without SQLAlchemy's per-row work.

The recorder writes four rows a request in a thread of its own, and every microsecond
of Python it spends there holds the GIL the event loop needs. ``insert_rows`` takes rows
as lists of Python values in a given column order, turns the values that need it with
the column types' own bind processors (so they are stored exactly as the ORM stores
them), and hands them to the driver in as few statements as it can:

- SQLite: multi-row ``INSERT ... VALUES (...), (...)`` statements of 2**k rows (at most
  64, fewer when the columns times the rows pass the library's bound-parameter limit).
  The sqlite3 module releases the GIL around each statement step and must take it back
  after; an executemany steps once per row, and while the event loop thread runs Python
  each retake waits for the interpreter's switch interval (5 ms): under load the
  recorder wrote ~1,200 records a second where it writes ~5,000 alone
  (bench/recorder.py). One statement per 64 rows steps ~60 times less. Sizes are
  powers of two so the driver's prepared-statement cache holds a few shapes.
- PostgreSQL: one executemany of the driver (psycopg pipelines it).

A ``UTCDateTime`` column on SQLite is turned by :func:`sqlite_time`, which writes the
text SQLAlchemy's processor writes (``YYYY-MM-DD HH:MM:SS.ffffff``, naive UTC) in a
fraction of its time; the test suite holds the two equal.
"""

from __future__ import annotations

import functools
import itertools
import sqlite3
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

from lai.store.models import UTCDateTime

ROWS_PER_STATEMENT = 64
"""Most rows in one SQLite INSERT (a power of two)."""

Processor = Callable[[Any], Any]


def sqlite_time(value: datetime) -> str:
    """A datetime as ``UTCDateTime`` stores it in SQLite: naive UTC text with
    microseconds, the format of SQLAlchemy's SQLite ``DATETIME``."""
    if value.tzinfo is UTC:
        value = value.replace(tzinfo=None)
    elif value.tzinfo is not None:
        value = value.astimezone(UTC).replace(tzinfo=None)
    return value.isoformat(" ", "microseconds")


def _processor(column: sa.Column[Any], dialect: sa.Dialect) -> Processor | None:
    if dialect.name == "sqlite" and isinstance(column.type, UTCDateTime):
        return sqlite_time
    processor: Processor | None = column.type.dialect_impl(dialect).bind_processor(dialect)
    return processor


@functools.lru_cache(maxsize=64)
def _plan(table: sa.Table, names: tuple[str, ...], dialect: sa.Dialect
          ) -> tuple[tuple[int, Processor], ...]:
    """(position, processor) of the columns among ``names`` whose values need turning."""
    found = ((i, _processor(table.c[name], dialect)) for i, name in enumerate(names))
    return tuple((i, p) for i, p in found if p is not None)


@functools.lru_cache(maxsize=64)
def _sql(table: sa.Table, names: tuple[str, ...], dialect: sa.Dialect, rows: int) -> str:
    quote = dialect.identifier_preparer.quote
    columns = ", ".join(quote(name) for name in names)
    mark = "?" if dialect.paramstyle == "qmark" else "%s"
    one = "(" + ", ".join([mark] * len(names)) + ")"
    return f"INSERT INTO {quote(table.name)} ({columns}) VALUES " + ", ".join([one] * rows)


def insert_rows(connection: sa.Connection, table: sa.Table, names: tuple[str, ...],
                rows: Sequence[list[Any]]) -> None:
    """Insert ``rows`` into ``table``: each a list of values for the columns ``names``,
    in that order (turned in place by the columns' bind processors). Raises what the
    driver raises."""
    if not rows:
        return
    dialect = connection.dialect
    for i, process in _plan(table, names, dialect):
        for row in rows:
            value = row[i]
            if value is not None:
                row[i] = process(value)
    if dialect.name != "sqlite":
        connection.exec_driver_sql(_sql(table, names, dialect, 1), [tuple(r) for r in rows])
        return
    per_statement = ROWS_PER_STATEMENT
    limit = connection.connection.dbapi_connection.getlimit(  # type: ignore[union-attr]
        sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER)
    while per_statement > 1 and per_statement * len(names) > limit:
        per_statement //= 2
    start = 0
    while start < len(rows):
        left = len(rows) - start
        size = per_statement if left >= per_statement else 1 << (left.bit_length() - 1)
        params = tuple(itertools.chain.from_iterable(rows[start : start + size]))
        connection.exec_driver_sql(_sql(table, names, dialect, size), params)
        start += size


def present(connection: sa.Connection, table: sa.Table, column: str,
            values: Sequence[str]) -> list[Any]:
    """The values among ``values`` (at most a few hundred: each is a bound parameter)
    that ``table.column`` holds, in one plain query."""
    if not values:
        return []
    dialect = connection.dialect
    quote = dialect.identifier_preparer.quote
    mark = "?" if dialect.paramstyle == "qmark" else "%s"
    sql = (f"SELECT {quote(column)} FROM {quote(table.name)} WHERE {quote(column)} IN ("
           + ", ".join([mark] * len(values)) + ")")
    return [row[0] for row in connection.exec_driver_sql(sql, tuple(values))]
