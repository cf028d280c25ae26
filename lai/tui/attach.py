"""Attaching an image by path: read it and validate it.

The checks are the upload endpoint's (size limit, a real image of an accepted type), so
a file the chat pane accepts is one the proxy would have accepted too.
"""

from __future__ import annotations

from pathlib import Path

from lai.store.imagecheck import inspect_image
from lai.store.images import ImageStore
from lai.tui.client import Attachment, ClientError


def read_attachment(path: str, images: ImageStore) -> Attachment:
    """Read ``path`` as an image to send. Blocking. Raises ClientError with the reason,
    InvalidRequest or RequestTooLarge (what the upload endpoint answers) for the bytes."""
    from lai.errors import RequestTooLarge

    p = Path(path).expanduser()
    if not p.is_file():
        raise ClientError(f"{path}: no such file.", type="invalid_request_error")
    size = p.stat().st_size
    if size > images.max_size:
        raise RequestTooLarge(
            f"The image is {size} bytes; the limit is {images.max_size} bytes "
            f"(server.max_image_size).", param="file")
    try:
        data = p.read_bytes()
    except OSError as exc:
        raise ClientError(f"{path}: {exc.strerror or exc}.") from None
    info = inspect_image(data, max_pixels=images.max_pixels)
    return Attachment(str(p), p.name, info.mime_type, size, info.width, info.height, data)
