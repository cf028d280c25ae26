"""Secrets never leave: an upstream that quotes the operator's key back ("Incorrect API
key provided: Bearer sk-...") does not put it in front of API clients, in the store, in
``/v1/providers``, in engine events or in the log."""

from __future__ import annotations

import io
import logging
import signal
import subprocess
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import orjson
import pytest
from sqlmodel import select

from lai.engine.events import event_dict
from lai.engine.redact import RedactingFilter, Redactor, install_log_redaction
from lai.store.models import RequestRecord
from tests.fakes.anthropic import FakeAnthropic
from tests.fakes.upstream import Behaviour, FakeUpstream
from tests.harness import RunningProxy, model, provider
from tests.proxy.test_openai_sdk import start_proxy_process

KEY_A = "sk-live-0123456789abcdefABCDEF"
"""Shaped like a key: redacted even if it were not configured."""
KEY_B = "zk.9f8e7d6c5b4a3f2e1d"
"""Not shaped like anything: only knowing the configured secret catches it."""
SECRETS = (KEY_A, KEY_B, "9f8e7d6c5b4a")


def quoting(key: str) -> str:
    return f"Incorrect API key provided: Bearer {key}. Also tried {key} without the prefix."


def assert_clean(text: str, where: str) -> None:
    for secret in SECRETS:
        assert secret not in text, f"{where} leaks {secret!r}: {text}"


async def rows(proxy: RunningProxy) -> list[RequestRecord]:
    await proxy.runtime.recorder.flush()
    with proxy.runtime.store.session() as s:
        return list(s.exec(select(RequestRecord)).all())


@pytest.fixture
async def two_boxes(proxy_factory, upstream_factory):  # type: ignore[no-untyped-def]
    a, b = upstream_factory(), upstream_factory()
    proxy = await proxy_factory(
        [provider("a", a.url, priority=1, auth_type="bearer", auth_secret=KEY_A),
         provider("b", b.url, priority=2, auth_type="api_key", auth_secret=KEY_B)],
        [model("small", "a"), model("small", "b")])
    events: list[dict[str, Any]] = []
    proxy.engine.events.subscribe(lambda e: events.append(event_dict(e)))
    return proxy, a, b, events


def sdk(proxy: RunningProxy) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=proxy.url + "/v1", api_key="unused", max_retries=0)


async def test_upstream_401_quoting_the_key_reaches_nobody(two_boxes, caplog) -> None:
    proxy, a, b, events = two_boxes
    caplog.set_level(logging.INFO)
    a.script(Behaviour(mode="status", status=401, error_message=quoting(KEY_A)))
    with pytest.raises(openai.AuthenticationError) as caught:
        await sdk(proxy).chat.completions.create(
            model="small", messages=[{"role": "user", "content": "hi"}])
    err = caught.value
    assert err.status_code == 401 and err.code == "upstream_rejected"
    assert "Incorrect API key provided: Bearer [redacted]" in err.message
    assert_clean(err.message, "the client's 401")
    assert a.requests[-1].headers["authorization"] == f"Bearer {KEY_A}"  # it was sent

    # Later, both boxes fail quoting their keys: the client's 502 names both failures.
    a.script(*[Behaviour(mode="status", status=500, error_message=quoting(KEY_A))] * 2)
    b.script(*[Behaviour(mode="status", status=503, error_message=quoting(KEY_B))] * 2)
    with pytest.raises(openai.APIStatusError) as caught:
        await sdk(proxy).chat.completions.create(
            model="small", messages=[{"role": "user", "content": "hi"}])
    err = caught.value
    assert err.status_code == 502 and "a: HTTP 500" in err.message and "b: HTTP 503" in err.message
    assert_clean(err.message, "the client's 502")

    listed = (await proxy.http.get("/v1/providers")).json()["data"]
    assert {p["id"]: bool(p["last_error"]) for p in listed} == {"a": True, "b": True}
    assert_clean(orjson.dumps(listed).decode(), "/v1/providers")

    recorded = await rows(proxy)
    assert [r.error_code for r in recorded] == ["upstream_rejected", "upstream_error"]
    for r in recorded:
        assert "[redacted]" in (r.error_message or "")
        assert_clean(r.error_message or "", "the requests table")
    assert any(e["kind"] == "failover" for e in events)
    assert_clean(orjson.dumps(events).decode(), "engine events")
    assert "failing over" in caplog.text
    assert_clean(caplog.text, "the log")


@pytest.mark.parametrize("error_chunk", [
    {"error": {"message": quoting(KEY_A), "type": "auth", "param": f"Bearer {KEY_A}"}},
    {"object": "error", "message": quoting(KEY_A), "type": "BadRequestError", "code": 401},
], ids=["openai", "vllm"])
async def test_stream_error_quoting_the_key_is_redacted(two_boxes, error_chunk) -> None:
    proxy, a, _b, events = two_boxes
    role = {"id": "c", "model": "m", "choices": [{"index": 0, "delta": {"content": "x"}}]}
    a.default = Behaviour(raw_events=[role, error_chunk])
    r = await proxy.http.post("/v1/chat/completions", json={
        "model": "small", "stream": True, "messages": [{"role": "user", "content": "hi"}]})
    assert r.status_code == 200 and "Bearer [redacted]" in r.text
    assert r.text.endswith("data: [DONE]\n\n")
    assert_clean(r.text, "the client's stream")
    (row,) = await rows(proxy)
    assert row.status == "error"
    assert_clean(row.error_message or "", "the requests table")
    assert_clean(orjson.dumps(proxy.engine.provider("a").to_dict()).decode(), "the provider")
    assert_clean(orjson.dumps(events).decode(), "engine events")
    with pytest.raises(openai.APIError) as caught:
        stream = await sdk(proxy).chat.completions.create(
            model="small", messages=[{"role": "user", "content": "hi"}], stream=True)
        async for _ in stream:
            pass
    assert "Bearer [redacted]" in caught.value.message
    assert_clean(caught.value.message, "the SDK's error")


@pytest.fixture
def claude_fake() -> Iterator[FakeAnthropic]:
    with FakeAnthropic(api_key=KEY_B) as fake:
        yield fake


async def test_anthropic_errors_quoting_the_key_are_redacted(proxy_factory, claude_fake) -> None:
    proxy = await proxy_factory(
        [provider("claude", claude_fake.url, type="anthropic", auth_type="api_key",
                  auth_secret=KEY_B)], [model("sonnet", "claude")])
    claude_fake.status, claude_fake.error_message = 403, f"key {KEY_B} may not use this model"
    r = await proxy.http.post("/v1/chat/completions", json={
        "model": "sonnet", "messages": [{"role": "user", "content": "hi"}]})
    assert r.status_code == 403 and "key [redacted] may not" in r.text
    assert_clean(r.text, "the client's 403")
    claude_fake.status = None
    claude_fake.raw_events = [
        b'event: message_start\ndata: {"type":"message_start","message":{"id":"m"}}\n\n',
        b'event: content_block_delta\ndata: {"type":"content_block_delta","index":0,'
        b'"delta":{"type":"text_delta","text":"hi"}}\n\n',
        b'event: error\ndata: ' + orjson.dumps({"type": "error", "error": {
            "type": "authentication_error", "message": quoting(KEY_B)}}) + b"\n\n"]
    r = await proxy.http.post("/v1/chat/completions", json={
        "model": "sonnet", "stream": True, "messages": [{"role": "user", "content": "hi"}]})
    assert "[redacted]" in r.text and r.text.endswith("data: [DONE]\n\n")
    assert_clean(r.text, "the client's stream")
    for row in await rows(proxy):
        assert_clean(row.error_message or "", "the requests table")


# --- the log ------------------------------------------------------------------------------


def test_log_filter_redacts_messages_arguments_and_tracebacks() -> None:
    logger = logging.getLogger("tests.secrets.filter")
    logger.propagate = False
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    logger.addHandler(handler)
    try:
        install_log_redaction(Redactor([KEY_B]), logger)
        install_log_redaction(Redactor([KEY_B]), logger)  # again: replaces, not stacks
        assert len(handler.filters) == 1
        logger.warning("upstream said %s", quoting(KEY_B))
        try:
            raise RuntimeError(f"Authorization: Bearer {KEY_A}")
        except RuntimeError:
            logger.exception("request failed with key=%s", KEY_B)
        logger.warning("a lai key lai_0123456789abcdef0123456789abcdef; its prefix lai_0123")
    finally:
        logger.removeHandler(handler)
    text = out.getvalue()
    assert_clean(text, "the log")
    assert "lai_0123456789" not in text and "prefix lai_0123" in text
    assert text.count("[redacted]") >= 5 and "RuntimeError" in text


def test_tui_logging_installs_the_filter(tmp_path: Path, caplog) -> None:
    from lai.commands.tui import setup_logging
    from tests.harness import make_settings

    settings = make_settings(tmp_path, [provider("b", "http://127.0.0.1:9", auth_type="bearer",
                                                 auth_secret=KEY_B)], [model("small", "b")])
    root = logging.getLogger()
    try:
        setup_logging(settings)  # logging.basicConfig is a no-op under pytest's handlers
        logging.getLogger("lai.tui").warning("the upstream answered: %s", KEY_B)
    finally:
        for handler in root.handlers:
            for f in [f for f in handler.filters if isinstance(f, RedactingFilter)]:
                handler.removeFilter(f)
    assert "the upstream answered: [redacted]" in caplog.text
    assert_clean(caplog.text, "the TUI log")


def test_lai_proxy_log_never_shows_the_key(
    tmp_path: Path, upstream: FakeUpstream, monkeypatch: pytest.MonkeyPatch
) -> None:
    upstream.default = Behaviour(mode="status", status=500, error_message=quoting(KEY_B))
    config = tmp_path / "config.toml"
    config.write_text(textwrap.dedent(f"""
        [server]
        auth = false
        data_dir = "data"
        database_url = "sqlite:///data/lai.db"

        [[providers]]
        id = "box"
        endpoint = "{upstream.url}"
        auth_type = "bearer"
        auth_secret = "env:LAI_TEST_BOX_KEY"

        [[models]]
        id = "small"
        provider_id = "box"
    """))
    monkeypatch.setenv("LAI_TEST_BOX_KEY", KEY_B)
    proc, url = start_proxy_process(config)
    try:
        client = openai.OpenAI(base_url=url + "/v1", api_key="unused", max_retries=0)
        with pytest.raises(openai.APIStatusError) as caught:
            client.chat.completions.create(
                model="small", messages=[{"role": "user", "content": "hi"}])
        assert caught.value.status_code == 502
        assert_clean(caught.value.message, "the client's 502")
        assert upstream.requests[-1].headers["authorization"] == f"Bearer {KEY_B}"
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            _, stderr = proc.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise
    assert "failing over" in stderr and "[redacted]" in stderr
    assert_clean(stderr, "the proxy's log")


async def test_a_key_added_by_a_config_reload_is_redacted_too(
    tmp_path: Path, upstream_factory: Any
) -> None:
    from lai.config.loader import load_settings
    from tests.harness import start_proxy

    a, b = upstream_factory(), upstream_factory()
    b.default = Behaviour(mode="status", status=500, error_message=quoting(KEY_B))
    config = tmp_path / "config.toml"
    base = textwrap.dedent(f"""
        [server]
        database_url = "sqlite:///lai.db"
        data_dir = "data"
        auth = false

        [[providers]]
        id = "a"
        endpoint = "{a.url}"
        health_check_interval = 3600

        [[models]]
        id = "ma"
        provider_id = "a"
    """)
    config.write_text(base)
    proxy = await start_proxy(load_settings(config)[0])
    try:
        config.write_text(base + textwrap.dedent(f"""
            [[providers]]
            id = "b"
            endpoint = "{b.url}"
            auth_type = "bearer"
            auth_secret = "{KEY_B}"
            health_check_interval = 3600

            [[models]]
            id = "mb"
            provider_id = "b"
        """))
        resp = await proxy.http.post("/admin/config/reload")
        assert resp.status_code == 200, resp.text
        assert_clean(resp.text, "the reload answer")
        r = await proxy.http.post("/v1/chat/completions", json={
            "model": "mb", "messages": [{"role": "user", "content": "hi"}]})
        assert r.status_code == 502 and "[redacted]" in r.text
        assert_clean(r.text, "the client's 502")
        assert_clean((await proxy.http.get("/v1/providers")).text, "/v1/providers")
        for row in await rows(proxy):
            assert_clean(row.error_message or "", "the requests table")
        assert b.requests[-1].headers["authorization"] == f"Bearer {KEY_B}"
    finally:
        await proxy.stop()
