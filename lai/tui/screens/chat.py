"""Pane 4, chat: pick a provider then a model, write, attach images, watch it stream.

The conversation is saved by whoever serves it (the proxy's or the embedded recorder)
with source ``tui``, so it shows up in pane 2.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from typing import Any

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.widgets import Footer, Input, Markdown, OptionList, Static
from textual.widgets.option_list import Option

from lai.engine.types import ProviderSnapshot
from lai.tui.board_cells import STATUS_STYLE
from lai.tui.client import Attachment, ChatDelta, ChatFinished, ChatStarted, ClientError
from lai.tui.notify import notify_error
from lai.tui.screens.base import PaneScreen
from lai.tui.screens.prompt import PromptScreen
from lai.tui.widgets.chat import AnswerView, AttachPathSuggester, UserMessage
from lai.tui.widgets.header import PaneHeader

AUTO = "auto"
OFFLINE = ("unhealthy", "disabled")
REFRESH_SECONDS = 5.0


def new_conversation_id() -> str:
    return "conv_" + secrets.token_hex(12)


def provider_prompt(p: ProviderSnapshot) -> Text:
    """``● gaming-pc  healthy 1/4`` (the status coloured)."""
    style = STATUS_STYLE.get(p.status, "")
    return Text.assemble(("● ", style), p.name, "\n  ", (p.status, style),
                         f" · {p.active_requests}/{p.max_concurrent} in flight")


HISTORY_FIELDS = ("role", "content", "name", "tool_calls", "tool_call_id", "image_refs")


def history_message(msg: dict[str, Any]) -> dict[str, Any]:
    """A stored message as the chat request sends it again (images as references)."""
    out = {k: msg[k] for k in HISTORY_FIELDS if msg.get(k) not in (None, [])}
    out.setdefault("content", None if msg.get("tool_calls") else "")
    return out


def model_prompt(m: dict[str, Any]) -> Text:
    warm = bool(m.get("warm"))
    text = Text.assemble(("● " if warm else "○ ", "green" if warm else "dim"), str(m["id"]),
                         (" warm" if warm else " cold", "dim"))
    capabilities = m.get("capabilities") or {}
    if capabilities.get("vision"):
        text.append(" · images", style="cyan")
    if capabilities.get("function_calling"):
        text.append(" · tools", style="magenta")
    return text


class ChatScreen(PaneScreen):
    """Provider, model, message box; answers stream in as Markdown."""

    PANE = "chat"
    BINDINGS = [
        Binding("ctrl+o", "attach", "Attach image", id="chat-attach"),
        Binding("escape", "stop", "Stop / leave box", id="chat-stop"),
        Binding("ctrl+n", "new_chat", "New chat", id="chat-new"),
        Binding("ctrl+r,r", "retry", "Retry last message", id="chat-retry"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.providers: list[ProviderSnapshot] = []
        self.model_list: list[dict[str, Any]] = []
        self.history: list[dict[str, Any]] = []
        self.attachments: list[Attachment] = []
        self.last_sent: tuple[str, list[Attachment]] | None = None
        """The last message sent and whether it was answered (for ``r``)."""
        self.last_answered = False
        self.conversation_id = new_conversation_id()
        self.continued = False
        """The conversation came from pane 2: its name is the operator's, leave it."""
        self.streaming = False

    def compose(self) -> ComposeResult:
        yield PaneHeader(self.PANE, self.client.mode, self.client.location)
        with Horizontal(id="chat"):
            with Vertical(id="selector"):
                yield Static("1 · Provider", classes="section-title")
                yield OptionList(Option("Auto (best available)", id=AUTO), id="provider-list")
                yield Static("2 · Model", classes="section-title")
                yield OptionList(id="model-list")
            with Vertical(id="conversation"):
                with VerticalScroll(id="transcript"):
                    yield Static("Pick a provider and a model, then write below. "
                                 "/attach PATH or ctrl+o adds an image.",
                                 id="chat-empty", classes="empty")
                yield Static("", id="attachments")
                yield Input(placeholder="Message · enter sends · /attach PATH · /detach",
                            suggester=AttachPathSuggester(), id="message")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#attachments").display = False
        self.query_one("#message", Input).focus()
        self.load_choices()
        self.set_interval(REFRESH_SECONDS, self.load_choices)
        self.take_pending_conversation()
        self.watch(self.lai, "handing_over", self._handing_over, init=False)

    def _handing_over(self, handing: bool) -> None:
        """The engine goes to a proxy: stop the answer now, so it is recorded as stopped
        rather than cut when the engine closes."""
        if handing and self.streaming:
            self.workers.cancel_group(self, "chat")

    def client_replaced(self) -> None:
        self.load_choices()

    def on_screen_resume(self) -> None:
        self.load_choices()
        self.take_pending_conversation()

    # -- a conversation from pane 2

    def take_pending_conversation(self) -> None:
        conv = self.lai.pending_conversation
        if conv is None:
            return
        self.lai.pending_conversation = None
        self.load_conversation(conv)

    def load_conversation(self, conv: dict[str, Any]) -> None:
        """Show ``conv``'s messages and make the next message its next turn (same id)."""
        if self.streaming:
            self.workers.cancel_group(self, "chat")
        self.action_new_chat()
        self.conversation_id = str(conv["id"])
        self.continued = True
        transcript = self.query_one("#transcript", VerticalScroll)
        messages = conv.get("messages") or []
        self.query_one("#chat-empty").display = not messages
        for msg in messages:
            self.history.append(history_message(msg))
            role = msg.get("role")
            content = msg.get("content") if isinstance(msg.get("content"), str) else ""
            if role == "user":
                paths = [self.client.image_path(r) for r in msg.get("image_refs") or ()]
                transcript.mount(UserMessage(content, paths))
            elif role == "assistant":
                who = f"{msg.get('provider') or '?'} · {msg.get('model') or '?'}"
                tokens = f" · {msg['tokens']} tokens" if msg.get("tokens") is not None else ""
                text = content or f"(tool calls: {len(msg.get('tool_calls') or ())})"
                transcript.mount(AnswerView(text, f"{who}{tokens}", classes="answer"))
            else:
                transcript.mount(Static(Text(f"{role}: {content}", style="dim"),
                                        classes="message"))
        transcript.scroll_end(animate=False)
        name = conv.get("display_name") or conv.get("title") or conv["id"]
        self.notify(f"Continuing “{name}” ({len(messages)} messages); new turns are added "
                    "to it.", title="Chat", timeout=4)

    # -- the two-step selector

    @work(group="choices", exclusive=True, exit_on_error=False, description="Loading providers")
    async def load_choices(self) -> None:
        providers, models = await asyncio.gather(self.client.providers(), self.client.models())
        self.providers, self.model_list = providers, models
        plist = self.query_one("#provider-list", OptionList)
        for p in providers:
            prompt = provider_prompt(p)
            try:
                plist.get_option(p.id)
            except Exception:  # OptionDoesNotExist: a new provider
                plist.add_option(Option(prompt, id=p.id, disabled=p.status in OFFLINE))
                continue
            plist.replace_option_prompt(p.id, prompt)
            if p.status in OFFLINE:
                plist.disable_option(p.id)
            else:
                plist.enable_option(p.id)
        if plist.highlighted is None:
            plist.highlighted = 0
        self._fill_models()

    @on(OptionList.OptionHighlighted, "#provider-list")
    def _provider_changed(self) -> None:
        self._fill_models()

    @on(OptionList.OptionSelected, "#provider-list")
    def _provider_chosen(self) -> None:
        self.query_one("#model-list", OptionList).focus()

    @on(OptionList.OptionSelected, "#model-list")
    def _model_chosen(self) -> None:
        self.query_one("#message", Input).focus()

    def selected_provider(self) -> str:
        plist = self.query_one("#provider-list", OptionList)
        if plist.highlighted is None:
            return AUTO
        return plist.get_option_at_index(plist.highlighted).id or AUTO

    def _fill_models(self) -> None:
        pid = self.selected_provider()
        mlist = self.query_one("#model-list", OptionList)
        if pid == AUTO:
            wanted = [Option(Text("auto (router picks)"), id=AUTO)]
        else:
            # Embedding models cannot chat (lai refuses them on the chat path).
            wanted = [Option(model_prompt(m), id=f"{pid}/{m['id']}")
                      for m in self.model_list
                      if m.get("provider") == pid and m.get("kind") != "embedding"]
        current = [mlist.get_option_at_index(i).id for i in range(mlist.option_count)]
        if current == [o.id for o in wanted]:
            for option in wanted:  # warm/cold changed: replace prompts in place
                mlist.replace_option_prompt(option.id or "", option.prompt)
            return
        highlighted = mlist.highlighted
        mlist.clear_options()
        mlist.add_options(wanted)
        if wanted:
            mlist.highlighted = 0 if highlighted is None else min(highlighted, len(wanted) - 1)

    def selected_model(self) -> str:
        mlist = self.query_one("#model-list", OptionList)
        if mlist.highlighted is None:
            return AUTO
        return mlist.get_option_at_index(mlist.highlighted).id or AUTO

    # -- attachments

    def action_attach(self) -> None:
        def chosen(path: str | None) -> None:
            if path and path.strip():
                self.attach(path.strip())

        self.app.push_screen(PromptScreen("Attach an image", "Path of a PNG, JPEG, GIF or WebP:",
                                          placeholder="~/pictures/cat.png",
                                          suggester=AttachPathSuggester(command=None)), chosen)

    @work(group="attach", exit_on_error=False, description="Attach")
    async def attach(self, path: str) -> None:
        attachment = await self.client.load_attachment(path)
        self.attachments.append(attachment)
        self._show_attachments()

    def _show_attachments(self) -> None:
        box = self.query_one("#attachments", Static)
        box.display = bool(self.attachments)
        text = Text("Attached: ", style="bold")
        for i, a in enumerate(self.attachments):
            if i:
                text.append(" · ")
            text.append(f"{a.path} ({a.size / 1024:.1f} KB, {a.width}×{a.height})")
        text.append("  sent with the next message · /detach removes", style="dim")
        box.update(text)

    # -- sending

    @on(Input.Submitted, "#message")
    def _submitted(self, event: Input.Submitted) -> None:
        text = event.value.strip()
        if text.startswith("/attach"):
            event.input.clear()
            path = text[len("/attach"):].strip()
            if path:
                self.attach(path)
            else:
                self.action_attach()
            return
        if text == "/detach":
            event.input.clear()
            self.attachments.clear()
            self._show_attachments()
            return
        if not text and not self.attachments:
            return
        if self.streaming:
            self.notify("An answer is still streaming; escape stops it.", title="Chat",
                        severity="warning")
            return
        event.input.clear()
        self.send(text)

    def send(self, text: str) -> None:
        """Show the message (and its attachments) and stream the answer."""
        transcript = self.query_one("#transcript", VerticalScroll)
        self.query_one("#chat-empty").display = False
        answer = AnswerView(classes="answer")
        attachments, self.attachments = self.attachments, []
        transcript.mount(UserMessage(text, [a.path for a in attachments]))
        transcript.mount(answer)
        transcript.anchor()
        self._show_attachments()
        first = next((m["content"] for m in self.history if m["role"] == "user"), text)
        self.last_sent, self.last_answered = (text, attachments), False
        self.streaming = True
        name = None if self.continued else ((first or text)[:60] or None)
        self.stream_answer(text, attachments, answer, name)

    @work(group="chat", exclusive=True, exit_on_error=False, description="Chat")
    async def stream_answer(self, text: str, attachments: list[Attachment],
                            answer: AnswerView, name: str | None) -> None:
        """Store the images, send the conversation, stream the answer into ``answer``.

        Escape cancels this worker, which closes the stream and so stops the request.
        """
        stream = Markdown.get_stream(answer.markdown)
        started = self.now()
        parts: list[str] = []
        who = ""
        finished: ChatFinished | None = None
        outcome = "error"
        sent = False
        message_id = "msg_" + secrets.token_hex(6)
        stored_images = False
        conversation_id = self.conversation_id
        waiting = asyncio.create_task(self._show_queue_place(answer, conversation_id))
        try:
            message: dict[str, Any] = {"role": "user", "content": text}
            if attachments:
                # Stored like an upload, so the conversation lists them by path; the
                # engine turns the refs into base64 image parts for the vision model.
                stored_images = True
                message["image_refs"] = await self.client.save_attachments(
                    conversation_id, message_id, attachments)
            self.history.append(message)
            sent = True
            body = {"model": self.selected_model(), "messages": list(self.history),
                    "stream": True, "stream_options": {"include_usage": True}}
            async for event in self.client.chat(body, conversation_id=conversation_id,
                                                display_name=name):
                if isinstance(event, ChatStarted):
                    waiting.cancel()
                    who = f"{event.provider} · {event.model}"
                    answer.set_meta(f"{who} · streaming…")
                elif isinstance(event, ChatDelta):
                    parts.append(event.text)
                    await stream.write(event.text)
                elif isinstance(event, ChatFinished):
                    finished = event
            outcome = "done"
        except ClientError as exc:
            answer.set_meta(f"{who + ' · ' if who else ''}failed: {exc.message}", style="red")
            notify_error(self, exc, "Chat")
        except asyncio.CancelledError:
            outcome = "stopped"
            raise
        finally:
            waiting.cancel()
            await stream.stop()
            self.streaming = False
            seconds = self.now() - started
            if outcome == "error" and not parts:
                if sent:  # nothing came back: the operator may send it again (r)
                    self.history.pop()
                if stored_images:  # and nothing of it stays on disk
                    try:
                        await self.client.discard_attachments(conversation_id, message_id)
                    except ClientError as exc:
                        notify_error(self, exc, "Chat")
            elif parts:
                self.history.append({"role": "assistant", "content": "".join(parts)})
                self.last_answered = outcome == "done"
            if outcome == "stopped":
                answer.set_meta(f"{who + ' · ' if who else ''}stopped after {seconds:.1f} s",
                                style="yellow")
            elif finished is not None:
                answer.set_meta(
                    f"{finished.provider or '?'} · {finished.model or '?'} · "
                    f"{finished.completion_tokens} tokens · {seconds:.1f} s")

    async def _show_queue_place(self, answer: AnswerView, conversation_id: str) -> None:
        """While the request waits for a slot, say where it is in the queue."""
        with contextlib.suppress(ClientError):
            while True:
                await asyncio.sleep(0.5)
                queue = await self.client.queued()
                mine = next((q for q in queue if q.conversation_id == conversation_id), None)
                if mine is not None:
                    answer.set_meta(f"waiting for a free slot · position {mine.position} of "
                                    f"{len(queue)} · {mine.waited_ms / 1000:.1f} s",
                                    style="yellow")

    def action_retry(self) -> None:
        """Send the last message again: after a failure or a stop, as it was (images
        included); after an answer, ask for a new answer in its place."""
        if self.streaming or self.last_sent is None:
            return
        text, attachments = self.last_sent
        # That turn (and whatever answer or part of one it got) is sent again below.
        for i in range(len(self.history) - 1, -1, -1):
            if self.history[i]["role"] == "user":
                if self.history[i].get("content") == text:
                    del self.history[i:]
                break
        self.attachments = list(attachments)
        self.send(text)

    def action_stop(self) -> None:
        if self.streaming:
            self.workers.cancel_group(self, "chat")
        elif self.focused is self.query_one("#message", Input):
            # Leave the message box so 1-4 switch panes again.
            self.query_one("#provider-list", OptionList).focus()

    def action_new_chat(self) -> None:
        if self.streaming:
            self.workers.cancel_group(self, "chat")
        self.history.clear()
        self.attachments.clear()
        self._show_attachments()
        self.conversation_id = new_conversation_id()
        self.continued = False
        transcript = self.query_one("#transcript", VerticalScroll)
        transcript.remove_children([w for w in transcript.children if w.id != "chat-empty"])
        self.query_one("#chat-empty").display = True
        self.query_one("#message", Input).focus()
