"""Image upload and download (DESIGN.md "HTTP API"); storage rules in ``lai.store.images``.

``POST /v1/images/upload?conversation_id=&message_id=`` takes a multipart field ``file``
and answers ``{filename, path, size, mimeType, width, height}``; the answer is what a chat
message puts in ``image_refs``. ``GET /v1/images/{conversation_id}/{message_id}/{filename}``
serves a stored image. Authentication is the app-wide hook's business, not this module's.
"""

from __future__ import annotations

from quart import Blueprint, Response, request

from lai.errors import InvalidRequest, NotFound, ServiceUnavailable
from lai.proxy.deps import json_response, runtime
from lai.store.images import ImageStore

bp = Blueprint("images", __name__)


def _images() -> ImageStore:
    images = runtime().images
    if images is None:  # a runtime built without image storage
        raise ServiceUnavailable("Image storage is not configured on this server.",
                                 code="images_unavailable")
    return images


@bp.post("/v1/images/upload")
async def upload() -> Response:
    """Store one image. 400 for missing or unsafe ids, a missing ``file`` field or bytes
    that are not an accepted image; 413 when it is over ``server.max_image_size`` (or the
    whole body over ``server.max_body_size``)."""
    images = _images()
    conversation_id = request.args.get("conversation_id")
    message_id = request.args.get("message_id")
    for name, value in (("conversation_id", conversation_id), ("message_id", message_id)):
        if not value:
            raise InvalidRequest(f"The query parameter '{name}' is required.", param=name)
    if request.mimetype != "multipart/form-data":
        raise InvalidRequest(
            "Send the image as multipart/form-data with the field 'file'.", param="file"
        )
    files = await request.files
    upload = files.get("file")
    if upload is None:
        raise InvalidRequest("The multipart field 'file' is missing.", param="file")
    # One byte past the limit is enough to know it is too large.
    data = upload.read(images.max_size + 1)
    answer = await images.save(conversation_id, message_id, upload.filename, data)  # type: ignore[arg-type]
    return json_response(answer)


@bp.get("/v1/images/<conversation_id>/<message_id>/<filename>")
async def download(conversation_id: str, message_id: str, filename: str) -> Response:
    """A stored image with its content type; 404 for anything that is not one."""
    images = _images()
    try:
        data, mime = await images.read(conversation_id, message_id, filename)
    except InvalidRequest:
        # An unsafe or malformed name cannot be a stored image: answer as for a missing one.
        raise NotFound(
            f"No image '{conversation_id}/{message_id}/{filename}'.", param="path"
        ) from None
    return Response(
        data,
        content_type=mime,
        headers={
            "X-Content-Type-Options": "nosniff",
            "Cache-Control": "private, max-age=86400",
            "Content-Security-Policy": "default-src 'none'",
        },
    )
