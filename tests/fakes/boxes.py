"""Model servers' own endpoints, answered as the real ones answer them, on a FakeUpstream.

``box(kind, loaded=[...], ...)`` is a FakeUpstream that also answers what the server of
that kind says about its loaded models and load: Ollama's ``GET /api/ps``, llama-swap's
``GET /running``, llama.cpp's ``GET /props`` and ``GET /slots``, vLLM's ``GET /metrics``
and LM Studio's ``GET /api/v0/models``. The shapes follow each project's documentation
(fields lai does not read are kept, so a parser that leans on them would notice).
``show(fake, kind, ...)`` changes the answer of a running one.
"""

from __future__ import annotations

from collections.abc import Sequence

import orjson

from tests.fakes.upstream import FakeUpstream

PATHS = {
    "ollama": ("/api/ps",),
    "llama-swap": ("/running",),
    "llama.cpp": ("/props", "/slots"),
    "vllm": ("/metrics",),
    "lmstudio": ("/api/v0/models",),
}
"""The paths each kind of server is asked (what the fake answers)."""


def ollama_ps(loaded: Sequence[str]) -> bytes:
    """``GET /api/ps``: the models in memory."""
    return orjson.dumps({"models": [{
        "name": name, "model": name, "size": 6591830464, "digest": "a2af6cc3eb7f" * 5,
        "details": {"parent_model": "", "format": "gguf", "family": "qwen2",
                    "families": ["qwen2"], "parameter_size": "7.6B",
                    "quantization_level": "Q4_K_M"},
        "expires_at": "2026-12-02T03:47:07.93355Z", "size_vram": 5333539264,
        "context_length": 4096,
    } for name in loaded]})


def llama_swap_running(loaded: Sequence[str], starting: Sequence[str] = ()) -> bytes:
    """``GET /running``: the processes llama-swap runs, with their state."""
    rows = [{"model": m, "state": "ready", "cmd": f"llama-server -m /models/{m}.gguf",
             "proxy": "http://127.0.0.1:9999", "ttl": 300, "name": m, "description": ""}
            for m in loaded]
    rows += [{"model": m, "state": "starting", "cmd": "", "proxy": "", "ttl": 0,
              "name": m, "description": ""} for m in starting]
    return orjson.dumps({"running": rows})


def llama_cpp_props(model_path: str, *, alias: str | None = None, slots: int = 1) -> bytes:
    """``GET /props`` of ``llama-server -m model_path [--alias alias] -np slots``."""
    return orjson.dumps({
        "default_generation_settings": {"n_ctx": 8192, "params": {"temperature": 0.8}},
        "total_slots": slots, "model_path": model_path,
        **({"model_alias": alias} if alias else {}),
        "chat_template": "{{ messages }}", "modalities": {"vision": False, "audio": False},
        "build_info": "b7000-fake", "is_sleeping": False,
    })


def llama_cpp_slots(total: int = 1, busy: int = 0) -> bytes:
    """``GET /slots``: one entry per slot, the first ``busy`` processing."""
    return orjson.dumps([{
        "id": i, "id_task": 7 + i if i < busy else -1, "n_ctx": 8192, "speculative": False,
        "is_processing": i < busy, "params": {"n_predict": -1, "temperature": 0.8},
        "next_token": {"has_next_token": i < busy, "n_remain": -1, "n_decoded": 3 * (i < busy)},
    } for i in range(total)])


def vllm_metrics(model: str, *, running: int = 0, waiting: int = 0, kv: float = 0.0,
                 old_names: bool = False) -> bytes:
    """``GET /metrics`` (Prometheus text) of ``vllm serve model``; ``old_names`` uses the
    pre-V1 ``vllm:gpu_cache_usage_perc`` for the KV cache."""
    kv_name = "vllm:gpu_cache_usage_perc" if old_names else "vllm:kv_cache_usage_perc"
    label = f'engine="0",model_name="{model}"'
    return "\n".join([
        "# HELP python_gc_objects_collected_total Objects collected during gc",
        "# TYPE python_gc_objects_collected_total counter",
        'python_gc_objects_collected_total{generation="0"} 1234.0',
        "# HELP vllm:num_requests_running Number of requests in model execution batches.",
        "# TYPE vllm:num_requests_running gauge",
        f"vllm:num_requests_running{{{label}}} {float(running)}",
        "# HELP vllm:num_requests_waiting Number of requests waiting to be processed.",
        "# TYPE vllm:num_requests_waiting gauge",
        f"vllm:num_requests_waiting{{{label}}} {float(waiting)}",
        f"# HELP {kv_name} KV-cache usage. 1 means 100 percent usage.",
        f"# TYPE {kv_name} gauge",
        f"{kv_name}{{{label}}} {kv}",
        "# HELP vllm:prompt_tokens_total Number of prefill tokens processed.",
        "# TYPE vllm:prompt_tokens_total counter",
        f"vllm:prompt_tokens_total{{{label}}} 5120.0",
        f'vllm:iteration_tokens_total_bucket{{{label},le="1.0"}} 3.0',
        "",
    ]).encode()


def lmstudio_models(loaded: Sequence[str], not_loaded: Sequence[str] = ()) -> bytes:
    """``GET /api/v0/models``: every downloaded model with its load state."""
    def row(mid: str, state: str) -> dict[str, object]:
        return {"id": mid, "object": "model", "type": "llm", "publisher": "lmstudio-community",
                "arch": "qwen2", "compatibility_type": "gguf", "quantization": "Q4_K_M",
                "state": state, "max_context_length": 32768}
    return orjson.dumps({"object": "list", "data": [row(m, "loaded") for m in loaded]
                         + [row(m, "not-loaded") for m in not_loaded]})


def show(fake: FakeUpstream, kind: str, loaded: Sequence[str] = (), *, others: Sequence[str] = (),
         slots: int = 1, busy: int = 0, running: int = 0, waiting: int = 0,
         kv: float = 0.0) -> None:
    """Make ``fake`` answer as a ``kind`` server holding ``loaded`` (``others``: known but
    not loaded, for the kinds that list them)."""
    if kind == "ollama":
        fake.serve("/api/ps", ollama_ps(loaded))
    elif kind == "llama-swap":
        fake.serve("/running", llama_swap_running(loaded, others))
    elif kind == "llama.cpp":
        fake.serve("/props", llama_cpp_props(f"/models/{loaded[0]}.gguf", slots=slots))
        fake.serve("/slots", llama_cpp_slots(slots, busy))
    elif kind == "vllm":
        fake.serve("/metrics", vllm_metrics(loaded[0], running=running, waiting=waiting, kv=kv),
                   content_type="text/plain; version=0.0.4; charset=utf-8")
    elif kind == "lmstudio":
        fake.serve("/api/v0/models", lmstudio_models(loaded, others))
    else:
        raise ValueError(f"no such server kind {kind!r}")


def box(kind: str, loaded: Sequence[str] = (), **kw: object) -> FakeUpstream:
    """A started FakeUpstream answering as a ``kind`` server (see ``show``)."""
    fake = FakeUpstream().start()
    show(fake, kind, loaded, **kw)  # type: ignore[arg-type]
    return fake


def garbage(fake: FakeUpstream, kind: str, body: bytes = b"<html>oops</html>") -> None:
    """Make every discovery path of ``kind`` answer 200 with ``body``."""
    for path in PATHS[kind]:
        fake.serve(path, body)
