"""What the boxes report loaded, as API clients see it: ``loaded`` beside ``warm`` in
GET /v1/models, and ``server``, ``loaded_models`` and ``load`` in GET /v1/providers and
the /admin snapshots."""

from __future__ import annotations

import asyncio

import openai

from tests.fakes import boxes
from tests.harness import model, provider


async def settled(proxy, pid: str) -> None:  # type: ignore[no-untyped-def]
    for _ in range(500):
        if proxy.engine.states[pid].loaded_at is not None:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"{pid} was never polled")


async def test_models_and_providers_show_what_the_box_has_loaded(proxy_factory):
    ollama = boxes.box("ollama", ["qwen2.5:14b"])
    vllm = boxes.box("vllm", ["Qwen/Qwen2.5-32B-Instruct-AWQ"], running=2, waiting=1, kv=0.5)
    try:
        proxy = await proxy_factory(
            [provider("ol", ollama.url, server="ollama"),
             provider("gpu", vllm.url + "/v1", server="vllm"),
             provider("plain", ollama.url)],
            [model("qwen14", "ol", upstream_id="qwen2.5:14b"),
             model("llama70", "ol", upstream_id="llama3.1:70b"),
             model("qwen32", "gpu", upstream_id="Qwen/Qwen2.5-32B-Instruct-AWQ"),
             model("other", "plain")])
        await settled(proxy, "ol")
        await settled(proxy, "gpu")
        client = openai.AsyncOpenAI(base_url=proxy.url + "/v1", api_key="x", max_retries=0)
        listed = {m.id: m.model_extra for m in (await client.models.list()).data}
        assert (listed["qwen14"]["loaded"], listed["qwen14"]["warm"]) == (True, True)
        assert (listed["llama70"]["loaded"], listed["llama70"]["warm"]) == (False, False)
        assert listed["qwen32"]["loaded"] is True
        assert listed["other"]["loaded"] is None and listed["other"]["warm"] is False
        assert listed["auto"]["loaded"] is True and listed["auto"]["warm"] is True

        providers = {p["id"]: p for p in (await proxy.http.get("/v1/providers")).json()["data"]}
        assert providers["ol"]["server"] == "ollama"
        assert providers["ol"]["loaded_models"] == ["qwen2.5:14b"]
        assert providers["ol"]["warm_models"] == ["qwen14"]
        assert providers["ol"]["load"] is None  # Ollama's /api/ps says nothing of load
        assert providers["gpu"]["loaded_models"] == ["Qwen/Qwen2.5-32B-Instruct-AWQ"]
        assert providers["gpu"]["load"] == {"running": 2, "waiting": 1, "kv_cache_usage": 0.5,
                                            "slots_total": None, "slots_idle": None}
        assert providers["plain"]["server"] is None
        assert providers["plain"]["loaded_models"] is None and providers["plain"]["load"] is None

        # The box unloads it: a check (the admin's "check now") shows it at once.
        boxes.show(ollama, "ollama", [])
        checked = (await proxy.http.post("/admin/providers/ol/check")).json()
        assert checked["loaded_models"] == [] and checked["warm_models"] == []
        listed = {m.id: m.model_extra for m in (await client.models.list()).data}
        assert listed["qwen14"]["loaded"] is False and listed["qwen14"]["warm"] is False
    finally:
        ollama.stop()
        vllm.stop()
