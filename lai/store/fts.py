"""Full-text search over message content: SQLite FTS5, PostgreSQL ``to_tsvector``.

The search objects are created by an Alembic revision (``0002_fulltext``) with raw SQL,
because neither is a plain table SQLModel could describe; ``include_object`` hides them
from autogenerate so it does not propose to drop them.
"""

from __future__ import annotations

from typing import Any

FTS_TABLE = "messages_fts"
"""The SQLite FTS5 table (external content: it indexes ``messages.content``)."""
PG_INDEX = "ix_messages_content_fts"
"""The PostgreSQL GIN expression index."""
PG_TSVECTOR = "to_tsvector('simple', coalesce(content, ''))"
"""The indexed expression; queries must repeat it verbatim for the index to be used.
'simple' neither stems nor drops stop words, like FTS5's default tokenizer."""

_FTS_SHADOW_SUFFIXES = ("", "_data", "_idx", "_content", "_docsize", "_config")


def include_object(
    obj: Any, name: str | None, type_: str, reflected: bool, compare_to: Any
) -> bool:
    """Alembic hook: leave the full-text objects out of autogenerate comparisons."""
    if type_ == "table" and name in {FTS_TABLE + s for s in _FTS_SHADOW_SUFFIXES}:
        return False
    if type_ == "index" and name == PG_INDEX:
        return False
    return True


def fts5_query(text: str) -> str | None:
    """Turn user input into an FTS5 query matching messages that contain every word.

    Each word becomes a quoted string, so FTS5 operators and punctuation in the input
    are taken literally. None when no word is left. A NUL character separates words:
    FTS5 ends a quoted string at one ("unterminated string", a 500 for ``?q=%00``).
    """
    words = [w.replace('"', '""') for w in text.replace("\0", " ").split()]
    words = [w for w in words if w.strip('"')]
    if not words:
        return None
    return " ".join(f'"{w}"' for w in words)
