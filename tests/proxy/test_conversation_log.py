"""Every completion through the proxy is recorded: under load, and across a SIGTERM."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
from collections import Counter
from pathlib import Path

import httpx
import orjson
from sqlmodel import col, select

from lai.store.db import open_store
from lai.store.models import Conversation, Message, RequestRecord
from tests.fakes.upstream import Behaviour, FakeUpstream
from tests.harness import model, provider


def _sse_usage(text: str) -> tuple[str, dict[str, int]]:
    content, usage = "", {}
    for line in text.split("\n"):
        if not line.startswith("data: ") or line == "data: [DONE]":
            continue
        chunk = orjson.loads(line[6:])
        if chunk.get("usage"):
            usage = chunk["usage"]
        for choice in chunk.get("choices") or []:
            content += choice.get("delta", {}).get("content") or ""
    return content, usage


async def _complete(http: httpx.AsyncClient, cid: str, messages, stream: bool):  # type: ignore[no-untyped-def]
    body = {"model": "small", "messages": messages, "stream": stream}
    if stream:
        body["stream_options"] = {"include_usage": True}
    r = await http.post("/v1/chat/completions", json=body, headers={"X-Conversation-ID": cid})
    assert r.status_code == 200, r.text
    if stream:
        return _sse_usage(r.text)
    data = r.json()
    return data["choices"][0]["message"]["content"], data["usage"]


async def test_200_concurrent_completions_are_recorded_exactly(proxy_factory, upstream):  # type: ignore[no-untyped-def]
    upstream.default = Behaviour(chunks=4, delay=0.005)
    proxy = await proxy_factory(
        [provider("box", upstream.url, max_concurrent=64)],
        [model("small", "box")],
        queue_max_size=400,
        queue_timeout=30,
    )
    limits = httpx.Limits(max_connections=250, max_keepalive_connections=250)
    async with httpx.AsyncClient(base_url=proxy.url, timeout=60, limits=limits,
                                 trust_env=False) as http:
        histories = {f"load-{i:03d}": [{"role": "user", "content": f"question {i}"}]
                     for i in range(200)}
        ids = sorted(histories)

        async def turn() -> dict[str, dict[str, int]]:
            results = await asyncio.gather(*(
                _complete(http, cid, histories[cid], stream=i % 2 == 0)
                for i, cid in enumerate(ids)
            ))
            usage = {}
            for cid, (content, use) in zip(ids, results, strict=True):
                histories[cid] = histories[cid] + [
                    {"role": "assistant", "content": content},
                    {"role": "user", "content": f"and then? ({cid})"},
                ]
                usage[cid] = use
            return usage

        first = await turn()
        await proxy.runtime.recorder.flush()
        store = proxy.runtime.store
        with store.session() as s:
            rows = s.exec(select(RequestRecord)).all()
        assert len(rows) == 200
        assert Counter(r.streaming for r in rows) == {True: 100, False: 100}
        for r in rows:
            assert r.status == "success"
            assert (r.prompt_tokens, r.completion_tokens) == (
                first[r.conversation_id]["prompt_tokens"],
                first[r.conversation_id]["completion_tokens"],
            )

        await turn()  # every client resends its whole history
        await proxy.runtime.recorder.flush()
    with store.session() as s:
        assert s.exec(select(RequestRecord)).all().__len__() == 400
        convs = s.exec(select(Conversation)).all()
        assert len(convs) == 200 and {c.message_count for c in convs} == {4}
        msgs = s.exec(
            select(Message).order_by(col(Message.conversation_id), col(Message.position))
        ).all()
    by_conv: dict[str, list[Message]] = {}
    for m in msgs:
        by_conv.setdefault(m.conversation_id, []).append(m)
    assert len(by_conv) == 200
    for cid, conv_msgs in by_conv.items():
        assert [m.role for m in conv_msgs] == ["user", "assistant", "user", "assistant"], cid
        assert [m.position for m in conv_msgs] == [0, 1, 2, 3]
        assert conv_msgs[1].content == histories[cid][1]["content"]
        assert conv_msgs[1].completion_tokens == 4
    assert proxy.runtime.recorder.stats.failed_writes == 0


def _config(tmp_path: Path, upstream_url: str) -> Path:
    config = tmp_path / "config.toml"
    config.write_text(textwrap.dedent(f"""
        [server]
        auth = false
        data_dir = "data"
        database_url = "sqlite:///data/lai.db"
        shutdown_timeout = 20

        [[providers]]
        id = "box"
        endpoint = "{upstream_url}"
        max_concurrent = 32
        health_check_interval = 3600

        [[models]]
        id = "small"
        provider_id = "box"
    """))
    return config


def test_sigterm_with_requests_in_flight_keeps_every_completed_one(tmp_path: Path) -> None:
    with FakeUpstream() as upstream:
        # Slow answers, so that SIGTERM lands while all of them are being served: each
        # holds its first byte 4 s, so all 20 are in flight together even when a loaded
        # machine takes seconds to send them.
        upstream.default = Behaviour(chunks=5, delay=0.1, first_delay=4.0)
        proc = subprocess.Popen(
            [sys.executable, "-m", "lai.cli", "proxy", "--config",
             str(_config(tmp_path, upstream.url)), "--port", "0"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        try:
            assert proc.stdout is not None
            line = proc.stdout.readline()
            assert "listening on" in line, (line, proc.stderr and proc.stderr.read())
            url = line.rsplit(" ", 1)[1].strip()

            async def run() -> dict[str, int]:
                async with httpx.AsyncClient(base_url=url, timeout=30, trust_env=False) as http:
                    async def one(i: int) -> tuple[str, int]:
                        cid = f"term-{i:02d}"
                        try:
                            body = {"model": "small", "stream": i % 2 == 0,
                                    "messages": [{"role": "user", "content": f"q{i}"}]}
                            r = await http.post("/v1/chat/completions", json=body,
                                                headers={"X-Conversation-ID": cid})
                            complete = r.status_code == 200 and (
                                not body["stream"] or "data: [DONE]" in r.text
                            )
                            return cid, 1 if complete else 0
                        except httpx.HTTPError:
                            return cid, 0

                    tasks = [asyncio.create_task(one(i)) for i in range(20)]
                    await upstream.wait_for_async(lambda: upstream.in_flight >= 20, timeout=15)
                    proc.send_signal(signal.SIGTERM)
                    return dict(await asyncio.gather(*tasks))

            outcome = asyncio.run(run())
            assert proc.wait(timeout=30) == 0, proc.stderr.read() if proc.stderr else ""
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()

    completed = {cid for cid, ok in outcome.items() if ok}
    assert len(completed) == 20  # graceful: in-flight requests were allowed to finish
    store = open_store(f"sqlite:///{tmp_path / 'data' / 'lai.db'}")
    try:
        with store.session() as s:
            recorded = set(s.exec(select(RequestRecord.conversation_id)).all())
            answers = s.exec(select(Message).where(Message.role == "assistant")).all()
    finally:
        store.dispose()
    assert completed <= recorded
    assert {m.conversation_id for m in answers} >= completed
