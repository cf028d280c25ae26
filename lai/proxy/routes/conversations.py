"""The conversation log over HTTP: list and search, get, rename, delete.

``GET /v1/conversations[?q=&limit=&offset=&username=]`` answers
``{"object": "list", "data": [...], "has_more": bool}``, newest activity first;
``GET /v1/conversations/{id}`` the conversation with ``"messages"``;
``PATCH /v1/conversations/{id}`` with ``{"display_name": "..." | null}`` renames it;
``DELETE /v1/conversations/{id}`` removes it, its messages and its images.
Database calls run in a worker thread so the event loop keeps serving completions.
Each waits first for the recorder to store the requests lai has already answered
(``Recorder.settle``): a client sees the conversation its last chat made.
"""

from __future__ import annotations

import asyncio
import re
from typing import Any

from quart import Blueprint, Response, request

from lai.errors import InvalidRequest, NotFound, ServiceUnavailable
from lai.proxy.deps import json_response, runtime
from lai.proxy.jsonbody import parse_body
from lai.store import conversations as repo
from lai.store.db import Store

bp = Blueprint("conversations", __name__)

_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
_MAX_NAME = 255
MAX_OFFSET = 1_000_000_000
"""Largest ``offset``: any bigger skips every conversation there can be, and an
unbounded one overflows the database's integer."""
_INT = re.compile(r"[0-9]{1,19}")


def _store() -> Store:
    store: Store | None = getattr(runtime(), "store", None)
    if store is None:
        raise ServiceUnavailable(
            "This server keeps no conversation log (it runs without a store).",
            code="store_unavailable",
        )
    return store


async def _settled(conversation_id: str | None) -> None:
    recorder = getattr(runtime(), "recorder", None)
    if recorder is not None:
        await recorder.settle(conversation_id)


def _checked_id(conversation_id: str) -> str:
    # An id that X-Conversation-ID could never have created cannot exist.
    if not _ID.match(conversation_id):
        raise NotFound(f"No conversation with id {conversation_id!r}.", param="id")
    return conversation_id


def _int_arg(name: str, default: int, low: int, high: int) -> int:
    """The integer query parameter ``name`` (``default`` when absent). Raises
    InvalidRequest unless it is written in digits and lies in ``[low, high]``."""
    raw = request.args.get(name)
    if raw is None or raw == "":
        return default
    if not _INT.fullmatch(raw.strip()):
        raise InvalidRequest(
            f"{name} must be a whole number between {low} and {high}, got {raw[:40]!r}.",
            param=name)
    value = int(raw)
    if not low <= value <= high:
        raise InvalidRequest(f"{name} must be between {low} and {high}, got {value}.",
                             param=name)
    return value


@bp.get("/v1/conversations")
async def list_conversations() -> Response:
    limit = _int_arg("limit", repo.DEFAULT_LIMIT, 1, repo.MAX_LIMIT)
    offset = _int_arg("offset", 0, 0, MAX_OFFSET)
    q = request.args.get("q") or None
    username = request.args.get("username") or None
    await _settled(None)
    page = await asyncio.to_thread(
        repo.list_conversations, _store(), q=q, limit=limit, offset=offset, username=username
    )
    return json_response({"object": "list", "data": page.data, "has_more": page.has_more})


@bp.get("/v1/conversations/<conversation_id>")
async def get_conversation(conversation_id: str) -> Response:
    cid = _checked_id(conversation_id)
    await _settled(cid)
    return json_response(await asyncio.to_thread(repo.get_conversation, _store(), cid))


async def _json_object() -> dict[str, Any]:
    raw: bytes = await request.get_data(as_text=False)  # type: ignore[assignment]
    body = parse_body(raw, param=None)
    if not isinstance(body, dict):
        raise InvalidRequest("The body must be a JSON object.")
    return body


@bp.patch("/v1/conversations/<conversation_id>")
async def rename_conversation(conversation_id: str) -> Response:
    cid = _checked_id(conversation_id)
    body = await _json_object()
    if "display_name" not in body:
        raise InvalidRequest("Missing field display_name.", param="display_name")
    unknown = sorted(set(body) - {"display_name"})
    if unknown:
        raise InvalidRequest(
            f"Only display_name can be changed, not {', '.join(unknown)}.", param=unknown[0]
        )
    name = body["display_name"]
    if name is not None and not isinstance(name, str):
        raise InvalidRequest("display_name must be a string or null.", param="display_name")
    if isinstance(name, str):
        name = name.strip() or None  # an empty name clears it, as null does
        if name is not None and len(name) > _MAX_NAME:
            raise InvalidRequest(
                f"display_name is longer than {_MAX_NAME} characters.", param="display_name"
            )
    await _settled(cid)
    return json_response(await asyncio.to_thread(repo.rename_conversation, _store(), cid, name))


@bp.delete("/v1/conversations/<conversation_id>")
async def delete_conversation(conversation_id: str) -> Response:
    cid = _checked_id(conversation_id)
    await _settled(cid)
    await asyncio.to_thread(repo.delete_conversation, _store(), cid)
    return json_response({"id": cid, "object": "conversation.deleted", "deleted": True})
