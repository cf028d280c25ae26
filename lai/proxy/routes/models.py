"""GET /v1/models and GET /v1/providers."""

from __future__ import annotations

from quart import Blueprint, Response, g

from lai.proxy.deps import json_response, runtime

bp = Blueprint("models", __name__)


@bp.get("/v1/models")
async def list_models() -> Response:
    key = getattr(g, "lai_key", None)
    allowed = frozenset(key.models) if key is not None and key.models else None
    return json_response({"object": "list", "data": runtime().engine.models(allowed),
                          "has_more": False})


@bp.get("/v1/providers")
async def list_providers() -> Response:
    data = [p.to_dict() for p in runtime().engine.providers()]
    return json_response({"object": "list", "data": data, "has_more": False})
