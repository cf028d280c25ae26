"""What a model server has loaded, and how busy it is, asked of the server itself.

A provider's ``server`` hint names the software behind its endpoint; each kind has a
cheap read-only endpoint that says which models are in memory, and some say how loaded
the box is. Polled by the health monitor right after a passing health check (never a
completion, never a billed call):

============  ==========================  ===============================================
kind          GET                         gives
============  ==========================  ===============================================
ollama        /api/ps                     loaded: ``models[].name`` and ``.model``
llama-swap    /running                    loaded: ``running[].model`` in state ``ready``
llama.cpp     /props, /slots              loaded: the one model (``model_alias``,
                                          ``model_path``); load: slots total and idle
vllm          /metrics                    loaded: the ``model_name`` label; load:
                                          ``vllm:num_requests_running``, ``..._waiting``,
                                          ``vllm:kv_cache_usage_perc`` (older:
                                          ``vllm:gpu_cache_usage_perc``)
lmstudio      /api/v0/models              loaded: ``data[].id`` with ``state: loaded``
============  ==========================  ===============================================

``openai-compatible`` (or no hint) polls nothing. The paths hang off the server root:
the provider's ``endpoint`` without a trailing ``/`` or ``/v1``.

Answers are checked, not trusted: an endpoint that fails, answers non-2xx or answers
something else than its documented shape leaves that part unknown (None), logged at
debug level; nothing here raises and nothing here touches the provider's health.

llama.cpp's server handles ``/slots`` in the same loop that generates, so with one slot
busy the answer waits behind the generation; lai therefore polls a llama.cpp box only
while it has no request of lai's in flight (the live traffic says it is loaded anyway).
The other kinds answer from their own HTTP layer and are polled while busy too.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import httpx
import orjson

from lai.config.models import ProviderConfig
from lai.engine.types import ServerLoad

log = logging.getLogger("lai.engine.discovery")

MAX_ANSWER = 4 * 1024 * 1024
"""Bytes read of one discovery answer at most; a longer one counts as garbage."""


@dataclass(frozen=True, slots=True)
class Discovered:
    """What one poll learnt: ``loaded`` names (the server's own) and ``load``; each
    None when not known."""

    loaded: frozenset[str] | None = None
    load: ServerLoad | None = None


UNKNOWN = Discovered()

Answers = Mapping[str, bytes | None]
"""Path -> the body of a 2xx answer, or None when that request failed."""


@dataclass(frozen=True, slots=True)
class ServerKind:
    paths: tuple[str, ...]
    parse: Callable[[Answers], Discovered]
    blocks_while_busy: bool = False
    """The endpoint waits behind a generation: not polled while lai has requests in
    flight on the provider."""
    one_model: bool = False
    """The server holds exactly one model and answers whatever model name it is sent
    (llama.cpp's ``llama-server -m``): when it reports a model loaded, every model
    configured on the provider is loaded."""


def server_root(provider: ProviderConfig) -> str:
    """The endpoint without a trailing slash or ``/v1``: where the servers' own
    (non-OpenAI) endpoints live."""
    url = provider.endpoint.rstrip("/")
    if url.endswith("/v1"):
        url = url[: -len("/v1")]
    return url


def kind_of(provider: ProviderConfig) -> ServerKind | None:
    """The discovery of a provider's ``server`` hint; None when nothing is polled."""
    return KINDS.get(provider.server) if provider.server else None


def may_poll(provider: ProviderConfig, busy: bool) -> bool:
    """Whether a poll is due with the health check: the kind polls something, and does
    not block while the provider is ``busy`` with lai's requests."""
    kind = kind_of(provider)
    return kind is not None and not (busy and kind.blocks_while_busy)


async def poll(client: httpx.AsyncClient, provider: ProviderConfig,
               headers: dict[str, str]) -> Discovered:
    """Ask the provider's server what it has loaded. Never raises (but cancellation)."""
    kind = kind_of(provider)
    if kind is None:
        return UNKNOWN
    root = server_root(provider)
    timeout = httpx.Timeout(provider.health_check_timeout)
    answers: dict[str, bytes | None] = {}
    for path in kind.paths:
        answers[path] = await _fetch(client, root + path, headers, timeout, provider.id)
    try:
        return kind.parse(answers)
    except Exception as exc:  # a parser bug must not end the health loop
        log.debug("discovery on %s: cannot use the answers (%s: %s)", provider.id,
                  type(exc).__name__, exc)
        return UNKNOWN


async def _fetch(client: httpx.AsyncClient, url: str, headers: dict[str, str],
                 timeout: httpx.Timeout, provider_id: str) -> bytes | None:
    try:
        async with client.stream("GET", url, headers=headers, timeout=timeout) as resp:
            if not 200 <= resp.status_code < 300:
                log.debug("discovery on %s: GET %s answered HTTP %d", provider_id,
                          httpx.URL(url).path, resp.status_code)
                return None
            body = bytearray()
            async for chunk in resp.aiter_bytes():
                body += chunk
                if len(body) > MAX_ANSWER:
                    log.debug("discovery on %s: GET %s answered more than %d bytes",
                              provider_id, httpx.URL(url).path, MAX_ANSWER)
                    return None
            return bytes(body)
    except httpx.HTTPError as exc:
        log.debug("discovery on %s: GET %s failed (%s)", provider_id, httpx.URL(url).path,
                  type(exc).__name__)
        return None


def is_loaded(provider: ProviderConfig, loaded: frozenset[str], name: str) -> bool:
    """Whether the model the server knows as ``name`` is among ``loaded``: the same
    name, where Ollama's implicit ``:latest`` tag may be left out on either side
    (``qwen2.5`` is ``qwen2.5:latest``, but not ``qwen2.5:7b``)."""
    kind = kind_of(provider)
    if kind is not None and kind.one_model:
        return bool(loaded)
    if name in loaded:
        return True
    base = _untagged(name)
    return any(_untagged(n) == base for n in loaded)


def _untagged(name: str) -> str:
    return name[: -len(":latest")] if name.endswith(":latest") else name


# ---------------------------------------------------------------- parsers (never raise)


def _json(raw: bytes | None) -> Any:
    if raw is None:
        return None
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None


def _names(items: Any, *members: str, keep: Callable[[dict[str, Any]], bool] | None = None
           ) -> frozenset[str] | None:
    """The string ``members`` of each dict in the list ``items`` that ``keep`` keeps;
    None (not the shape expected) if ``items`` is not a list or an entry is not a dict
    naming itself by the first member."""
    if not isinstance(items, list):
        return None
    out: set[str] = set()
    for item in items:
        if not isinstance(item, dict) or not isinstance(item.get(members[0]), str):
            return None
        if keep is not None and not keep(item):
            continue
        for member in members:
            value = item.get(member)
            if isinstance(value, str) and value:
                out.add(value)
    return frozenset(out)


def _count(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 \
        else None


def _unknown(what: str) -> Discovered:
    log.debug("discovery: %s is not in the shape expected", what)
    return UNKNOWN


def parse_ollama(answers: Answers) -> Discovered:
    """``GET /api/ps``: ``{"models": [{"name": "qwen2.5:7b", "model": "qwen2.5:7b",
    ...}]}``; an empty list is "nothing loaded"."""
    data = _json(answers.get("/api/ps"))
    loaded = _names(data.get("models") if isinstance(data, dict) else None, "name", "model")
    return Discovered(loaded=loaded) if loaded is not None else _unknown("ollama /api/ps")


def parse_llama_swap(answers: Answers) -> Discovered:
    """``GET /running``: ``{"running": [{"model": "qwen-14b", "state": "ready", ...}]}``
    (a model still starting or stopping is not loaded)."""
    data = _json(answers.get("/running"))
    loaded = _names(data.get("running") if isinstance(data, dict) else None, "model",
                    keep=lambda item: item.get("state", "ready") == "ready")
    return Discovered(loaded=loaded) if loaded is not None else _unknown("llama-swap /running")


def parse_llama_cpp(answers: Answers) -> Discovered:
    """``GET /props`` (``model_alias``, ``model_path``, ``total_slots``) and ``GET /slots``
    (a list of slots, each ``is_processing``; older servers: ``state`` 0 = idle). /slots
    answers 501 when the server runs with ``--no-slots``: then only /props counts."""
    props = _json(answers.get("/props"))
    loaded: frozenset[str] | None = None
    total: int | None = None
    if isinstance(props, dict):
        names: set[str] = set()
        alias = props.get("model_alias")
        if isinstance(alias, str) and alias:
            names.add(alias)
        path = props.get("model_path")
        if isinstance(path, str) and path:
            names.add(path)
            base = re.split(r"[/\\]", path)[-1]
            names.update({base, base[: -len(".gguf")] if base.endswith(".gguf") else base})
        # No model named: not the shape of /props (a llama.cpp server always names it).
        loaded = frozenset(names) if names else None
        total = _count(props.get("total_slots")) if names else None
    if loaded is None and answers.get("/props") is not None:
        _unknown("llama.cpp /props")
    load: ServerLoad | None = None
    slots = _json(answers.get("/slots"))
    if isinstance(slots, list) and all(isinstance(s, dict) for s in slots):
        busy = 0
        for s in slots:
            processing = s.get("is_processing")
            if isinstance(processing, bool):
                busy += processing
            elif isinstance(s.get("state"), int):
                busy += s["state"] != 0
        load = ServerLoad(running=busy, slots_total=len(slots), slots_idle=len(slots) - busy)
    elif total is not None:
        load = ServerLoad(slots_total=total)
    elif answers.get("/slots") is not None:
        _unknown("llama.cpp /slots")
    return Discovered(loaded, load)


_SAMPLE = re.compile(r"^([A-Za-z_:][A-Za-z0-9_:]*)(?:\{(.*)\})?\s+(\S+)(?:\s+\S+)?\s*$")
_LABEL = re.compile(r'([A-Za-z_][A-Za-z0-9_]*)="((?:[^"\\]|\\.)*)"')


def parse_vllm(answers: Answers) -> Discovered:
    """``GET /metrics`` (Prometheus text): the served model is the ``model_name`` label
    of the ``vllm:`` samples; running and waiting are summed over engines, the KV-cache
    usage is the fullest engine's. No ``vllm:`` sample at all: unknown."""
    raw = answers.get("/metrics")
    if raw is None:
        return UNKNOWN
    text = raw.decode("utf-8", errors="replace")
    models: set[str] = set()
    sums: dict[str, float] = {}
    kv: dict[str, float] = {}
    seen = False
    for line in text.splitlines():
        if not line.startswith("vllm:"):
            continue
        match = _SAMPLE.match(line)
        if match is None:
            continue
        name, labels, value = match.groups()
        try:
            number = float(value)
        except ValueError:
            continue
        seen = True
        for key, label in _LABEL.findall(labels or ""):
            if key == "model_name" and label:
                models.add(label.replace('\\"', '"').replace("\\\\", "\\"))
        if math.isnan(number) or math.isinf(number):
            continue
        if name in ("vllm:num_requests_running", "vllm:num_requests_waiting"):
            sums[name] = sums.get(name, 0.0) + number
        elif name in ("vllm:kv_cache_usage_perc", "vllm:gpu_cache_usage_perc"):
            kv[name] = max(kv.get(name, 0.0), number)
    if not seen:
        return _unknown("vllm /metrics")
    usage = kv.get("vllm:kv_cache_usage_perc", kv.get("vllm:gpu_cache_usage_perc"))

    def whole(name: str) -> int | None:
        return int(sums[name]) if name in sums and sums[name] >= 0 else None

    load = ServerLoad(running=whole("vllm:num_requests_running"),
                      waiting=whole("vllm:num_requests_waiting"),
                      kv_cache_usage=None if usage is None else min(max(usage, 0.0), 1.0))
    return Discovered(frozenset(models) if models else None, load)


def parse_lmstudio(answers: Answers) -> Discovered:
    """``GET /api/v0/models``: ``{"data": [{"id": ..., "state": "loaded" |
    "not-loaded"}]}``. The v1 list's shape (``{"models": [{"key": ...,
    "loaded_instances": [...]}]}``) is read too."""
    data = _json(answers.get("/api/v0/models"))
    if isinstance(data, dict) and isinstance(data.get("data"), list):
        loaded = _names(data["data"], "id", keep=lambda m: m.get("state") == "loaded")
    elif isinstance(data, dict) and isinstance(data.get("models"), list):
        loaded = _names(data["models"], "key",
                        keep=lambda m: isinstance(m.get("loaded_instances"), list)
                        and bool(m["loaded_instances"]))
    else:
        loaded = None
    return Discovered(loaded=loaded) if loaded is not None else _unknown("lmstudio models")


KINDS: dict[str, ServerKind] = {
    "ollama": ServerKind(("/api/ps",), parse_ollama),
    "llama-swap": ServerKind(("/running",), parse_llama_swap),
    "llama.cpp": ServerKind(("/props", "/slots"), parse_llama_cpp, blocks_while_busy=True,
                            one_model=True),
    "vllm": ServerKind(("/metrics",), parse_vllm),
    "lmstudio": ServerKind(("/api/v0/models",), parse_lmstudio),
}
"""Every ``server`` hint that polls something (``openai-compatible`` polls nothing)."""
