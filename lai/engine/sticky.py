"""Which provider served a conversation's last turn, so the next turn can go back to it
and reuse the server's prefix cache (the prefill of everything said so far).

A conversation is known by two names, either enough: the ``X-Conversation-ID`` the
client sent (or the one a Responses ``previous_response_id`` continues), and a
fingerprint of its opening (the messages before the first assistant message, each cut
to its first 4096 characters), which every turn of a client that resends the history
repeats. A request continues a conversation when it carries an assistant message.

The map is an LRU of at most ``size`` names, in memory: a restart forgets it, which
costs one prefill per conversation.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

OPENING_CHARS = 4096
DEFAULT_SIZE = 4096


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content[:OPENING_CHARS]
    if isinstance(content, list):
        parts = [str(p.get("text", ""))[:OPENING_CHARS] for p in content
                 if isinstance(p, dict)]
        return "\n".join(parts)[:OPENING_CHARS]
    return ""


def conversation_names(conversation_id: str | None,
                       messages: Sequence[Any]) -> tuple[tuple[str, ...], bool]:
    """(the names this request's conversation is known by, whether it continues one).
    An id lai made up for a request without one never comes back; it only takes a
    place in the LRU."""
    names: list[str] = []
    if conversation_id:
        names.append("id:" + conversation_id)
    digest = hashlib.blake2b(digest_size=16)
    continues = False
    opened = False
    for m in messages:
        if not isinstance(m, dict):
            continue
        role = m.get("role")
        if role == "assistant":
            continues = True
            break
        opened = True
        digest.update(str(role).encode())
        digest.update(b"\0")
        digest.update(_text(m.get("content")).encode("utf-8", "replace"))
        digest.update(b"\1")
    if opened:
        names.append("fp:" + digest.hexdigest())
    return tuple(names), continues


@dataclass(frozen=True, slots=True)
class LastTurn:
    provider_id: str
    tokens: int
    """Prompt and answer tokens of that turn: about what the server's cache holds."""


class StickyMap:
    """conversation name -> the last turn's provider; bounded LRU."""

    def __init__(self, size: int = DEFAULT_SIZE) -> None:
        self.size = size
        self._map: OrderedDict[str, LastTurn] = OrderedDict()

    def __len__(self) -> int:
        return len(self._map)

    def remember(self, names: Sequence[str], provider_id: str, tokens: int) -> None:
        turn = LastTurn(provider_id, tokens)
        for name in names:
            self._map[name] = turn
            self._map.move_to_end(name)
        while len(self._map) > self.size:
            self._map.popitem(last=False)

    def last(self, names: Sequence[str]) -> LastTurn | None:
        """The last turn under the first of ``names`` that is known."""
        for name in names:
            turn = self._map.get(name)
            if turn is not None:
                self._map.move_to_end(name)
                return turn
        return None
