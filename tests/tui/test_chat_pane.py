"""Chat through pane 4 over the real engine: streaming, images for a vision model,
stopping, and the conversation saved with source ``tui``."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from PIL import Image
from textual.widgets import Input, Markdown, OptionList, Static

from lai.store import conversations
from lai.tui.screens.chat import ChatScreen
from lai.tui.screens.prompt import PromptScreen
from lai.tui.widgets.chat import AnswerView
from tests.fakes.upstream import Behaviour
from tests.harness import model, provider
from tests.tui.conftest import SIZE, wait_for


async def open_chat(pilot: Any, provider_index: int = 0) -> ChatScreen:
    """Go to pane 4 and pick the ``provider_index``-th entry (0 is Auto)."""
    await pilot.press("4")
    chat = pilot.app.screen
    assert isinstance(chat, ChatScreen)
    plist = chat.query_one("#provider-list", OptionList)
    await wait_for(pilot, lambda: plist.option_count > provider_index, what="providers")
    plist.highlighted = provider_index
    await wait_for(pilot, lambda: chat.query_one("#model-list", OptionList).option_count
                   and (provider_index == 0) == (chat.selected_model() == "auto"),
                   what="the provider's models")
    chat.query_one("#message", Input).focus()
    return chat


async def say(pilot: Any, chat: ChatScreen, text: str) -> None:
    chat.query_one("#message", Input).value = text
    await pilot.press("enter")


def meta(chat: ChatScreen) -> str:
    return str(chat.query(AnswerView).last().query_one(".answer-meta", Static).render())


async def test_image_reaches_the_vision_model_and_the_answer_streams_back(
    embedded_app: Any, upstream: Any, tmp_path: Path
) -> None:
    answer_text = "A red square, **clearly**, and nothing else in the picture."
    upstream.default = Behaviour(content=answer_text, delay=0.1)
    app, runtime = embedded_app(
        [provider("box", upstream.url)],
        [model("llava", "box", upstream_id="llava-13b", capabilities={"vision": True})],
    )
    picture = tmp_path / "red.png"
    Image.new("RGB", (8, 6), "red").save(picture)
    async with app.run_test(size=SIZE) as pilot:
        chat = await open_chat(pilot, provider_index=1)
        assert chat.selected_model() == "box/llava"
        await say(pilot, chat, f"/attach {picture}")
        await wait_for(pilot, lambda: chat.attachments, what="the attachment")
        assert "red.png" in str(chat.query_one("#attachments", Static).render())
        await say(pilot, chat, "What is this?")
        answer = chat.query(AnswerView).last()
        # Token by token: part of the answer is on screen while it still streams.
        await wait_for(pilot, lambda: answer.query_one(Markdown).source, what="first tokens")
        assert chat.streaming and "streaming" in meta(chat), meta(chat)
        await wait_for(pilot, lambda: not chat.streaming, what="the end of the answer")
        assert answer.query_one(Markdown).source == answer_text
        assert meta(chat).startswith("box · llava · ") and "tokens" in meta(chat)
        assert not chat.query_one("#attachments").display  # sent, so no longer listed

    (sent,) = [r.body for r in upstream.requests if r.path.endswith("/chat/completions")]
    assert sent["model"] == "llava-13b" and sent["stream"] is True
    parts = sent["messages"][-1]["content"]
    urls = [p["image_url"]["url"] for p in parts if p.get("type") == "image_url"]
    assert len(urls) == 1 and urls[0].startswith("data:image/png;base64,")
    assert any(p.get("text") == "What is this?" for p in parts if p.get("type") == "text")

    # Closing the app closed the runtime, which flushed the recorder.
    page = conversations.list_conversations(runtime.store)
    (conv,) = page.data
    assert conv["source"] == "tui" and conv["display_name"] == "What is this?"
    stored = conversations.get_conversation(runtime.store, conv["id"])
    user, assistant = stored["messages"]
    assert user["image_refs"][0]["path"].endswith("_red.png")
    assert assistant["content"] == answer_text
    assert assistant["provider"] == "box" and assistant["model"] == "llava"


async def test_escape_stops_the_stream_and_frees_the_slot(
    embedded_app: Any, upstream: Any
) -> None:
    upstream.default = Behaviour(chunks=200, delay=0.05)
    app, runtime = embedded_app([provider("box", upstream.url)], [model("m1", "box")])
    async with app.run_test(size=SIZE) as pilot:
        chat = await open_chat(pilot)
        await say(pilot, chat, "count to 200")
        await wait_for(pilot, lambda: "tok3" in chat.query(Markdown).last().source,
                       what="some tokens")
        await pilot.press("escape")
        await wait_for(pilot, lambda: not chat.streaming, what="the stop")
        assert "stopped after" in meta(chat)
        await wait_for(pilot, lambda: not runtime.engine.in_flight(), what="the slot freed")
        await wait_for(pilot, lambda: upstream.disconnects == 1, what="the upstream cancelled")


async def test_an_unknown_image_path_is_a_notification(embedded_app: Any, upstream: Any,
                                                       tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("not an image")
    app, _runtime = embedded_app([provider("box", upstream.url)], [model("m1", "box")])
    async with app.run_test(size=SIZE) as pilot:
        chat = await open_chat(pilot)
        await say(pilot, chat, f"/attach {tmp_path / 'notes.txt'}")
        await wait_for(pilot, lambda: app._notifications, what="a notification")
        (note,) = list(app._notifications)
        assert note.severity == "error" and "not a PNG, JPEG, GIF or WebP" in note.message
        assert not chat.attachments


async def test_attach_path_is_completed(embedded_app: Any, upstream: Any,
                                        tmp_path: Path) -> None:
    (tmp_path / "pictures").mkdir()
    Image.new("RGB", (4, 4)).save(tmp_path / "pictures" / "only-one.png")
    app, _runtime = embedded_app([provider("box", upstream.url)], [model("m1", "box")])
    async with app.run_test(size=SIZE) as pilot:
        chat = await open_chat(pilot)
        box = chat.query_one("#message", Input)
        box.value = f"/attach {tmp_path}/pic"
        box.cursor_position = len(box.value)
        await wait_for(pilot, lambda: box._suggestion, what="a suggestion")
        await pilot.press("right")  # accept it
        assert box.value == f"/attach {tmp_path}/pictures/"
        await pilot.press("o")
        await wait_for(pilot, lambda: box._suggestion.endswith("only-one.png"),
                       what="the file")


async def test_ctrl_o_attaches_an_image_by_path(embedded_app: Any, upstream: Any,
                                                tmp_path: Path) -> None:
    picture = tmp_path / "cat.jpg"
    Image.new("RGB", (16, 9), "white").save(picture)
    app, _runtime = embedded_app([provider("box", upstream.url)], [model("m1", "box")])
    async with app.run_test(size=SIZE) as pilot:
        chat = await open_chat(pilot)
        await pilot.press("ctrl+o")
        await wait_for(pilot, lambda: isinstance(app.screen, PromptScreen), what="dialog")
        app.screen.query_one(Input).value = str(picture)
        await pilot.press("enter")
        await wait_for(pilot, lambda: chat.attachments, what="the attachment")
        (attached,) = chat.attachments
        assert (attached.media_type, attached.width, attached.height) == ("image/jpeg", 16, 9)
        assert "cat.jpg (" in str(chat.query_one("#attachments", Static).render())


async def test_a_failed_send_leaves_no_image_and_r_sends_it_again(
    embedded_app: Any, upstream: Any, tmp_path: Path
) -> None:
    upstream.script(Behaviour(mode="status", status=400, error_message="bad request"))
    upstream.default = Behaviour(content="A red square.")
    app, runtime = embedded_app(
        [provider("box", upstream.url)],
        [model("llava", "box", capabilities={"vision": True})],
    )
    picture = tmp_path / "red.png"
    Image.new("RGB", (8, 6), "red").save(picture)
    images = runtime.settings.server.data_dir / "images"
    async with app.run_test(size=SIZE) as pilot:
        chat = await open_chat(pilot, provider_index=1)
        await say(pilot, chat, f"/attach {picture}")
        await wait_for(pilot, lambda: chat.attachments, what="the attachment")
        await say(pilot, chat, "What is this?")
        await wait_for(pilot, lambda: "failed" in meta(chat), what="the refusal")
        assert not chat.history  # the failed turn is not part of the conversation
        assert not images.exists() or not any(images.rglob("*.png")), "an orphan image"

        chat.query_one("#provider-list", OptionList).focus()  # r outside the message box
        await pilot.press("r")
        await wait_for(pilot, lambda: len(chat.history) == 2 and not chat.streaming,
                       what="the answer to the retry")
        assert chat.query(Markdown).last().source == "A red square."
    sent = [r.body for r in upstream.requests if r.path.endswith("/chat/completions")]
    assert len(sent) == 2 and sent[0]["messages"] == sent[1]["messages"]  # the same turn
    assert len(list(images.rglob("*.png"))) == 1  # the retry's image, kept with its answer


async def test_a_waiting_request_shows_its_place_in_the_queue(
    embedded_app: Any, upstream: Any
) -> None:
    from lai.engine.types import RequestContext

    upstream.default = Behaviour(content="late answer", delay=2.5)
    app, runtime = embedded_app([provider("box", upstream.url, max_concurrent=1)],
                                [model("m1", "box")])
    async with app.run_test(size=SIZE) as pilot:
        chat = await open_chat(pilot)
        busy = asyncio.create_task(runtime.engine.complete(
            {"model": "m1", "messages": [{"role": "user", "content": "hold the box"}]},
            RequestContext(key_name="batch")))
        await wait_for(pilot, lambda: runtime.engine.in_flight(), what="the box to be busy")
        await say(pilot, chat, "me next")
        await wait_for(pilot, lambda: "position 1 of 1" in meta(chat), what="the queue place")
        await busy
        await wait_for(pilot, lambda: not chat.streaming and len(chat.history) == 2,
                       timeout=15, what="the answer after the wait")
