"""GET /v1/models, GET /v1/models/{id}, GET /v1/providers, and GET / (HEAD /)."""

from __future__ import annotations

from quart import Blueprint, Response, g

import lai
from lai.errors import ModelNotFound
from lai.proxy.deps import json_response, runtime

bp = Blueprint("models", __name__)


def _allowed() -> frozenset[str] | None:
    key = getattr(g, "lai_key", None)
    return frozenset(key.models) if key is not None and key.models else None


@bp.get("/")
async def root() -> Response:
    """Who answers here, for connectivity probes (Claude Code sends ``HEAD /``): open
    without a key, so it says nothing but the name and version."""
    return json_response({"name": "lai", "version": lai.__version__})


@bp.get("/v1/models")
async def list_models() -> Response:
    return json_response({"object": "list", "data": runtime().engine.models(_allowed()),
                          "has_more": False})


@bp.get("/v1/models/<path:model_id>")
async def get_model(model_id: str) -> Response:
    """One entry of the list. A name that routes to a model (``provider/model``, a
    provider id, an alias) answers that model's entry. Raises ModelNotFound (404
    ``model_not_found``), also for a model the caller's key may not use."""
    engine = runtime().engine
    models = engine.models(_allowed())
    for entry in models:
        if entry["id"] == model_id:
            return json_response(entry)
    for cand in engine.catalog.lookup(model_id):
        for entry in models:
            if entry["id"] == cand.model.id and entry["provider"] == cand.provider.id:
                return json_response(entry)
    raise ModelNotFound(f"The model '{model_id}' does not exist.", param="model")


@bp.get("/v1/providers")
async def list_providers() -> Response:
    data = [p.to_dict() for p in runtime().engine.providers()]
    return json_response({"object": "list", "data": data, "has_more": False})
