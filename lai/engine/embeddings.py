"""Embeddings (``POST /v1/embeddings``), routed like chat to models of kind "embedding".

The request takes the chat path's machinery: candidates from ``plan`` (with
``kind="embedding"``: ``auto`` picks only embedding models, a chat model is a 400), a
slot, the priority queue, one retry of a 429/5xx, failover on a refused connection, the
health record, and a ``RequestFinished`` event with tokens and cost for the recorder and
metrics. Anthropic providers serve no embeddings (the config refuses such a model).
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

import httpx
import orjson

from lai.config.models import ProviderConfig
from lai.engine.adapters import adapter_for
from lai.engine.adapters.openai import auth_headers
from lai.engine.cost import request_cost
from lai.engine.health import describe_http_error
from lai.engine.requests import ChatShape, estimate_text_tokens
from lai.engine.routing import Candidate, plan
from lai.engine.run import CONNECT_FAILURES, TIMEOUTS, ProviderFailed, Run, billed_seconds
from lai.engine.types import Completion, RequestContext, Usage
from lai.errors import InvalidRequest, LaiError

if TYPE_CHECKING:
    from lai.engine.engine import Engine

ENCODINGS = ("float", "base64")


def _bad(message: str, param: str) -> InvalidRequest:
    return InvalidRequest(message, param=param)


def inspect_embeddings(body: Any) -> ChatShape:
    """Validate an OpenAI embeddings body and measure its largest input (what must fit
    the model's context window). Raises InvalidRequest (400)."""
    if not isinstance(body, dict):
        raise _bad("The request body must be a JSON object.", "body")
    model = body.get("model")
    if not isinstance(model, str) or not model.strip():
        raise _bad("'model' is required and must be a non-empty string.", "model")
    raw = body.get("input")
    items: list[Any] = raw if isinstance(raw, list) else [raw]
    if not items or raw is None:
        raise _bad("'input' must be a string, an array of strings or an array of token "
                   "arrays, and not empty.", "input")
    largest = 0
    if all(isinstance(t, int) and not isinstance(t, bool) for t in items):
        largest = len(items)  # one input given as tokens
    else:
        for i, item in enumerate(items):
            if isinstance(item, str):
                largest = max(largest, estimate_text_tokens(item))
            elif isinstance(item, list) and all(
                    isinstance(t, int) and not isinstance(t, bool) for t in item):
                largest = max(largest, len(item))
            else:
                raise _bad(f"input[{i}] must be a string or an array of token ids.", "input")
    fmt = body.get("encoding_format")
    if fmt is not None and fmt not in ENCODINGS:
        raise _bad("'encoding_format' must be float or base64.", "encoding_format")
    dims = body.get("dimensions")
    if dims is not None and (isinstance(dims, bool) or not isinstance(dims, int) or dims < 1):
        raise _bad("'dimensions' must be an integer >= 1.", "dimensions")
    return ChatShape(model=model.strip(), stream=False, prompt_tokens=largest, max_tokens=0,
                     has_images=False, wants_usage=False)


def embeddings_url(provider: ProviderConfig) -> str:
    """``{endpoint}/v1/embeddings`` for local servers, ``{base_url}/embeddings`` for cloud."""
    if provider.type == "local":
        return provider.base_url + "/v1/embeddings"
    return provider.base_url + "/embeddings"


def _parse(raw: bytes, model_requested: str, provider_id: str) -> tuple[bytes, Usage | None]:
    """The client's body (``model`` as asked, ``provider`` added) and the usage.
    Raises ValueError for a 200 that is not an embeddings answer."""
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise ValueError("upstream answered 200 with a body that is not JSON") from exc
    if not isinstance(doc, dict) or not isinstance(doc.get("data"), list):
        raise ValueError("upstream answered 200 without an embeddings 'data' list")
    usage = None
    raw_usage = doc.get("usage")
    if isinstance(raw_usage, dict) and isinstance(raw_usage.get("prompt_tokens"), int):
        usage = Usage(raw_usage["prompt_tokens"], 0)
    doc["model"] = model_requested
    doc["provider"] = provider_id
    return orjson.dumps(doc), usage


async def embed(engine: Engine, body: Any, ctx: RequestContext) -> Completion:
    """Serve an embeddings request over the engine's providers (see the module docstring).

    Raises InvalidRequest, ModelNotFound, PermissionDenied, ContextLengthExceeded,
    CapacityExceeded, NoHealthyProvider, UpstreamPoolExhausted, UpstreamRejected,
    UpstreamError or UpstreamTimeout; every outcome is reported as a RequestFinished event.
    """
    run: Run | None = None
    try:
        shape = inspect_embeddings(body)
        candidates = plan(engine.catalog, shape, ctx,
                          usable=lambda pid: engine.states[pid].usable,
                          status=lambda pid: engine.states[pid].status,
                          warm=engine.is_warm, kind="embedding")
        run = Run(ctx, shape, body, body, engine.clock.time(), engine.clock.monotonic())
        done: Completion = await engine._serve(
            run, candidates, lambda run_, cand: _attempt(engine, run_, cand))
        return done
    except LaiError as exc:
        engine._finish(run, body, ctx, error=exc)
        raise
    except asyncio.CancelledError:
        engine._finish(run, body, ctx, error=None, cancelled=True)
        raise
    finally:
        if run is not None:
            engine._running.pop(run.ctx.request_id, None)


async def _attempt(engine: Engine, run: Run, cand: Candidate) -> Completion:
    """One candidate: post, retry a 429/5xx once, parse. Raises ProviderFailed to fail
    over, UpstreamTimeout or UpstreamRejected to stop."""
    pid = cand.provider.id
    content = orjson.dumps({**run.body, "model": cand.model.upstream_name})
    headers = {"content-type": "application/json", **auth_headers(cand.provider)}
    url = engine._url(embeddings_url(cand.provider))
    adapter = adapter_for(cand.provider)
    for attempt in (1, 2):
        t = engine.clock.monotonic()
        try:
            resp = await engine.client.post(url, content=content, headers=headers,
                                            timeout=engine.timeouts[pid])
        except httpx.PoolTimeout:
            raise engine._pool_exhausted(cand) from None
        except TIMEOUTS as exc:
            raise engine._timeout_error(cand, exc) from None
        except CONNECT_FAILURES as exc:
            raise ProviderFailed(describe_http_error(exc)) from None
        finally:
            run.upstream_ms += (engine.clock.monotonic() - t) * 1000
        status = resp.status_code
        if status == 200:
            try:
                # The id the client asked for; for auto, lai's id of the model that served.
                shown = cand.model.id if run.shape.model == "auto" else run.shape.model
                out, usage = _parse(resp.content, shown, pid)
            except ValueError as exc:
                if attempt == 1:
                    await engine._retry_wait(run, None)
                    continue
                raise ProviderFailed(str(exc)) from None
            usage = usage or Usage(run.shape.prompt_tokens, 0, True)
            cost = request_cost(cand.model, cand.provider, engine.settings.server, usage,
                                billed_seconds(run, engine.clock.monotonic()))
            engine._release(run, cand)  # the key's and the model's slots too
            engine.health.record_success(pid)
            engine.states[pid].warm[cand.model.id] = engine.clock.monotonic()
            run.candidate = None
            engine._finish(run, run.body, run.ctx, cand=cand, usage=usage, cost=cost)
            return Completion(out, pid, cand.model.id, usage, cost)
        if status == 429 or status >= 500:
            if attempt == 1:
                await engine._retry_wait(run, resp)
                continue
            raise ProviderFailed(f"HTTP {status}: {adapter.error_message(resp.content)}")
        raise engine._rejected(run, cand, resp, resp.content)
    raise AssertionError("unreachable")
