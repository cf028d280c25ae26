"""The official openai SDK against `lai proxy` started as a real subprocess."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import openai
import pytest

from tests.fakes.upstream import Behaviour, FakeUpstream


def start_proxy_process(config: Path) -> tuple[subprocess.Popen[str], str]:
    """``lai proxy --port 0`` as a subprocess; returns it and its base URL."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "lai.cli", "proxy", "--config", str(config), "--port", "0"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if "listening on" not in line:
        proc.kill()
        raise AssertionError(f"proxy did not start: {line!r} {proc.stderr.read()}")
    return proc, line.rsplit(" ", 1)[1].strip()


@pytest.fixture
def proxy_process(tmp_path: Path, upstream: FakeUpstream) -> Iterator[str]:
    config = tmp_path / "config.toml"
    config.write_text(textwrap.dedent(f"""
        [server]
        auth = false
        data_dir = "data"
        database_url = "sqlite:///data/lai.db"

        [[providers]]
        id = "box"
        endpoint = "{upstream.url}"
        max_concurrent = 2

        [[models]]
        id = "small"
        provider_id = "box"
        upstream_id = "Org/Small"
        is_default = true
    """))
    proc, url = start_proxy_process(config)
    assert (tmp_path / "data" / "lai.sock").stat().st_mode & 0o777 == 0o600
    try:
        yield url
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise
        assert proc.returncode == 0, proc.stderr.read() if proc.stderr else ""
        # A clean stop leaves no admin socket behind for the next start or the TUI.
        assert not (tmp_path / "data" / "lai.sock").exists()


def test_sdk_non_streamed_completion(proxy_process: str, upstream: FakeUpstream) -> None:
    client = openai.OpenAI(base_url=proxy_process + "/v1", api_key="unused", max_retries=0)
    done = client.chat.completions.create(
        model="small", messages=[{"role": "user", "content": "say three words"}])
    assert done.choices[0].message.content == "tok0 tok1 tok2"
    assert done.usage is not None and done.usage.completion_tokens == 3
    assert done.model_extra and done.model_extra["provider"] == "box"
    assert upstream.requests[-1].body["model"] == "Org/Small"


def test_sdk_streamed_completion(proxy_process: str, upstream: FakeUpstream) -> None:
    upstream.default = Behaviour(chunks=6)
    client = openai.OpenAI(base_url=proxy_process + "/v1", api_key="unused", max_retries=0)
    stream = client.chat.completions.create(
        model="auto", messages=[{"role": "user", "content": "count"}], stream=True,
        stream_options={"include_usage": True})
    text, usage, providers = "", None, set()
    for chunk in stream:
        providers.add(chunk.model_extra["provider"])
        if chunk.choices:
            text += chunk.choices[0].delta.content or ""
        if chunk.usage:
            usage = chunk.usage
    assert text.split() == [f"tok{i}" for i in range(6)]
    assert providers == {"box"}
    assert usage is not None and usage.completion_tokens == 6


def test_sdk_sees_openai_errors(proxy_process: str) -> None:
    client = openai.OpenAI(base_url=proxy_process + "/v1", api_key="unused", max_retries=0)
    with pytest.raises(openai.NotFoundError) as info:
        client.chat.completions.create(model="nope", messages=[{"role": "user", "content": "x"}])
    assert info.value.code == "model_not_found"
    models = client.models.list()
    assert [m.id for m in models.data] == ["auto", "small"]
