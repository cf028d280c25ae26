"""Reloading the config of a running proxy: a provider added serves the next request, a
broken file is refused while the old config keeps serving, a reload under load loses no
stream and oversubscribes no provider, a removed provider drains, restart-only keys keep
their value; SIGHUP, `lai config reload` and `server.watch_config` trigger it."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from lai.config.loader import load_settings
from tests.fakes.upstream import Behaviour, FakeUpstream
from tests.harness import start_proxy

BASE = """\
# lai for the reload tests; comments stay where they are.
[server]
database_url = "sqlite:///lai.db"
data_dir = "data"
auth = false
queue_timeout = 20
{server}

[[providers]]
id = "a"
endpoint = "{a}"
max_concurrent = {a_max}
health_check_interval = 3600

[[models]]
id = "ma"
provider_id = "a"
context_window = 32768
"""

EXTRA_PROVIDER = """
[[providers]]
id = "b"
endpoint = "{b}"
max_concurrent = 2
health_check_interval = 3600

[[models]]
id = "mb"
provider_id = "b"
context_window = 32768
"""


def write(path: Path, a: FakeUpstream, *, b: FakeUpstream | None = None, a_max: int = 2,
          server: str = "") -> None:
    text = BASE.format(a=a.url, a_max=a_max, server=server)
    if b is not None:
        text += EXTRA_PROVIDER.format(b=b.url)
    path.write_text(text)


async def serve(config: Path) -> Any:
    settings, _ = load_settings(config)
    return await start_proxy(settings)


def chat(model: str, *, stream: bool = False) -> dict[str, Any]:
    return {"model": model, "stream": stream, "messages": [{"role": "user", "content": "hi"}]}


async def reload(proxy: Any) -> httpx.Response:
    resp: httpx.Response = await proxy.http.post("/admin/config/reload")
    return resp


async def test_a_provider_added_by_reload_serves_the_next_request(
    tmp_path: Path, upstream_factory: Any
) -> None:
    a, b = upstream_factory(), upstream_factory()
    config = tmp_path / "config.toml"
    write(config, a)
    proxy = await serve(config)
    try:
        assert (await proxy.http.post("/v1/chat/completions", json=chat("mb"))).status_code == 404
        write(config, a, b=b)
        resp = await reload(proxy)
        assert resp.status_code == 200, resp.text
        assert "provider b added" in resp.json()["changes"]
        done = await proxy.http.post("/v1/chat/completions", json=chat("mb"))
        assert done.status_code == 200 and done.headers["x-provider"] == "b"
        assert b.chat_count == 1
        ids = [p["id"] for p in (await proxy.http.get("/v1/providers")).json()["data"]]
        assert ids == ["a", "b"]
    finally:
        await proxy.stop()


async def test_a_broken_file_is_refused_and_the_old_config_keeps_serving(
    tmp_path: Path, upstream: FakeUpstream
) -> None:
    config = tmp_path / "config.toml"
    write(config, upstream)
    proxy = await serve(config)
    try:
        write(config, upstream, a_max=0)
        resp = await reload(proxy)
        assert resp.status_code == 400
        error = resp.json()["error"]
        assert error["code"] == "config_invalid"
        # The same one line `lai config check` prints.
        assert error["message"] == f"{config}: providers[0].max_concurrent: must be >= 1"
        done = await proxy.http.post("/v1/chat/completions", json=chat("ma"))
        assert done.status_code == 200
        assert proxy.engine.provider("a").max_concurrent == 2
    finally:
        await proxy.stop()


async def test_reload_under_load_loses_no_stream_and_oversubscribes_nothing(
    tmp_path: Path, upstream: FakeUpstream
) -> None:
    upstream.default = Behaviour(chunks=8, delay=0.1)
    config = tmp_path / "config.toml"
    write(config, upstream, a_max=2)
    proxy = await serve(config)

    async def one_stream() -> bytes:
        async with proxy.http.stream("POST", "/v1/chat/completions",
                                     json=chat("ma", stream=True)) as resp:
            assert resp.status_code == 200
            return b"".join([chunk async for chunk in resp.aiter_bytes()])

    try:
        streams = [asyncio.create_task(one_stream()) for _ in range(8)]
        await asyncio.sleep(0.35)  # two streaming, six queued
        assert proxy.engine.provider("a").active_requests == 2
        write(config, upstream, a_max=3)
        assert (await reload(proxy)).status_code == 200
        bodies = await asyncio.gather(*streams)
        assert all(b.rstrip().endswith(b"data: [DONE]") for b in bodies)
        assert all(b"tok7" in b and b'"error"' not in b for b in bodies)
        # Never more than the capacity in force: 2 before the reload, 3 after.
        assert upstream.max_in_flight == 3
        assert proxy.engine.provider("a").active_requests == 0
    finally:
        await proxy.stop()


async def test_a_lower_limit_applies_as_requests_finish_and_a_removed_provider_drains(
    tmp_path: Path, upstream_factory: Any
) -> None:
    a, b = upstream_factory(), upstream_factory()
    b.default = Behaviour(chunks=6, delay=0.15)
    config = tmp_path / "config.toml"
    write(config, a, b=b)
    proxy = await serve(config)
    try:
        async with proxy.http.stream("POST", "/v1/chat/completions",
                                     json=chat("mb", stream=True)) as resp:
            assert resp.status_code == 200
            write(config, a)  # b removed while its stream is under way
            result = (await reload(proxy)).json()
            assert "provider b removed (drains)" in result["changes"]
            body = b"".join([chunk async for chunk in resp.aiter_bytes()])
        assert b"tok5" in body and body.rstrip().endswith(b"data: [DONE]")
        gone = await proxy.http.post("/v1/chat/completions", json=chat("mb"))
        assert gone.status_code == 404 and gone.json()["error"]["code"] == "model_not_found"
        ids = [p["id"] for p in (await proxy.http.get("/v1/providers")).json()["data"]]
        assert ids == ["a"]
    finally:
        await proxy.stop()


async def test_restart_only_keys_keep_their_value_with_a_warning(
    tmp_path: Path, upstream: FakeUpstream
) -> None:
    config = tmp_path / "config.toml"
    write(config, upstream)
    proxy = await serve(config)
    try:
        write(config, upstream, server="port = 9999\nqueue_timeout = 7")
        config.write_text(config.read_text().replace("queue_timeout = 20\n", "", 1))
        body = (await reload(proxy)).json()
        assert any("port cannot change while lai runs" in w for w in body["warnings"])
        assert proxy.settings.server.port == 8012 and proxy.settings.server.queue_timeout == 7
    finally:
        await proxy.stop()


async def test_watch_config_reloads_when_the_file_changes(
    tmp_path: Path, upstream_factory: Any
) -> None:
    a, b = upstream_factory(), upstream_factory()
    config = tmp_path / "config.toml"
    write(config, a, server="watch_config = true")
    proxy = await serve(config)
    try:
        write(config, a, b=b, server="watch_config = true")
        for _ in range(100):
            if "b" in proxy.engine.catalog.providers:
                break
            await asyncio.sleep(0.1)
        done = await proxy.http.post("/v1/chat/completions", json=chat("mb"))
        assert done.status_code == 200 and done.headers["x-provider"] == "b"
    finally:
        await proxy.stop()


def lai(*args: str, config: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "lai.cli", *args, "--config", str(config)],
                          capture_output=True, text=True, timeout=60)


@pytest.fixture
def proxy_process(tmp_path: Path, upstream_factory: Any) -> Any:
    a = upstream_factory()
    config = tmp_path / "config.toml"
    write(config, a)
    proc = subprocess.Popen([sys.executable, "-m", "lai.cli", "proxy", "--config", str(config),
                             "--port", "0"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout is not None
    line = proc.stdout.readline().decode()
    assert "listening on" in line, line
    url = line.strip().rsplit(" ", 1)[-1]
    try:
        yield config, a, url, proc
    finally:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)


def providers(url: str) -> list[str]:
    body = httpx.get(url + "/v1/providers", timeout=10, trust_env=False).json()
    return [p["id"] for p in body["data"]]


def test_lai_config_reload_and_sighup(proxy_process: Any, upstream_factory: Any) -> None:
    config, a, url, proc = proxy_process
    b = upstream_factory()
    write(config, a, b=b)
    done = lai("config", "reload", config=config)
    assert done.returncode == 0, done.stderr
    assert "provider b added" in done.stdout
    assert providers(url) == ["a", "b"]

    write(config, a, a_max=0)
    refused = lai("config", "reload", config=config)
    assert refused.returncode == 2
    assert refused.stderr.strip().endswith("providers[0].max_concurrent: must be >= 1")
    assert providers(url) == ["a", "b"]  # the old config keeps serving

    write(config, a)
    proc.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + 10
    while providers(url) != ["a"]:
        assert time.monotonic() < deadline, "SIGHUP did not reload"
        time.sleep(0.1)
    served = httpx.post(url + "/v1/chat/completions", json=chat("ma"), timeout=30,
                        trust_env=False)
    assert served.status_code == 200
    assert orjson.loads(served.content)["provider"] == "a"


def test_lai_config_reload_without_a_proxy_says_so(tmp_path: Path, upstream: FakeUpstream
                                                   ) -> None:
    config = tmp_path / "config.toml"
    write(config, upstream)
    done = lai("config", "reload", config=config)
    assert done.returncode == 1
    assert "no lai proxy answers on" in done.stderr and len(done.stderr.splitlines()) == 1


def test_the_sighup_handler_needs_a_running_loop_and_says_so() -> None:
    # Without a running loop the handler cannot be installed: an error, not a proxy
    # that silently ignores `kill -HUP`.
    from lai.proxy.serve import install_reload_handler

    with pytest.raises(RuntimeError):
        install_reload_handler(lambda: None)


async def test_the_sighup_handler_is_installed_on_the_running_loop() -> None:
    from lai.proxy.serve import install_reload_handler

    loop = asyncio.get_running_loop()
    install_reload_handler(lambda: None)
    assert loop.remove_signal_handler(signal.SIGHUP)  # it was there
