"""Image bytes for the image tests: real images made by Pillow, and hostile files."""

from __future__ import annotations

import io
import os
import struct
import zlib
from pathlib import Path

from PIL import Image

FORMATS = {"PNG": "image/png", "JPEG": "image/jpeg", "GIF": "image/gif", "WEBP": "image/webp"}
EXTENSIONS = {"PNG": "png", "JPEG": "jpg", "GIF": "gif", "WEBP": "webp"}


def image_bytes(
    fmt: str = "PNG", size: tuple[int, int] = (40, 30), *, noise: bool = False
) -> bytes:
    """A small real image in ``fmt``; ``noise`` makes it incompressible (for size limits)."""
    if noise:
        img = Image.frombytes("RGB", size, os.urandom(size[0] * size[1] * 3))
    else:
        img = Image.new("RGB", size, (200, 30, 90))
    out = io.BytesIO()
    img.save(out, fmt)
    return out.getvalue()


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_declaring(width: int, height: int, *, full: bool = False) -> bytes:
    """A PNG whose header declares ``width`` x ``height`` 1-bit pixels.

    Without ``full`` the pixel data is a single row (a few hundred bytes in all); with
    ``full`` every row is there, all zeros, deflated: a real decompression bomb that is
    tiny on the wire and huge in memory.
    """
    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)  # 1-bit greyscale
    row = b"\x00" * (1 + (width + 7) // 8)
    comp = zlib.compressobj(9)
    rows = height if full else 1
    idat = bytearray()
    chunk_rows = max(1, (1 << 20) // len(row))
    for start in range(0, rows, chunk_rows):
        idat += comp.compress(row * min(chunk_rows, rows - start))
    idat += comp.flush()
    return (
        b"\x89PNG\r\n\x1a\n"
        + _chunk(b"IHDR", ihdr)
        + _chunk(b"IDAT", bytes(idat))
        + _chunk(b"IEND", b"")
    )


def files_under(root: Path) -> set[Path]:
    """Every file and symlink below ``root`` (relative paths)."""
    out: set[Path] = set()
    for dirpath, dirnames, filenames in os.walk(root):
        for name in filenames + [d for d in dirnames if os.path.islink(os.path.join(dirpath, d))]:
            out.add(Path(dirpath, name).relative_to(root))
    return out
