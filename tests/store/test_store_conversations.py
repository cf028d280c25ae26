"""Conversation repository: list and page, search, get, rename, delete."""

from __future__ import annotations

import time

import pytest
from sqlmodel import select

from lai.errors import NotFound
from lai.store import conversations as repo
from lai.store.db import Store
from lai.store.models import Message, RequestRecord
from lai.store.recorder import Recorder
from tests.store.helpers import finished


async def _record(store: Store, *events) -> None:  # type: ignore[no-untyped-def]
    rec = Recorder(store)
    await rec.start()
    for e in events:
        rec.observe(e)
    await rec.close()


async def test_list_is_newest_first_and_pages_with_has_more(store: Store) -> None:
    now = time.time()
    await _record(
        store, *(finished(conversation_id=f"conv-{i}", started_at=now + i) for i in range(5))
    )
    first = repo.list_conversations(store, limit=2)
    assert [c["id"] for c in first.data] == ["conv-4", "conv-3"]
    assert first.has_more
    last = repo.list_conversations(store, limit=2, offset=4)
    assert [c["id"] for c in last.data] == ["conv-0"] and not last.has_more
    assert not repo.list_conversations(store, limit=5).has_more
    assert repo.count_conversations(store) == 5
    with pytest.raises(ValueError):
        repo.list_conversations(store, limit=0)

    # New activity moves a conversation to the top.
    await _record(
        store,
        finished(
            conversation_id="conv-0",
            started_at=now + 10,
            messages=[
                {"role": "user", "content": "Hi"},
                {"role": "assistant", "content": "Hello!"},
                {"role": "user", "content": "again"},
            ],
        ),
    )
    assert repo.list_conversations(store, limit=1).data[0]["id"] == "conv-0"


async def test_search_finds_a_word_from_the_third_message(store: Store) -> None:
    turn1 = [{"role": "user", "content": "How do I bake bread?"}]
    turn2 = turn1 + [
        {"role": "assistant", "content": "Flour, water, salt."},
        {"role": "user", "content": "And what about sourdough starters?"},
    ]
    await _record(
        store,
        finished(conversation_id="bread", messages=turn1, answer="Flour, water, salt."),
        finished(conversation_id="bread", messages=turn2, answer="Feed it daily."),
        finished(conversation_id="other", messages=[{"role": "user", "content": "Weather?"}]),
    )
    hits = repo.list_conversations(store, q="sourdough")
    assert [c["id"] for c in hits.data] == ["bread"]
    assert [c["id"] for c in repo.list_conversations(store, q="SOURDOUGH starters").data] == [
        "bread"
    ]
    assert repo.list_conversations(store, q="sourdough weather").data == []  # every word
    assert repo.list_conversations(store, q='"unbalanced AND (').data == []  # taken literally
    assert repo.count_conversations(store, q="sourdough") == 1
    # A NUL separates words: FTS5 stopped its quoted string there and PostgreSQL refuses
    # NUL in text, both a 500 for ?q=%00.
    assert [c["id"] for c in repo.list_conversations(store, q="sourdough\0starters").data] == [
        "bread"
    ]
    assert repo.list_conversations(store, q="\0").data != []  # nothing left: no filter

    repo.rename_conversation(store, "other", "Rainy day plans")
    assert [c["id"] for c in repo.list_conversations(store, q="rainy").data] == ["other"]


async def test_get_rename_and_delete(store: Store) -> None:
    deleted: list[str] = []
    store.on_conversation_deleted.append(deleted.append)
    await _record(
        store,
        finished(
            conversation_id="c1", messages=[{"role": "user", "content": "Hi"}], display_name="First"
        ),
        finished(conversation_id="c2"),
    )
    conv = repo.get_conversation(store, "c1")
    assert conv["display_name"] == "First" and conv["message_count"] == 2
    assert [m["role"] for m in conv["messages"]] == ["user", "assistant"]
    answer = conv["messages"][1]
    assert (answer["provider"], answer["model"], answer["tokens"]) == ("gpu", "qwen", 5)
    assert isinstance(answer["created_at"], int)

    assert repo.rename_conversation(store, "c1", "Renamed")["display_name"] == "Renamed"
    assert repo.get_conversation(store, "c1")["display_name"] == "Renamed"

    repo.delete_conversation(store, "c1")
    assert deleted == ["c1"]
    with pytest.raises(NotFound):
        repo.get_conversation(store, "c1")
    with store.session() as s:
        assert s.exec(select(Message).where(Message.conversation_id == "c1")).all() == []
        assert len(s.exec(select(Message).where(Message.conversation_id == "c2")).all()) == 2
        # Usage statistics outlive the conversation.
        assert len(s.exec(select(RequestRecord)).all()) == 2
    assert [c["id"] for c in repo.list_conversations(store, q="Hi").data] == ["c2"]
    for call in (
        lambda: repo.delete_conversation(store, "c1"),
        lambda: repo.rename_conversation(store, "nope", "x"),
    ):
        with pytest.raises(NotFound):
            call()


async def test_list_titles_unnamed_ones_and_filters_by_label_key_and_model(store: Store) -> None:
    now = time.time()
    long_question = "Why   does my\nsourdough " + "rise " * 40
    await _record(
        store,
        finished(conversation_id="from-aider", started_at=now, key_name="agent-ci",
                 source="aider", messages=[{"role": "system", "content": "Be brief."},
                                           {"role": "user", "content": long_question}]),
        finished(conversation_id="from-tui", started_at=now + 1, key_name=None, source="tui",
                 username="ana", display_name="Bread",
                 messages=[{"role": "user", "content": "Hello there"}]),
    )
    page = repo.list_conversations(store).data
    by_id = {c["id"]: c for c in page}
    aider = by_id["from-aider"]
    # The first user message (not the system prompt), on one line, cut at 80 characters.
    assert aider["title"].startswith("Why does my sourdough rise rise")
    assert len(aider["title"]) == repo.TITLE_LENGTH and aider["title"].endswith("…")
    assert (aider["key_name"], aider["model"], aider["source"]) == ("agent-ci", "qwen", "aider")
    assert by_id["from-tui"]["title"] == "Hello there"
    assert by_id["from-tui"]["key_name"] is None

    def ids(**filters: str) -> list[str]:
        return [c["id"] for c in repo.list_conversations(store, filters=filters).data]

    assert ids(source="aider") == ["from-aider"]
    assert ids(key_name="agent-ci") == ["from-aider"]
    assert ids(username="ana") == ["from-tui"]
    assert ids(model="qwen") == ["from-tui", "from-aider"]
    assert ids(model="other", source="tui") == []
    assert repo.count_conversations(store, filters={"source": "tui"}) == 1
    with pytest.raises(ValueError, match="cannot filter"):
        repo.list_conversations(store, filters={"colour": "red"})
