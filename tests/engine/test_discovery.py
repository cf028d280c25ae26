"""What each box has loaded, asked of the box: every server kind's endpoint served by a
real HTTP server on 127.0.0.1 answering as that server does (tests/fakes/boxes.py)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from lai.config.models import Settings
from lai.engine import discovery
from lai.engine.engine import Engine
from lai.engine.types import RequestContext, ServerLoad
from tests.engine.test_health import FakeClock, until
from tests.fakes import boxes
from tests.fakes.upstream import Behaviour, FakeUpstream

KINDS = ("ollama", "llama-swap", "vllm", "lmstudio")
"""The kinds that report several models by name (llama.cpp holds one: tested apart)."""


@pytest.fixture
def fakes() -> Iterator[list[FakeUpstream]]:
    started: list[FakeUpstream] = []
    yield started
    for fake in started:
        fake.stop()


def make_engine(providers: list[dict[str, Any]], models: list[dict[str, Any]],
                clock: FakeClock | None = None) -> Engine:
    base = {"type": "local", "health_check_interval": 30, "health_check_timeout": 2}
    settings = Settings.model_validate({
        "server": {"queue_timeout": 5},
        "providers": [{**base, **p} for p in providers], "models": models})
    return Engine(settings, httpx.AsyncClient(trust_env=False), clock=clock)


def chat(model: str) -> dict[str, Any]:
    return {"model": model, "messages": [{"role": "user", "content": "hi"}]}


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("suffix", ["", "/v1"])
async def test_the_model_the_server_reports_is_warm_and_the_other_cold(
        kind: str, suffix: str, fakes: list[FakeUpstream]) -> None:
    warm_name = "qwen2.5:7b" if kind == "ollama" else "qwen2.5-7b"
    fake = boxes.box(kind, [warm_name], others=["llama3-70b"])
    fakes.append(fake)
    engine = make_engine(
        [{"id": "box", "endpoint": fake.url + suffix, "server": kind}],
        [{"id": "small", "provider_id": "box", "upstream_id": warm_name},
         {"id": "big", "provider_id": "box", "upstream_id": "llama3-70b"}])
    assert engine.is_loaded("box", "small") is None  # nothing asked yet
    await engine.check("box")
    state = engine.states["box"]
    assert state.health == "healthy"
    assert state.loaded == frozenset({warm_name})
    assert engine.is_warm("box", "small") and not engine.is_warm("box", "big")
    assert engine.is_loaded("box", "big") is False
    snapshot = engine.provider("box")
    assert snapshot.server == kind and snapshot.loaded_models == (warm_name,)
    assert snapshot.warm_models == ("small",)
    for path in boxes.PATHS[kind]:
        assert fake.hits(path) == 1
    await engine.client.aclose()


async def test_vllm_load_figures_are_read_from_its_metrics(fakes: list[FakeUpstream]) -> None:
    fake = boxes.box("vllm", ["Qwen/Qwen2.5-14B-Instruct-AWQ"], running=3, waiting=2, kv=0.42)
    fakes.append(fake)
    engine = make_engine([{"id": "gpu", "endpoint": fake.url, "server": "vllm"}],
                         [{"id": "q", "provider_id": "gpu",
                           "upstream_id": "Qwen/Qwen2.5-14B-Instruct-AWQ"}])
    await engine.check("gpu")
    assert engine.states["gpu"].load == ServerLoad(running=3, waiting=2, kv_cache_usage=0.42)
    assert engine.is_warm("gpu", "q")
    # An older vLLM names the KV-cache gauge gpu_cache_usage_perc.
    fake.serve("/metrics", boxes.vllm_metrics("Qwen/Qwen2.5-14B-Instruct-AWQ", kv=0.9,
                                              old_names=True))
    await engine.check("gpu")
    assert engine.states["gpu"].load == ServerLoad(running=0, waiting=0, kv_cache_usage=0.9)
    await engine.client.aclose()


async def test_llama_cpp_holds_one_model_and_reports_its_slots(
        fakes: list[FakeUpstream]) -> None:
    fake = boxes.box("llama.cpp", ["qwen2.5-coder-7b-q4_k_m"], slots=4, busy=1)
    fakes.append(fake)
    # llama-server answers any model name: the one configured model is the loaded one.
    engine = make_engine([{"id": "nuc", "endpoint": fake.url + "/v1", "server": "llama.cpp"}],
                         [{"id": "coder", "provider_id": "nuc"}])
    await engine.check("nuc")
    state = engine.states["nuc"]
    assert state.load == ServerLoad(running=1, slots_total=4, slots_idle=3)
    assert "qwen2.5-coder-7b-q4_k_m" in (state.loaded or ())
    assert engine.is_warm("nuc", "coder")
    # Started with --no-slots, /slots answers 501: the slots count comes from /props.
    fake.serve("/slots", b'{"error":{"code":501,"message":"This server does not support '
               b'slots endpoint."}}', status=501)
    await engine.check("nuc")
    assert state.load == ServerLoad(slots_total=4) and engine.is_warm("nuc", "coder")
    await engine.client.aclose()


async def test_a_missing_latest_tag_is_the_same_model_but_another_tag_is_not(
        fakes: list[FakeUpstream]) -> None:
    fake = boxes.box("ollama", ["qwen2.5:latest", "llama3.1:8b-instruct-q4_K_M"])
    fakes.append(fake)
    engine = make_engine([{"id": "ol", "endpoint": fake.url, "server": "ollama"}],
                         [{"id": "qwen", "provider_id": "ol", "upstream_id": "qwen2.5"},
                          {"id": "qwen7", "provider_id": "ol", "upstream_id": "qwen2.5:7b"},
                          {"id": "llama", "provider_id": "ol", "upstream_id": "llama3.1:8b"}])
    await engine.check("ol")
    assert engine.is_warm("ol", "qwen")
    assert not engine.is_warm("ol", "qwen7") and not engine.is_warm("ol", "llama")
    await engine.client.aclose()


@pytest.mark.parametrize("kind", [*KINDS, "llama.cpp"])
@pytest.mark.parametrize("body", [b"<html>oops</html>", b'{"models": "many"}', b"[1, 2]",
                                  b'{"running": [{"model": 7}], "data": null}', b"\xff\xfe"])
async def test_a_garbage_answer_leaves_loaded_unknown_and_the_provider_healthy(
        kind: str, body: bytes, fakes: list[FakeUpstream]) -> None:
    fake = boxes.box(kind, ["m"])
    fakes.append(fake)
    engine = make_engine([{"id": "box", "endpoint": fake.url, "server": kind}],
                         [{"id": "m", "provider_id": "box"}])
    await engine.check("box")
    assert engine.is_loaded("box", "m") is True
    boxes.garbage(fake, kind, body)
    await engine.check("box")
    state = engine.states["box"]
    assert state.health == "healthy" and state.consecutive_failures == 0
    assert engine.is_loaded("box", "m") is None
    assert state.loaded is None and state.load is None
    # Without what the box says, the timer decides again: the model served nothing yet.
    assert not engine.is_warm("box", "m")
    await engine.client.aclose()


@pytest.mark.parametrize("status", [404, 500])
async def test_an_endpoint_the_server_lacks_leaves_loaded_unknown(
        status: int, fakes: list[FakeUpstream]) -> None:
    fake = boxes.box("ollama", ["m"])
    fakes.append(fake)
    fake.serve("/api/ps", b'{"error":"no"}', status=status)
    engine = make_engine([{"id": "box", "endpoint": fake.url, "server": "ollama"}],
                         [{"id": "m", "provider_id": "box"}])
    await engine.check("box")
    assert engine.states["box"].health == "healthy"
    assert engine.states["box"].loaded is None
    await engine.client.aclose()


async def test_no_server_hint_polls_nothing(fakes: list[FakeUpstream]) -> None:
    fake = boxes.box("ollama", ["m"])
    fakes.append(fake)
    engine = make_engine(
        [{"id": "a", "endpoint": fake.url},
         {"id": "b", "endpoint": fake.url, "server": "openai-compatible"}],
        [{"id": "m", "provider_id": "a"}, {"id": "m", "provider_id": "b"}])
    await engine.check("a")
    await engine.check("b")
    assert fake.hits("/api/ps") == 0
    assert engine.states["a"].loaded is None and engine.is_loaded("b", "m") is None
    await engine.client.aclose()


async def test_auto_picks_the_loaded_model_over_a_cold_one_and_serving_warms_at_once(
        fakes: list[FakeUpstream]) -> None:
    cold_box = boxes.box("ollama", ["something-else:7b"])
    warm_box = boxes.box("ollama", ["qwen2.5:14b"])
    fakes.extend([cold_box, warm_box])
    engine = make_engine(
        [{"id": "first", "endpoint": cold_box.url, "server": "ollama"},
         {"id": "second", "endpoint": warm_box.url, "server": "ollama"}],
        [{"id": "q-first", "provider_id": "first", "upstream_id": "qwen2.5:14b"},
         {"id": "q-second", "provider_id": "second", "upstream_id": "qwen2.5:14b"}])
    await engine.check("first")
    await engine.check("second")
    done = await engine.complete(chat("auto"), RequestContext())
    # Same priority: config order would pick "first"; the box says "second" has it loaded.
    assert done.provider_id == "second"
    assert warm_box.chat_count == 1 and cold_box.chat_count == 0
    # Served on "first" by name, its model is warm at once, until the next poll says not.
    await engine.complete(chat("first/q-first"), RequestContext())
    assert engine.is_warm("first", "q-first") and engine.is_loaded("first", "q-first") is False
    await engine.check("first")
    assert not engine.is_warm("first", "q-first")
    # Once its server loads it, the poll says so.
    boxes.show(cold_box, "ollama", ["qwen2.5:14b"])
    await engine.check("first")
    assert engine.is_warm("first", "q-first")
    await engine.client.aclose()


async def test_a_failed_health_check_forgets_what_was_loaded(
        fakes: list[FakeUpstream]) -> None:
    fake = boxes.box("lmstudio", ["m"])
    fakes.append(fake)
    engine = make_engine([{"id": "box", "endpoint": fake.url, "server": "lmstudio"}],
                         [{"id": "m", "provider_id": "box"}])
    await engine.check("box")
    assert engine.is_loaded("box", "m") is True
    fake.refuse()
    await engine.check("box")
    assert engine.states["box"].consecutive_failures == 1
    assert engine.states["box"].loaded is None and engine.is_loaded("box", "m") is None
    await engine.client.aclose()


async def test_a_llama_cpp_box_is_not_polled_while_busy_but_vllm_is(
        fakes: list[FakeUpstream]) -> None:
    nuc = boxes.box("llama.cpp", ["coder"])
    gpu = boxes.box("vllm", ["big"])
    fakes.extend([nuc, gpu])
    for fake in (nuc, gpu):
        fake.default = Behaviour(mode="hang")
    clock = FakeClock()
    engine = make_engine([{"id": "nuc", "endpoint": nuc.url, "server": "llama.cpp"},
                          {"id": "gpu", "endpoint": gpu.url, "server": "vllm"}],
                         [{"id": "coder", "provider_id": "nuc"},
                          {"id": "big", "provider_id": "gpu"}], clock)
    await engine.start()
    await until(lambda: nuc.hits("/slots") == 1 and gpu.hits("/metrics") == 1
                and engine.states["gpu"].load is not None, "first polls")
    requests = [asyncio.create_task(engine.complete(chat(m), RequestContext()))
                for m in ("nuc/coder", "gpu/big")]
    await nuc.wait_for_async(lambda: nuc.in_flight == 1 and gpu.in_flight == 1)
    health_before = nuc.health_count + gpu.health_count
    clock.advance(30)
    await until(lambda: gpu.hits("/metrics", while_busy=True) == 1, "vLLM polled while busy")
    await asyncio.sleep(0.2)  # the llama.cpp loop woke at the same moment
    assert nuc.hits("/slots", while_busy=True) == 0 and nuc.hits("/props") == 1
    assert nuc.health_count + gpu.health_count == health_before  # busy: no health probes
    for task in requests:
        task.cancel()
    await asyncio.gather(*requests, return_exceptions=True)
    await engine.close()
    await engine.client.aclose()


def test_parsers_survive_anything() -> None:
    samples: list[bytes | None] = [
        None, b"", b"null", b"{}", b"[]", b"[null]", b'"x"', b"1e999", b"{" * 5000,
        b'{"models": [null, 1, {"name": 5}, {"name": "ok"}]}',
        b'{"running": [{"model": "a", "state": ["x"]}]}',
        b'{"data": [{"id": "a", "state": {"x": 1}}]}',
        b'{"models": [{"key": "a", "loaded_instances": 3}]}',
        b"vllm:num_requests_running{model_name=\"a\"} NaN\nvllm:kv_cache_usage_perc -5\n",
        b"vllm:num_requests_running{model_name=\"a\\\"b\"} 2\nvllm:bogus{ 1\n",
        b'[{"is_processing": "yes"}, {"state": 2}]',
        b'{"total_slots": -1, "model_path": 7, "model_alias": ""}',
    ]
    for kind in discovery.KINDS.values():
        for raw in samples:
            found = kind.parse(dict.fromkeys(kind.paths, raw))
            assert found.loaded is None or all(isinstance(n, str) for n in found.loaded)
    odd = discovery.parse_vllm({"/metrics": samples[-4]})
    assert odd.loaded == frozenset({"a"}) and odd.load is not None
    assert odd.load.running is None and odd.load.kv_cache_usage == 0.0


async def test_a_reload_that_changes_the_server_forgets_what_the_old_one_had_loaded(
        fakes: list[FakeUpstream]) -> None:
    fake = boxes.box("ollama", ["m"])
    fakes.append(fake)
    providers = [{"id": "box", "endpoint": fake.url, "server": "ollama"}]
    models = [{"id": "m", "provider_id": "box"}]
    engine = make_engine(providers, models)
    await engine.check("box")
    same = Settings.model_validate({"providers": providers, "models": models})
    engine.reload(same)
    assert engine.is_loaded("box", "m") is True  # nothing changed: kept
    moved = Settings.model_validate(
        {"providers": [{**providers[0], "server": "lmstudio"}], "models": models})
    engine.reload(moved)
    assert engine.is_loaded("box", "m") is None
    await engine.client.aclose()


def test_parsers_never_raise_on_mutated_real_answers() -> None:
    """A seeded fuzz over each server's real answer shape, one member made odd at a time."""
    import random

    import orjson

    from tests.engine.test_parsers_never_raise import mutate

    real = {
        "/api/ps": boxes.ollama_ps(["a:1", "b"]),
        "/running": boxes.llama_swap_running(["a"], ["b"]),
        "/props": boxes.llama_cpp_props("/m/a.gguf", alias="a", slots=2),
        "/slots": boxes.llama_cpp_slots(2, 1),
        "/api/v0/models": boxes.lmstudio_models(["a"], ["b"]),
    }
    rng = random.Random(14)
    for kind in discovery.KINDS.values():
        for _ in range(300):
            answers: dict[str, bytes | None] = {}
            for path in kind.paths:
                if path == "/metrics":
                    text = boxes.vllm_metrics("a", running=1, kv=0.5).decode().splitlines()
                    i = rng.randrange(len(text))
                    text[i] = text[i][: rng.randrange(len(text[i]) + 1)] + rng.choice(
                        ["", "{", '"', " NaN", " x", "}", "\\"])
                    answers[path] = "\n".join(text).encode()
                else:
                    answers[path] = orjson.dumps(mutate(rng, orjson.loads(real[path])))
            found = kind.parse(answers)
            assert found.loaded is None or all(isinstance(n, str) for n in found.loaded)


async def test_a_poll_under_way_when_a_reload_changes_the_server_is_not_kept(
        fakes: list[FakeUpstream]) -> None:
    fake = boxes.box("ollama", ["m"])
    fakes.append(fake)
    providers = [{"id": "box", "endpoint": fake.url, "server": "ollama"}]
    models = [{"id": "m", "provider_id": "box"}]
    engine = make_engine(providers, models)
    poll = asyncio.create_task(engine.health.discover("box"))
    await asyncio.sleep(0)  # the poll of the ollama server is on its way
    engine.reload(Settings.model_validate(
        {"providers": [{**providers[0], "server": "lmstudio"}], "models": models}))
    await poll
    # The ollama answer says nothing about what the lmstudio server has loaded.
    assert engine.is_loaded("box", "m") is None
    await engine.client.aclose()
