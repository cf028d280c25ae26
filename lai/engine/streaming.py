"""A streamed answer in progress: upstream SSE in, the client's SSE bytes out.

The engine hands a stream over once its first event is in hand (until then it can still
fail over); from then on a failure ends the stream with an OpenAI-shaped error event.
Closing it, whether it finished, broke or the client left, frees the provider's slot,
closes the upstream response (which cancels the upstream request) and reports the
request.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

import httpx
import orjson

from lai.engine.adapters.base import StreamParser
from lai.engine.health import describe_http_error
from lai.engine.routing import Candidate
from lai.engine.run import TIMEOUTS, ProviderFailed, Run
from lai.engine.slots import model_key
from lai.engine.sse import SSEDecoder, error_event
from lai.engine.types import RequestContext, Usage
from lai.errors import LaiError, UpstreamError
from lai.transport import BODY_COMPLETE, Streamed

if TYPE_CHECKING:
    from lai.engine.engine import Engine

log = logging.getLogger("lai.engine")


class EngineStream:
    """A streamed answer in progress. Iterate for SSE bytes; always ``aclose``."""

    def __init__(
        self,
        engine: Engine,
        run: Run,
        cand: Candidate,
        resp: httpx.Response | Streamed,
        parser: StreamParser,
        t_sent: float,
    ) -> None:
        self._engine = engine
        self._run = run
        self.candidate = cand
        self.provider_id = cand.provider.id
        self.model_id = cand.model.id
        self._resp = resp
        self._parser = parser
        self._decoder = SSEDecoder()
        self._chunks = resp.aiter_bytes()
        self._pending: list[bytes] = []
        self._t_sent = t_sent
        self._error: LaiError | None = None
        self._provider_failed: str | None = None
        self._closed = False
        self._gen: AsyncIterator[bytes] | None = None
        run.stream_state = parser.state

    @property
    def context(self) -> RequestContext:
        return self._run.ctx

    @property
    def queue_wait_ms(self) -> float | None:
        """How long the request waited in the queue for a slot; None when it found one
        at once."""
        return self._run.queue_ms if self._run.queued else None

    async def _next_chunk(self) -> bytes | None:
        try:
            return await self._chunks.__anext__()
        except StopAsyncIteration:
            return None

    def _feed(self, chunk: bytes) -> None:
        for event, data in self._decoder.feed(chunk):
            self._parse(event, data)

    def _parse(self, event: bytes | None, data: bytes) -> None:
        state = self._parser.state
        if state.done and state.error:
            return  # the parser gave up on this stream; nothing after that goes out
        try:
            out = self._parser.feed(event, data)
        except Exception:  # parsers never raise; if one does, the stream still ends cleanly
            log.exception("request %s: the %s stream parser failed", self._run.ctx.request_id,
                          self.provider_id)
            state.error, state.done = "sent a stream chunk lai could not read", True
            err = UpstreamError(f"{self.provider_id} {state.error}; the answer is incomplete.")
            out = error_event(orjson.dumps(err.to_dict()))
        if out is not None:
            self._pending.append(out)

    async def first_event(self) -> None:
        """Read until the first event for the client. Raises ProviderFailed or UpstreamTimeout
        (after closing the upstream response) when the stream dies before it."""
        state = self._parser.state
        try:
            while not self._pending and not state.done:
                chunk = await self._next_chunk()
                if chunk is None:
                    break
                self._feed(chunk)
        except TIMEOUTS as exc:
            await self._resp.aclose()
            raise self._engine._timeout_error(self.candidate, exc) from None
        except httpx.HTTPError as exc:
            await self._resp.aclose()
            reason = f"stream broke before its first event: {describe_http_error(exc)}"
            raise ProviderFailed(reason) from None
        if not self._pending or (state.error and not state.content_events):
            await self._resp.aclose()
            self._run.upstream_ms += (self._engine.clock.monotonic() - self._t_sent) * 1000
            if state.error:
                raise ProviderFailed(f"stream error before any content: {state.error}")
            raise ProviderFailed("stream ended before any content (truncated: no finish_reason)")

    def __aiter__(self) -> AsyncIterator[bytes]:
        if self._gen is None:
            self._gen = self._generate()
        return self._gen

    async def _generate(self) -> AsyncIterator[bytes]:
        engine = self._engine
        run = self._run
        state = self._parser.state
        try:
            while True:
                if self._pending:
                    pending, self._pending = self._pending, []
                    if run.ttft_ms is None:
                        run.ttft_ms = (engine.clock.monotonic() - run.t0) * 1000
                    # The events of one upstream read go out together: one write to
                    # the client instead of one per event when tokens come in bursts.
                    yield pending[0] if len(pending) == 1 else b"".join(pending)
                if state.done:
                    break
                try:
                    chunk = await self._next_chunk()
                except TIMEOUTS as exc:
                    self._error = engine._timeout_error(self.candidate, exc)
                    break
                except httpx.HTTPError as exc:
                    reason = f"stream broke after it started: {describe_http_error(exc)}"
                    self._provider_failed = reason
                    self._error = UpstreamError(f"{self.provider_id}: {reason}")
                    break
                if chunk is None:
                    for event, data in self._decoder.close():
                        self._parse(event, data)
                    if self._pending:
                        continue
                    break
                self._feed(chunk)
            if self._error is None:
                if state.error:
                    self._provider_failed = f"upstream error in stream: {state.error}"
                    self._error = UpstreamError(f"{self.provider_id}: {state.error}")
                elif state.finish_reason is None:
                    self._provider_failed = "stream ended without a finish_reason (truncated)"
                    self._error = UpstreamError(
                        f"{self.provider_id} ended the stream early, without a finish_reason "
                        f"(truncated answer)."
                    )
            if self._error is not None and not state.error:
                yield error_event(orjson.dumps(self._error.to_dict()))
            yield self._parser.end()
        finally:
            await self._finish()

    async def aclose(self) -> None:
        """Stop the stream (if still running), close the upstream, free the slot, report."""
        if self._gen is not None:
            await self._gen.aclose()  # type: ignore[attr-defined]
        await self._finish()

    async def _read_to_end(self) -> None:
        """When the upstream's whole answer has arrived, read it to its end: the async
        generator under ``aiter_bytes`` (a chain of them for an ``httpx.Response``) then
        ends by itself. Left suspended, each is closed when it is collected, by a task
        the event loop schedules through its thread-safe wake-up (an eventfd write and
        an extra turn of the loop) (bench/README.md, "Where the CPU went")."""
        body_complete = self._resp.extensions.get(BODY_COMPLETE)
        if body_complete is None or not body_complete():
            return  # more is on its way, or another transport: close it as it is
        try:
            while await self._next_chunk() is not None:
                pass
        except httpx.HTTPError:
            pass

    async def _finish(self) -> None:
        if self._closed:
            return
        self._closed = True
        engine, run, cand = self._engine, self._run, self.candidate
        pid = cand.provider.id
        state = self._parser.state
        complete = state.done or state.finish_reason is not None
        cancelled = self._error is None and not complete and self._provider_failed is None
        try:
            try:
                if complete:
                    await self._read_to_end()
            finally:  # whatever the reading raised (a cancellation too), let go of it
                await self._resp.aclose()
        finally:
            run.upstream_ms += (engine.clock.monotonic() - self._t_sent) * 1000
            engine.slots.release(pid, key=run.ctx.key_name,
                                 model=model_key(pid, cand.model.id))
            run.candidate = None
            engine._running.pop(run.ctx.request_id, None)
        if self._provider_failed:
            engine.health.record_failure(pid, self._provider_failed)
        elif self._error is None and not cancelled:
            engine.health.record_success(pid)
            engine.states[pid].warm[cand.model.id] = engine.clock.monotonic()
        usage = state.usage or Usage(run.shape.prompt_tokens, state.content_events, True)
        if state.usage is not None and not state.usage.completion_tokens and state.content_events:
            usage = Usage(state.usage.prompt_tokens, state.content_events, True)
        engine._finish(
            run, run.body, run.ctx, cand=cand, error=self._error,
            cancelled=cancelled, usage=usage,
            message=state.message() if (state.content or state.tool_calls) else None,
            finish_reason=state.finish_reason,
        )
