"""A streamed chat answer as the OpenAI Responses event grammar.

Pure translation, no IO: ``ResponseStream`` turns the chat SSE events a streamed answer
is made of (as the engine passes them on) into Responses events:

    response.created, response.in_progress,
    per reasoning run (the upstream's reasoning_content): response.output_item.added
                   (reasoning), response.reasoning_text.delta..., response.reasoning_text.
                   done, response.output_item.done
    per text run:  response.output_item.added (message), response.content_part.added,
                   response.output_text.delta..., response.output_text.done,
                   response.content_part.done, response.output_item.done
    per tool call: response.output_item.added (function_call), response.function_call_
                   arguments.delta..., response.function_call_arguments.done,
                   response.output_item.done   (custom tools: custom_tool_call items with
                   response.custom_tool_call_input.delta/.done)
    then           response.completed (usage), or response.incomplete (max tokens), or
                   response.failed (the upstream broke, or ended without a finish reason)

Every event carries ``sequence_number`` (0, 1, 2, ...). Text that follows a tool call
opens a new message item; tool calls stay open until the answer ends, since their
argument deltas may come in any order of index.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson

from lai.engine.sse import SSEDecoder
from lai.proxy.responses_output import (
    call_item,
    incomplete_details,
    message_item,
    new_id,
    reasoning_delta,
    reasoning_item,
    response_object,
    response_usage,
    text_part,
)
from lai.proxy.responses_request import ResponsesRequest


@dataclass
class _Call:
    index: int
    """The chat stream's tool call index."""
    item_id: str = ""
    call_id: str = ""
    name: str = ""
    arguments: str = ""
    output_index: int | None = None
    """Set once the item is announced (when its name is known)."""
    custom: bool = False


@dataclass
class _Text:
    item_id: str
    output_index: int
    parts: list[str] = field(default_factory=list)


class ResponseStream:
    """Chat SSE bytes in (``feed``), Responses SSE event bytes out.

    ``start()`` gives the opening events; ``feed(chunk)`` the events for a piece of the
    chat stream; ``finish()`` the closing ones (``response.completed`` and friends), and
    ``finish`` is also right when the chat stream stopped early: the answer then fails.
    After ``finish``, ``response`` is the final ``response`` object and ``message`` the
    assistant chat message it amounts to.
    """

    def __init__(self, req: ResponsesRequest, response_id: str, created_at: int) -> None:
        self.req = req
        self.response_id = response_id
        self.created_at = created_at
        self._decoder = SSEDecoder()
        self._seq = 0
        self._output: list[dict[str, Any] | None] = []
        self._text: _Text | None = None
        self._reasoning: _Text | None = None
        self._calls: dict[int, _Call] = {}
        self._usage: dict[str, Any] | None = None
        self._finish_reason: str | None = None
        self._error: dict[str, Any] | None = None
        self._done = False
        self.finished = False
        self.response: dict[str, Any] | None = None

    # -- encoding ---------------------------------------------------------------------

    def _event(self, kind: str, payload: dict[str, Any]) -> bytes:
        data = {"type": kind, "sequence_number": self._seq, **payload}
        self._seq += 1
        return b"event: " + kind.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"

    def _snapshot(self, status: str, **kw: Any) -> dict[str, Any]:
        output = [o for o in self._output if o is not None]
        return response_object(self.req, self.response_id, self.created_at, status=status,
                               output=output, usage=kw.pop("usage", None), **kw)

    def start(self) -> bytes:
        """``response.created`` and ``response.in_progress``."""
        snap = self._snapshot("in_progress")
        return (self._event("response.created", {"response": snap})
                + self._event("response.in_progress", {"response": snap}))

    # -- chat events in -----------------------------------------------------------------

    def feed(self, chunk: bytes) -> bytes:
        """The Responses events for one piece of the chat SSE stream."""
        out: list[bytes] = []
        for _, data in self._decoder.feed(chunk):
            self._chat_event(data, out)
        return b"".join(out)

    def _chat_event(self, data: bytes, out: list[bytes]) -> None:
        if self._done:
            return
        if data == b"[DONE]":
            self._done = True
            return
        try:
            doc = orjson.loads(data)
        except orjson.JSONDecodeError:
            return  # the engine passes on only JSON; anything else is not ours to show
        if not isinstance(doc, dict):
            return
        err = doc.get("error")
        if err is not None:
            self._error = {
                "code": str(err.get("code") or "upstream_error") if isinstance(err, dict)
                else "upstream_error",
                "message": str(err.get("message") if isinstance(err, dict) else err),
            }
            self._done = True
            return
        if doc.get("usage"):
            self._usage = response_usage(doc["usage"]) or self._usage
        choices = doc.get("choices")
        if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
            return
        choice = choices[0]
        delta = choice.get("delta")
        if isinstance(delta, dict):
            thought = reasoning_delta(delta)
            if thought:
                self._add_reasoning(thought, out)
            text = delta.get("content")
            if isinstance(text, str) and text:
                self._add_text(text, out)
            calls = delta.get("tool_calls")
            for call in calls if isinstance(calls, list) else ():
                if isinstance(call, dict):
                    self._add_call(call, out)
        if isinstance(choice.get("finish_reason"), str):
            self._finish_reason = choice["finish_reason"]

    def _add_reasoning(self, text: str, out: list[bytes]) -> None:
        r = self._reasoning
        if r is None:
            self._close_text(out)
            r = self._reasoning = _Text(new_id("rs"), len(self._output))
            self._output.append(None)
            out.append(self._event("response.output_item.added", {
                "output_index": r.output_index,
                "item": reasoning_item(r.item_id, "", "in_progress")}))
        r.parts.append(text)
        out.append(self._event("response.reasoning_text.delta", {
            "item_id": r.item_id, "output_index": r.output_index, "content_index": 0,
            "delta": text}))

    def _close_reasoning(self, out: list[bytes]) -> None:
        r = self._reasoning
        if r is None:
            return
        self._reasoning = None
        text = "".join(r.parts)
        out.append(self._event("response.reasoning_text.done", {
            "item_id": r.item_id, "output_index": r.output_index, "content_index": 0,
            "text": text}))
        item = reasoning_item(r.item_id, text, "completed")
        self._output[r.output_index] = item
        out.append(self._event("response.output_item.done",
                               {"output_index": r.output_index, "item": item}))

    def _add_text(self, text: str, out: list[bytes]) -> None:
        t = self._text
        if t is None:
            self._close_reasoning(out)
            t = self._text = _Text(new_id("msg"), len(self._output))
            item = message_item(t.item_id, "", "in_progress")
            item["content"] = []
            self._output.append(None)
            out.append(self._event("response.output_item.added",
                                   {"output_index": t.output_index, "item": item}))
            out.append(self._event("response.content_part.added", {
                "item_id": t.item_id, "output_index": t.output_index, "content_index": 0,
                "part": text_part("")}))
        t.parts.append(text)
        out.append(self._event("response.output_text.delta", {
            "item_id": t.item_id, "output_index": t.output_index, "content_index": 0,
            "delta": text, "logprobs": []}))

    def _close_text(self, out: list[bytes]) -> None:
        t = self._text
        if t is None:
            return
        self._text = None
        text = "".join(t.parts)
        where = {"item_id": t.item_id, "output_index": t.output_index, "content_index": 0}
        out.append(self._event("response.output_text.done",
                               {**where, "text": text, "logprobs": []}))
        out.append(self._event("response.content_part.done", {**where, "part": text_part(text)}))
        item = message_item(t.item_id, text, "completed")
        self._output[t.output_index] = item
        out.append(self._event("response.output_item.done",
                               {"output_index": t.output_index, "item": item}))

    def _add_call(self, delta: dict[str, Any], out: list[bytes]) -> None:
        index = delta.get("index", len(self._calls))
        index = index if isinstance(index, int) and not isinstance(index, bool) else 0
        call = self._calls.get(index)
        if call is None:
            call = self._calls[index] = _Call(index)
        if isinstance(delta.get("id"), str) and delta["id"]:
            call.call_id = call.call_id or delta["id"]
        fn = delta.get("function")
        piece = ""
        if isinstance(fn, dict):
            if isinstance(fn.get("name"), str):
                call.name += fn["name"]
            if isinstance(fn.get("arguments"), str):
                piece = fn["arguments"]
        if call.output_index is None:
            if not call.name:
                call.arguments += piece  # announced once its name is known
                return
            self._close_reasoning(out)
            self._close_text(out)
            call.custom = call.name in self.req.tool_names.custom
            call.item_id = new_id("ctc" if call.custom else "fc")
            call.call_id = call.call_id or new_id("call")
            call.output_index = len(self._output)
            self._output.append(None)
            item = call_item(call.item_id, call.call_id, call.name, "", "in_progress",
                             self.req.tool_names)
            out.append(self._event("response.output_item.added",
                                   {"output_index": call.output_index, "item": item}))
            piece, call.arguments = call.arguments + piece, ""
        if piece:
            call.arguments += piece
            if not call.custom:  # a custom tool's input is known only once complete
                out.append(self._event("response.function_call_arguments.delta", {
                    "item_id": call.item_id, "output_index": call.output_index,
                    "delta": piece}))

    def _close_calls(self, out: list[bytes]) -> None:
        for call in sorted(self._calls.values(), key=lambda c: c.output_index or 0):
            if call.output_index is None:
                continue
            where = {"item_id": call.item_id, "output_index": call.output_index}
            item = call_item(call.item_id, call.call_id, call.name, call.arguments,
                             "completed", self.req.tool_names)
            if call.custom:
                out.append(self._event("response.custom_tool_call_input.delta",
                                       {**where, "delta": item["input"]}))
                out.append(self._event("response.custom_tool_call_input.done",
                                       {**where, "input": item["input"]}))
            else:
                out.append(self._event("response.function_call_arguments.done",
                                       {**where, "name": item["name"],
                                        "arguments": call.arguments}))
            self._output[call.output_index] = item
            out.append(self._event("response.output_item.done",
                                   {"output_index": call.output_index, "item": item}))

    # -- the end --------------------------------------------------------------------------

    def _partial_output(self) -> None:
        """Open items as they stand, marked incomplete (the output of a failed answer)."""
        if self._text is not None:
            t = self._text
            self._output[t.output_index] = message_item(t.item_id, "".join(t.parts),
                                                         "incomplete")
        if self._reasoning is not None:
            r = self._reasoning
            self._output[r.output_index] = reasoning_item(r.item_id, "".join(r.parts),
                                                           "incomplete")
        for call in self._calls.values():
            if call.output_index is not None and self._output[call.output_index] is None:
                self._output[call.output_index] = call_item(
                    call.item_id, call.call_id, call.name, call.arguments, "incomplete",
                    self.req.tool_names)

    def finish(self) -> bytes:
        """The closing events; idempotent (a second call gives nothing)."""
        if self.finished:
            return b""
        self.finished = True
        for _, data in self._decoder.close():
            self._chat_event(data, [])
        out: list[bytes] = []
        if self._error is None and self._finish_reason is None:
            self._error = {"code": "upstream_error",
                           "message": "The upstream ended the answer without a finish "
                                      "reason (truncated answer)."}
        if self._error is not None:
            self._partial_output()
            self.response = self._snapshot("failed", usage=self._usage, error=self._error)
            out.append(self._event("response.failed", {"response": self.response}))
            return b"".join(out)
        self._close_reasoning(out)
        self._close_text(out)
        self._close_calls(out)
        incomplete = incomplete_details(self._finish_reason)
        if incomplete:
            self.response = self._snapshot("incomplete", usage=self._usage,
                                           incomplete=incomplete)
            out.append(self._event("response.incomplete", {"response": self.response}))
        else:
            self.response = self._snapshot("completed", usage=self._usage)
            out.append(self._event("response.completed", {"response": self.response}))
        return b"".join(out)

    @property
    def succeeded(self) -> bool:
        return self.response is not None and self.response["status"] != "failed"

    def failure_event(self, code: str, message: str) -> bytes:
        """``response.failed`` for a stream lai itself had to stop (an exception)."""
        if self.finished:
            return b""
        self.finished = True
        self._error = {"code": code, "message": message}
        self._partial_output()
        self.response = self._snapshot("failed", usage=self._usage, error=self._error)
        return self._event("response.failed", {"response": self.response})
