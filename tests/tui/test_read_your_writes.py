"""Read-your-writes in the TUI's embedded client: a conversation the chat pane just had
is there to open, rename and delete at once, although the recorder batches its rows."""

from __future__ import annotations

from pathlib import Path

from lai.runtime import build_runtime
from lai.tui.client import ChatEvent
from lai.tui.embedded import EmbeddedClient
from tests.fakes.upstream import FakeUpstream
from tests.harness import make_settings, model, provider

TRIES = 10


async def _chat(client: EmbeddedClient, cid: str) -> list[ChatEvent]:
    body = {"model": "small", "stream": True,
            "messages": [{"role": "user", "content": "hello"}]}
    return [event async for event in client.chat(body, conversation_id=cid)]


async def test_open_rename_delete_right_after_a_chat(tmp_path: Path,
                                                     upstream: FakeUpstream) -> None:
    settings = make_settings(tmp_path, [provider("box", upstream.url)], [model("small", "box")])
    client = EmbeddedClient(build_runtime(settings), config_path=tmp_path / "config.toml")
    await client.start()
    try:
        assert client.runtime.recorder is not None and client.runtime.recorder.linger > 0
        opened = renamed = deleted = listed = 0
        for i in range(TRIES):
            await _chat(client, f"open-{i}")
            conv = await client.conversation(f"open-{i}")
            opened += len(conv["messages"]) == 2
            await _chat(client, f"rename-{i}")
            await client.rename_conversation(f"rename-{i}", "renamed")
            renamed += (await client.conversation(f"rename-{i}"))["display_name"] == "renamed"
            await _chat(client, f"delete-{i}")
            await client.delete_conversation(f"delete-{i}")  # raises NotFound if missing
            deleted += 1
            await _chat(client, f"list-{i}")
            page = await client.conversations(q=None, limit=1, offset=0)
            listed += [c["id"] for c in page.data] == [f"list-{i}"]
        assert (opened, renamed, deleted, listed) == (TRIES, TRIES, TRIES, TRIES)
    finally:
        await client.close()
