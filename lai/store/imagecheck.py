"""Checking image bytes with Pillow: what an uploaded file really is, before it is stored.

The type is decided by Pillow opening the bytes (PNG, JPEG, GIF, WebP), never by the
client's Content-Type or file name. An image is refused (400) when it is not one of
those, when Pillow's ``verify()`` or a full decode of its first frame fails (damaged or
truncated), or when it declares more than ``max_pixels`` pixels (a decompression bomb;
Pillow's own ``DecompressionBombWarning`` is an error here too).

:class:`lai.store.images.ImageStore` checks every upload with :func:`inspect_image`, and
the TUI checks a file with it before attaching it. Pillow is imported on first use.
"""

from __future__ import annotations

import io
import threading
import warnings
from dataclasses import dataclass

from lai.errors import InvalidRequest

DEFAULT_MAX_PIXELS = 40_000_000
"""Largest width x height accepted (about 7300 x 5500); a decoded RGBA frame of this size
is 160 MB, which is what a home server can afford for one upload."""

# Pillow's plugin id -> (MIME type, extension). MPO is how Pillow names the multi-picture
# JPEGs that phone cameras write; it is a JPEG to every client.
FORMATS: dict[str, tuple[str, str]] = {
    "PNG": ("image/png", "png"),
    "JPEG": ("image/jpeg", "jpg"),
    "MPO": ("image/jpeg", "jpg"),
    "GIF": ("image/gif", "gif"),
    "WEBP": ("image/webp", "webp"),
}
_OPEN_FORMATS = ("PNG", "JPEG", "GIF", "WEBP")
"""The only decoders Pillow may try: fewer parsers facing untrusted bytes."""
MIME_BY_EXT = {ext: mime for mime, ext in FORMATS.values()}

# warnings.catch_warnings swaps process-wide state; two threads inside it at once can
# restore each other's filters (and leave "error" installed for good). Decoding is rare
# and short, so it runs one at a time.
_DECODE_LOCK = threading.Lock()


@dataclass(frozen=True, slots=True)
class ImageInfo:
    """What Pillow found in an accepted image."""

    format: str
    mime_type: str
    extension: str
    width: int
    height: int


def inspect_image(data: bytes, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> ImageInfo:
    """Decide what ``data`` is by decoding it.

    Raises InvalidRequest (400) when it is not a PNG, JPEG, GIF or WebP image, is damaged
    or truncated, or declares more than ``max_pixels`` pixels.
    """
    bomb = InvalidRequest(
        f"The image declares more pixels than the limit of {max_pixels} "
        f"(a decompression bomb?); send a smaller image.",
        param="file",
    )
    # Imported here: Pillow is ~3 MiB of a proxy's memory that only uploads need.
    from PIL import Image, UnidentifiedImageError

    problem: InvalidRequest | None = None
    with _DECODE_LOCK, warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            with Image.open(io.BytesIO(data), formats=_OPEN_FORMATS) as img:
                fmt = img.format or ""
                width, height = img.size
                if fmt not in FORMATS:
                    problem = _not_an_image()
                elif width * height > max_pixels or width < 1 or height < 1:
                    problem = bomb
                else:
                    img.verify()
            if problem is None:
                # verify() leaves the image unusable and misses a short pixel stream;
                # a second open and a full decode of the first frame catch truncation.
                with Image.open(io.BytesIO(data), formats=_OPEN_FORMATS) as img:
                    img.load()
        except UnidentifiedImageError:
            problem = _not_an_image()
        except (Image.DecompressionBombError, Image.DecompressionBombWarning):
            problem = bomb
        except Exception as exc:  # Pillow raises many types for bad bytes; all mean "broken"
            problem = InvalidRequest(
                f"The image could not be decoded; it is damaged or truncated ({exc}).",
                param="file",
            )
    if problem is not None:
        raise problem
    mime, ext = FORMATS[fmt]
    return ImageInfo(fmt, mime, ext, width, height)


def _not_an_image() -> InvalidRequest:
    return InvalidRequest(
        "The file is not a PNG, JPEG, GIF or WebP image (its bytes were checked, not its "
        "name or Content-Type).",
        param="file",
    )
