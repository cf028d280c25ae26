"""``answer_errors``: what ends a chat or Responses request becomes its answer, or goes on
to the server once the answer has begun; the disconnect watch is let go on every way out,
and, told by lai's HTTP/1.1 protocol that the client has gone, cancels its request."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import orjson
import pytest

from lai.errors import ModelNotFound
from lai.proxy.connection import DISCONNECT, Disconnected
from lai.proxy.routes.chat import _ClientGone, _Disconnect, _HTTPError, answer_errors


class Sent:
    def __init__(self) -> None:
        self.messages: list[dict[str, Any]] = []

    async def __call__(self, message: dict[str, Any]) -> None:
        self.messages.append(message)

    def answer(self) -> tuple[int, dict[bytes, bytes], dict[str, Any]]:
        start, body = self.messages
        assert body["more_body"] is False
        return start["status"], dict(start["headers"]), orjson.loads(body["body"])


async def never() -> dict[str, Any]:
    await asyncio.Event().wait()
    raise AssertionError


async def ended_by(err: BaseException, *, started: bool = False) -> tuple[Sent, _Disconnect]:
    sent = Sent()
    async with answer_errors(sent) as ex:
        watch = ex.watch = _Disconnect(never)
        ex.started = started
        raise err
    return sent, watch


async def watched_out(watch: _Disconnect) -> bool:
    await asyncio.sleep(0)
    return watch._watch.done()


@pytest.mark.parametrize(("err", "status", "code"), [
    (ModelNotFound("No model 'x'."), 404, "model_not_found"),
    (_HTTPError(413, "too big"), 413, "request_too_large"),
    (RuntimeError("boom"), 500, "internal_error"),
])
async def test_an_error_before_the_answer_is_its_json_answer(err, status, code, caplog) -> None:  # type: ignore[no-untyped-def]
    caplog.set_level(logging.ERROR, logger="lai.proxy")
    sent, watch = await ended_by(err)
    got, headers, body = sent.answer()
    assert got == status and headers[b"content-type"] == b"application/json"
    assert body["error"]["code"] == code
    assert await watched_out(watch)
    logged = [r for r in caplog.records if r.getMessage() == "unhandled error"]
    assert len(logged) == (status == 500)
    assert all(r.exc_info and r.exc_info[1] is err for r in logged)


@pytest.mark.parametrize("err", [ModelNotFound("No model 'x'."), RuntimeError("boom")])
async def test_an_error_once_the_answer_has_begun_goes_on_to_the_server(err) -> None:  # type: ignore[no-untyped-def]
    sent = Sent()
    with pytest.raises(type(err)) as raised:
        async with answer_errors(sent) as ex:
            watch = ex.watch = _Disconnect(never)
            ex.started = True
            raise err
    assert raised.value is err and sent.messages == []
    assert await watched_out(watch)


async def test_a_client_gone_gets_nothing_and_a_cancellation_not_its_own_goes_on() -> None:
    sent, watch = await ended_by(_ClientGone())
    assert sent.messages == [] and await watched_out(watch)

    sent = Sent()
    with pytest.raises(asyncio.CancelledError):
        async with answer_errors(sent) as ex:
            watch = ex.watch = _Disconnect(never)
            raise asyncio.CancelledError
    assert sent.messages == [] and await watched_out(watch)

    with pytest.raises(KeyboardInterrupt):
        await ended_by(KeyboardInterrupt())


async def test_the_cancellation_of_a_client_gone_ends_the_request_quietly() -> None:
    gone: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    sent = Sent()

    async def serve() -> str:
        async with answer_errors(sent) as ex:
            ex.watch = _Disconnect(gone.get)
            await asyncio.Event().wait()  # the engine, waiting on its upstream
        return "ended"

    task = asyncio.ensure_future(serve())
    await asyncio.sleep(0)
    await gone.put({"type": "http.disconnect"})
    assert await asyncio.wait_for(task, 5) == "ended"
    assert task.cancelling() == 0  # uncancelled: the serving task goes on normally
    assert sent.messages == []


async def serving(told: Disconnected, *, gone_first: bool = False, done_first: bool = False
                  ) -> tuple[asyncio.Task[str], _Disconnect | None]:
    """A request served under a watch that lai's protocol tells (``DISCONNECT``)."""
    made: list[_Disconnect] = []
    if gone_first:
        told.fire()

    async def serve() -> str:
        async with answer_errors(Sent()) as ex:
            watch = ex.watch = _Disconnect(never, {"extensions": {DISCONNECT: told}})
            made.append(watch)
            if done_first:
                watch.done()
            await asyncio.sleep(0.05)  # the engine, waiting on its upstream
            return "answered"
        return "client gone"

    task = asyncio.ensure_future(serve())
    await asyncio.sleep(0)
    return task, (made[0] if made else None)


async def test_a_watch_told_by_the_protocol_cancels_the_request_when_its_client_goes() -> None:
    told = Disconnected()
    task, watch = await serving(told)
    assert watch is not None and watch._watch is None  # no task waits on receive
    told.fire()
    assert await task == "client gone" and watch.gone

    # Gone before the watch began: the request is cancelled at its next wait.
    task, watch = await serving(Disconnected(), gone_first=True)
    assert await task == "client gone" and watch is not None and watch.gone

    # A watch that is done lets its request finish, whatever the connection does next.
    told = Disconnected()
    task, watch = await serving(told, done_first=True)
    told.fire()
    assert await task == "answered" and watch is not None and not watch.gone
