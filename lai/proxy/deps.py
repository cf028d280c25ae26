"""How a route reaches the runtime of the app serving it, and JSON responses."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import orjson
from quart import Response, current_app

if TYPE_CHECKING:
    from lai.runtime import Runtime


def runtime() -> Runtime:
    """The runtime that ``create_app`` was given."""
    rt: Runtime = current_app.extensions["lai.runtime"]
    return rt


def json_response(
    data: Any, status: int = 200, headers: dict[str, str] | None = None
) -> Response:
    """A JSON response encoded with orjson."""
    return Response(
        orjson.dumps(data), status=status, content_type="application/json", headers=headers
    )
