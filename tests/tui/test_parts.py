"""The TUI's plain-Python parts: stream reading, board state, path completion, the probe,
and the deferred client's start-up failure."""

from __future__ import annotations

import socket
import threading
from pathlib import Path
from typing import Any

import orjson
import pytest

from lai.engine.types import InFlight, Queued
from lai.tui.app import LaiApp
from lai.tui.board_state import BoardState, queue_after
from lai.tui.chatstream import ChatStreamReader
from lai.tui.client import ChatDelta, ClientError
from lai.tui.deferred import DeferredClient
from lai.tui.paths import complete_path
from lai.tui.probe import proxy_answers
from tests.tui.conftest import SIZE, wait_for


def sse(obj: Any) -> bytes:
    return b"data: " + orjson.dumps(obj) + b"\n\n"


def test_stream_reader_gives_text_provider_and_usage() -> None:
    reader = ChatStreamReader()
    chunk = {"model": "qwen", "provider": "gpu",
             "choices": [{"delta": {"content": "Hel"}, "finish_reason": None}]}
    data = sse(chunk) + sse({**chunk, "choices": [{"delta": {"content": "lo"},
                                                   "finish_reason": "stop"}]})
    # Split mid-event: the reader must carry the rest over.
    events = reader.feed(data[:30]) + reader.feed(data[30:])
    events += reader.feed(sse({"provider": "gpu", "choices": [],
                               "usage": {"prompt_tokens": 7, "completion_tokens": 2}}))
    events += reader.feed(b"data: [DONE]\n\n")
    assert events == [ChatDelta("Hel"), ChatDelta("lo")]
    done = reader.finish()
    assert (done.provider, done.model, done.prompt_tokens, done.completion_tokens,
            done.finish_reason) == ("gpu", "qwen", 7, 2, "stop")


def test_stream_reader_raises_the_error_event() -> None:
    reader = ChatStreamReader("gpu", "qwen")
    body = {"error": {"message": "gpu: stream broke", "type": "api_error",
                      "code": "upstream_error", "param": None}}
    with pytest.raises(ClientError, match="gpu: stream broke"):
        reader.feed(sse(body))


def test_board_state_follows_events_and_buckets_by_event_time() -> None:
    state = BoardState(bucket_seconds=10, buckets=6)
    state.apply({"kind": "snapshot", "providers": [
        {"id": "gpu", "status": "healthy", "active_requests": 0, "max_concurrent": 2}]})
    state.apply({"kind": "request_started", "request_id": "r1", "key_name": "k",
                 "model_id": "qwen", "provider_id": "gpu", "at": 100.0})
    assert state.providers["gpu"].active_requests == 1 and list(state.flights) == ["r1"]
    state.apply({"kind": "request_finished", "request_id": "r1", "provider_id": "gpu",
                 "status": "success", "started_at": 100.0, "duration_ms": 3000.0})
    state.apply({"kind": "health_changed", "provider_id": "gpu", "old": "healthy",
                 "new": "unhealthy", "at": 104.0, "latency_ms": None, "error": "refused"})
    assert not state.flights and state.providers["gpu"].active_requests == 0
    assert state.providers["gpu"].status == "unhealthy"
    assert state.providers["gpu"].last_error == "refused"
    assert state.rate_series(now=115.0) == [0, 0, 0, 0, 0.1, 0]
    assert state.latency_series(now=115.0)[-2] == 3000.0
    state.set_flights([InFlight("r2", None, "qwen", "gpu", 110.0, True, 12)])
    assert state.flights["r2"].tokens == 12
    # Old buckets are dropped as new ones arrive: the history stays bounded.
    state.apply({"kind": "request_finished", "request_id": "r3", "provider_id": "gpu",
                 "status": "success", "started_at": 1000.0, "duration_ms": 1.0})
    assert len(state._history) == 1


def test_a_queue_event_moves_the_waiting_requests_up_at_once() -> None:
    polled = [Queued(f"r{i}", "k", "auto", 1, i, 100.0, 50.0) for i in (1, 2, 3)]
    after = queue_after(polled, ["r2", "r3", "r9"])  # r1 served, r9 not polled yet
    assert [(q.request_id, q.position) for q in after] == [("r2", 1), ("r3", 2)]
    assert queue_after(polled, None) == polled  # an event from an older proxy
    assert queue_after(polled, []) == []


def test_complete_path(tmp_path: Path) -> None:
    (tmp_path / "pictures").mkdir()
    (tmp_path / "pictures" / "cat-1.png").touch()
    (tmp_path / "pictures" / "cat-2.png").touch()
    assert complete_path(f"{tmp_path}/pic") == f"{tmp_path}/pictures/"
    assert complete_path(f"{tmp_path}/pictures/c") == f"{tmp_path}/pictures/cat-"
    assert complete_path(f"{tmp_path}/pictures/cat-") is None  # ambiguous: nothing to add
    assert complete_path(f"{tmp_path}/nowhere/x") is None


def test_probe_needs_an_http_200_on_the_socket(tmp_path: Path) -> None:
    path = tmp_path / "lai.sock"
    assert not proxy_answers(path)
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(path))
    server.listen(1)

    def answer() -> None:
        conn, _ = server.accept()
        conn.recv(1024)
        conn.sendall(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}")
        conn.close()

    thread = threading.Thread(target=answer)
    thread.start()
    try:
        assert proxy_answers(path)
    finally:
        thread.join(5)
        server.close()
    assert not proxy_answers(path)  # a stale socket file: nobody listens


async def test_a_client_that_cannot_start_is_one_notification() -> None:
    def broken() -> Any:
        raise ValueError("Could not parse SQLAlchemy URL from string 'nope'")

    app = LaiApp(DeferredClient("embedded", "/srv/lai/config.toml", broken))
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: app._notifications, what="a notification")
        await pilot.pause(1.2)  # the board polls again; the same error is not repeated
        notes = list(app._notifications)
        assert len(notes) == 1 and notes[0].severity == "error"
        assert notes[0].message == ("lai could not start: Could not parse SQLAlchemy URL "
                                    "from string 'nope'")
