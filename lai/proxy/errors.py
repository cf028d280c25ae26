"""Render every error as an OpenAI-shaped JSON response, in one place."""

from __future__ import annotations

import logging

import orjson
from quart import Quart, Response
from werkzeug.exceptions import HTTPException

from lai.errors import LaiError

log = logging.getLogger("lai.proxy")

_HTTP_TYPES = {
    301: ("invalid_request_error", "moved"),
    308: ("invalid_request_error", "moved"),
    400: ("invalid_request_error", None),
    401: ("authentication_error", "invalid_api_key"),
    403: ("permission_error", None),
    404: ("invalid_request_error", "not_found"),
    405: ("invalid_request_error", "method_not_allowed"),
    408: ("invalid_request_error", "request_timeout"),
    413: ("invalid_request_error", "request_too_large"),
    414: ("invalid_request_error", "uri_too_long"),
    431: ("invalid_request_error", "request_header_fields_too_large"),
    501: ("invalid_request_error", "not_implemented"),
}


def error_response(err: LaiError) -> Response:
    """The response for a lai error: its status, body and ``Retry-After`` if any."""
    return Response(
        orjson.dumps(err.to_dict()),
        status=err.status,
        content_type="application/json",
        headers=err.headers(),
    )


def http_error_body(status: int, message: str) -> bytes:
    """The OpenAI-shaped body for an HTTP-level error (405, 413, ...) with ``message``."""
    type_, code = _HTTP_TYPES.get(status, ("api_error", None))
    return orjson.dumps(
        {"error": {"message": message, "type": type_, "code": code, "param": None}}
    )


def internal_error_body(err: BaseException) -> bytes:
    """The body of a 500 for an error lai did not expect (its type only, no details)."""
    return orjson.dumps({
        "error": {
            "message": f"Internal error in lai: {type(err).__name__}",
            "type": "api_error",
            "code": "internal_error",
            "param": None,
        }
    })


TOO_LARGE = "Request body is larger than server.max_body_size."
NOT_ALLOWED = "Method not allowed on this endpoint."


def error_event(err: LaiError) -> bytes:
    """The SSE event that ends a stream that broke after its first byte."""
    return b"data: " + orjson.dumps(err.to_dict()) + b"\n\n"


def install_error_handlers(app: Quart) -> None:
    """Make sure no error ever leaves as HTML or as a framework's own body."""

    @app.errorhandler(LaiError)
    async def _lai(err: LaiError) -> Response:
        return error_response(err)

    @app.errorhandler(HTTPException)
    async def _http(err: HTTPException) -> Response:
        status = err.code or 500
        if status == 413:
            message = TOO_LARGE
        elif status == 404:
            message = "No such endpoint. See GET /v1/models and the README's API list."
        elif status == 405:
            message = NOT_ALLOWED
        else:
            message = err.description or err.name
        return Response(http_error_body(status, message), status=status,
                        content_type="application/json")

    @app.errorhandler(Exception)
    async def _any(err: Exception) -> Response:
        log.exception("unhandled error")
        return Response(internal_error_body(err), status=500, content_type="application/json")

    @app.after_request
    async def _no_html(response: Response) -> Response:
        # Werkzeug answers a routing redirect (/v1//models -> /v1/models, 308) with its
        # own HTML page, past the error handlers, and OPTIONS with an empty text/html
        # 200: the redirect in JSON, OPTIONS as 204 (its Allow header is the answer).
        if response.mimetype != "text/html":
            return response
        if response.status_code < 300:
            response.status_code = 204
            response.set_data(b"")
            response.headers.pop("Content-Type", None)
            return response
        location = response.headers.get("Location")
        message = (f"This endpoint is at {location}." if location
                   else response.status.partition(" ")[2] or "Error.")
        response.set_data(http_error_body(response.status_code, message))
        response.mimetype = "application/json"
        return response
