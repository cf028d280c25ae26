"""Plain inserts of many rows at once, without SQLAlchemy's per-row work.

The recorder writes four rows a request in a thread of its own, and every microsecond
of Python it spends there holds the GIL the event loop needs. ``insert_rows`` takes rows
as sequences of Python values in a given column order, turns the values that need it
with the column types' own bind processors (so they are stored exactly as the ORM
stores them; times are given as timestamps, see below), and hands them to the driver in
a few statements:

- SQLite: multi-row ``INSERT ... VALUES (...), (...)`` statements of 2**k rows (at most
  64, fewer when the columns times the rows pass the library's bound-parameter limit).
  The sqlite3 module releases the GIL around each statement step and must take it back
  after; an executemany steps once per row, and while the event loop thread runs Python
  each retake waits for the interpreter's switch interval (5 ms): under load the
  recorder wrote ~1,200 records a second where it writes ~5,000 alone
  (bench/recorder.py). One statement per 64 rows steps ~60 times less. Sizes are
  powers of two so the driver's prepared-statement cache holds a few shapes.
- PostgreSQL: one ``INSERT ... SELECT * FROM unnest(%s::type[], ...)`` per table, a
  parameter per column whatever the number of rows. psycopg rewrites the ``%s`` of a
  statement with more than 50 parameters in Python each time (~2 us a parameter,
  uncached), and its executemany of plain SQL sent a statement per row.

A ``UTCDateTime`` column takes a POSIX timestamp (float seconds), which is what the
recorder's records hold: on SQLite :func:`sqlite_time` writes the text the ORM writes
for ``datetime.fromtimestamp(ts, UTC)`` (``YYYY-MM-DD HH:MM:SS.ffffff``, naive UTC) in a
fifth of the time (building the aware datetime, dropping its zone and formatting it
cost ~3 us, five times a request); elsewhere it becomes that aware datetime. The test
suite holds the texts equal.
"""

from __future__ import annotations

import functools
import itertools
import math
import sqlite3
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

from lai.store.models import UTCDateTime

ROWS_PER_STATEMENT = 64
"""Most rows in one SQLite INSERT (a power of two)."""

Processor = Callable[[Any], Any]


@functools.lru_cache(maxsize=256)
def _second_text(second: int) -> str:
    d = datetime.fromtimestamp(second, UTC)
    return (f"{d.year:04d}-{d.month:02d}-{d.day:02d} "
            f"{d.hour:02d}:{d.minute:02d}:{d.second:02d}")


def sqlite_time(timestamp: float) -> str:
    """A POSIX timestamp as ``UTCDateTime`` stores it in SQLite: the naive UTC text with
    microseconds of SQLAlchemy's SQLite ``DATETIME``, rounded as ``datetime.fromtimestamp``
    rounds (to the nearest microsecond, half to even)."""
    fraction, whole = math.modf(timestamp)
    micro = round(fraction * 1e6)
    second = int(whole)
    if micro >= 1_000_000:
        micro -= 1_000_000
        second += 1
    elif micro < 0:
        micro += 1_000_000
        second -= 1
    return f"{_second_text(second)}.{micro:06d}"


def _aware(timestamp: float) -> datetime:
    return datetime.fromtimestamp(timestamp, UTC)


def _processor(column: sa.Column[Any], dialect: sa.Dialect) -> Processor | None:
    if isinstance(column.type, UTCDateTime):
        return sqlite_time if dialect.name == "sqlite" else _aware
    processor: Processor | None = column.type.dialect_impl(dialect).bind_processor(dialect)
    if processor is None and dialect.name != "sqlite" and isinstance(column.type, sa.Float):
        # An array holds one type: 0 and 1.5 in one column must both be floats.
        processor = float
    return processor


@functools.lru_cache(maxsize=64)
def _plan(table: sa.Table, names: tuple[str, ...], dialect: sa.Dialect
          ) -> tuple[tuple[Processor | None, bool], ...]:
    """For each column of ``names``: the processor its values need (or None), and
    whether it may be left out of an INSERT where it is NULL in every row (no server
    default would take its place)."""
    return tuple((_processor(table.c[name], dialect),
                  table.c[name].server_default is None) for name in names)


@functools.lru_cache(maxsize=64)
def _sql(table: sa.Table, names: tuple[str, ...], dialect: sa.Dialect, rows: int) -> str:
    quote = dialect.identifier_preparer.quote
    columns = ", ".join(quote(name) for name in names)
    one = "(" + ", ".join(["?"] * len(names)) + ")"
    return f"INSERT INTO {quote(table.name)} ({columns}) VALUES " + ", ".join([one] * rows)


@functools.lru_cache(maxsize=64)
def _unnest_sql(table: sa.Table, names: tuple[str, ...], dialect: sa.Dialect) -> str:
    quote = dialect.identifier_preparer.quote
    columns = ", ".join(quote(name) for name in names)
    arrays = ", ".join(f"%s::{table.c[name].type.compile(dialect=dialect)}[]"
                       for name in names)
    return f"INSERT INTO {quote(table.name)} ({columns}) SELECT * FROM unnest({arrays})"


def insert_rows(connection: sa.Connection, table: sa.Table, names: tuple[str, ...],
                rows: Sequence[Sequence[Any]]) -> None:
    """Insert ``rows`` into ``table``: each the values of the columns ``names``, in that
    order, a ``UTCDateTime`` as a POSIX timestamp. Raises what the driver raises.

    A column that is NULL in every row is left out of the statement (NULL all the
    same): the sqlite3 module binds a None through its adapter lookup, ~0.27 us each,
    and a request's rows hold ~25 of them (error fields, tool calls, labels...).
    """
    if not rows:
        return
    dialect = connection.dialect
    count = len(rows)
    kept: list[str] = []
    columns: list[Sequence[Any]] = []
    for name, values, (process, optional) in zip(
            names, zip(*rows, strict=True), _plan(table, names, dialect), strict=True):
        if optional and values.count(None) == count:
            continue
        kept.append(name)
        columns.append(values if process is None else
                       [None if v is None else process(v) for v in values])
    if not kept:  # every value NULL: one column keeps the statement valid
        kept, columns = [names[0]], [[None] * count]
    shape = tuple(kept)
    if dialect.name != "sqlite":
        connection.exec_driver_sql(_unnest_sql(table, shape, dialect),
                                   tuple(list(c) for c in columns))
        return
    per_statement = ROWS_PER_STATEMENT
    limit = connection.connection.dbapi_connection.getlimit(  # type: ignore[union-attr]
        sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER)
    while per_statement > 1 and per_statement * len(shape) > limit:
        per_statement //= 2
    start = 0
    while start < count:
        left = count - start
        size = per_statement if left >= per_statement else 1 << (left.bit_length() - 1)
        part = (c[start : start + size] for c in columns)
        params = tuple(itertools.chain.from_iterable(zip(*part, strict=True)))
        connection.exec_driver_sql(_sql(table, shape, dialect, size), params)
        start += size


def plan_each_time(connection: sa.Connection) -> None:
    """For the rest of this transaction, have PostgreSQL plan each statement for its own
    parameters (12 and later; nothing elsewhere).

    psycopg prepares a statement on the server once it has run five times, and the
    server may then keep one generic plan. Made while a new database's tables were
    nearly empty, the plan of :func:`present` scanned the whole table for every batch,
    and it stayed until the next ANALYZE: on a fresh database at 2,000 records a second
    a batch took 25 ms at first and 110 ms after 15,000 records (bench/recorder.py fell
    9,000 behind in 15 s); planned each time, ~30-40 ms throughout.
    """
    dialect = connection.dialect
    if dialect.name == "postgresql" and (dialect.server_version_info or (0,)) >= (12,):
        connection.exec_driver_sql("SET LOCAL plan_cache_mode = force_custom_plan")


def present(connection: sa.Connection, table: sa.Table, column: str,
            values: Sequence[str]) -> list[Any]:
    """The values among ``values`` (on SQLite at most a few hundred: each is a bound
    parameter) that ``table.column`` holds, in one plain query."""
    if not values:
        return []
    dialect = connection.dialect
    quote = dialect.identifier_preparer.quote
    select = f"SELECT {quote(column)} FROM {quote(table.name)} WHERE {quote(column)}"
    if dialect.name != "sqlite":
        rows = connection.exec_driver_sql(f"{select} = ANY(%s)", (list(values),))
    else:
        rows = connection.exec_driver_sql(
            f"{select} IN ({', '.join(['?'] * len(values))})", tuple(values))
    return [row[0] for row in rows]
