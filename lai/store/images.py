"""Uploaded images on disk: safe storage, serving, loading for vision models, clean-up.

Layout (DESIGN.md, "Store")::

    data_dir/images/{conversation_id}/{message_id}/{NNN}_{filename}

``NNN`` counts from ``001`` per message. Ids must match ``^[A-Za-z0-9._-]{1,64}$`` and
may not be ``.`` or ``..``; they are refused (400), never repaired. The client's file
name is sanitised (base name only, ASCII letters, digits, ``.``, ``_`` and ``-``, at most
100 characters before the extension) and gets the extension of the detected format.
Every final path is checked to resolve inside ``data_dir/images``.

What the bytes are is decided by :func:`lai.store.imagecheck.inspect_image` (Pillow
decodes them; anything but an intact PNG, JPEG, GIF or WebP within ``max_pixels`` is a
400), never by the client's Content-Type or file name. An image over
``server.max_image_size`` bytes is a 413. Nothing is written until the bytes passed.

The answer to an upload (and the accepted shape of a chat message's ``image_refs``
items)::

    {"filename": "001_cat.png", "path": "conv_1/msg_1/001_cat.png", "size": 1234,
     "mimeType": "image/png", "width": 64, "height": 48}

An ``image_refs`` item is an object with either ``path`` (``conversation_id/message_id/
filename``, as answered) or all of ``conversation_id``, ``message_id`` and ``filename``;
other keys are ignored, anything else is a 400. :meth:`ImageStore.resolve` turns a
message's refs into OpenAI ``image_url`` parts with ``data:{mime};base64,...`` URLs,
appended after the message's own content.

All methods named ``*_sync`` (and :meth:`ImageStore.sweep`,
:meth:`ImageStore.delete_conversation`) block; the async ones run them in
``asyncio.to_thread``.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import os
import re
import secrets
import shutil
import threading
import unicodedata
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from lai.config.models import ServerSettings
from lai.engine.clock import Clock, SystemClock
from lai.errors import InvalidRequest, NotFound, RequestTooLarge
from lai.store.imagecheck import DEFAULT_MAX_PIXELS, MIME_BY_EXT, inspect_image
from lai.store.private import DIR_MODE, open_private

try:
    import fcntl
except ImportError:  # pragma: no cover - not Linux/macOS
    fcntl = None  # type: ignore[assignment]

log = logging.getLogger("lai.store.images")

IMAGES_DIR = "images"
SAFE_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")
"""Conversation and message ids (the X-Conversation-ID rule), minus ``.`` and ``..``.
Used with ``fullmatch``: ``$`` would let a trailing newline through."""
MAX_STEM = 100
"""Characters of the client's file name kept before the extension."""
STORED_NAME = re.compile(r"[0-9]{3,}_[A-Za-z0-9._-]{1,100}\.(png|jpg|gif|webp)")
"""What a stored file is called; anything else is never read or served."""
_NUMBERED = re.compile(r"([0-9]{3,})_")
SWEEP_INTERVAL = 24 * 3600.0
"""Seconds between two retention sweeps."""

_SAVE_LOCK = threading.Lock()
"""Numbering uploads where flock is missing (one process only, then)."""


def check_id(value: Any, what: str) -> str:
    """``value`` if it is a safe path segment id. Raises InvalidRequest (400)."""
    if not isinstance(value, str) or not SAFE_ID.fullmatch(value) or value in (".", ".."):
        raise InvalidRequest(
            f"{what} must be 1-64 characters of A-Z, a-z, 0-9, '.', '_' or '-' "
            f"(and not '.' or '..').",
            param=what,
        )
    return value


def check_stored_name(value: Any, what: str = "filename") -> str:
    """``value`` if it is the name of a stored image (``001_cat.png``). Raises InvalidRequest."""
    if not isinstance(value, str) or not STORED_NAME.fullmatch(value):
        raise InvalidRequest(
            f"{what} is not the name of an uploaded image (like '001_cat.png').", param=what
        )
    return value


def sanitize_filename(name: str | None, extension: str) -> str:
    """A safe file name for ``name`` ending in ``.{extension}``; never empty, never a path.

    Keeps the last path component only (``/`` and ``\\`` both separate), folds accents
    to ASCII, replaces other characters by ``_``, drops leading and trailing dots, and
    caps the stem at ``MAX_STEM`` characters. A name with nothing left is ``image``.
    """
    raw = (name or "").replace("\x00", "")
    base = re.split(r"[\\/]", raw)[-1]
    stem, dot, _ = base.rpartition(".")
    if not dot or not stem.strip("."):
        stem = base  # no extension ("README"), or only a leading dot (".png")
    stem = unicodedata.normalize("NFKD", stem).encode("ascii", "ignore").decode("ascii")
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", stem).strip("._-")[:MAX_STEM].strip("._-")
    return f"{stem or 'image'}.{extension}"



@contextlib.contextmanager
def _locked(directory: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``directory`` (flock: threads and processes alike)."""
    if fcntl is None:  # pragma: no cover
        with _SAVE_LOCK:
            yield
        return
    fd = os.open(directory, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock


class ImageStore:
    """Images under ``data_dir/images``. Building one does no IO."""

    def __init__(
        self,
        data_dir: Path,
        *,
        max_size: int = 10 * 1024 * 1024,
        max_per_message: int = 5,
        retention_days: int | None = None,
        max_pixels: int = DEFAULT_MAX_PIXELS,
        clock: Clock | None = None,
    ) -> None:
        self.root = Path(data_dir) / IMAGES_DIR
        self.max_size = max_size
        self.max_per_message = max_per_message
        self.retention_days = retention_days
        self.max_pixels = max_pixels
        self.clock = clock or SystemClock()
        self._sweeper: asyncio.Task[None] | None = None

    @classmethod
    def from_settings(cls, server: ServerSettings, *, clock: Clock | None = None) -> ImageStore:
        """An ImageStore with the limits of ``[server]``."""
        return cls(
            server.data_dir,
            max_size=server.max_image_size,
            max_per_message=server.max_images_per_message,
            retention_days=server.images_retention_days,
            clock=clock,
        )

    # ------------------------------------------------------------------ paths

    def _inside(self, path: Path) -> Path:
        """``path`` resolved, if it is strictly inside the images root. Raises InvalidRequest."""
        root = self.root.resolve()
        resolved = path.resolve()
        if resolved == root or not resolved.is_relative_to(root):
            raise InvalidRequest("That path leaves the images directory.", param="path")
        return resolved

    def path_of(self, conversation_id: str, message_id: str, filename: str) -> Path:
        """The file of a stored image, validated. Raises InvalidRequest (400) for an unsafe
        id or a name that is not a stored image's; does not check that it exists."""
        check_id(conversation_id, "conversation_id")
        check_id(message_id, "message_id")
        check_stored_name(filename)
        return self._inside(self.root / conversation_id / message_id / filename)

    # ------------------------------------------------------------------ upload

    def save_sync(
        self, conversation_id: str, message_id: str, filename: str | None, data: bytes
    ) -> dict[str, Any]:
        """Validate and store one uploaded image; answer ``{filename, path, size, mimeType,
        width, height}``.

        Raises InvalidRequest (400) for an unsafe id, bytes that are not an accepted
        image, or a message that already has ``max_per_message`` images; RequestTooLarge
        (413) for more than ``max_size`` bytes. On any refusal nothing is left on disk.
        """
        check_id(conversation_id, "conversation_id")
        check_id(message_id, "message_id")
        if len(data) > self.max_size:
            raise RequestTooLarge(
                # The route reads one byte past the limit, so the real size is unknown.
                f"The image is larger than the limit of {self.max_size} bytes "
                f"(server.max_image_size).",
                param="file",
            )
        if not data:
            raise InvalidRequest("The uploaded file is empty.", param="file")
        info = inspect_image(data, max_pixels=self.max_pixels)
        safe = sanitize_filename(filename, info.extension)

        folder = self._inside(self.root / conversation_id / message_id)
        created = self._make_dirs(folder)
        tmp = folder / f".upload-{secrets.token_hex(8)}.tmp"
        try:
            # Write outside the lock (the slow part), number and rename inside it.
            with os.fdopen(open_private(tmp, os.O_WRONLY | os.O_EXCL), "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            with _locked(folder):
                numbers = [
                    int(m.group(1)) for p in folder.iterdir() if (m := _NUMBERED.match(p.name))
                ]
                if len(numbers) >= self.max_per_message:
                    raise InvalidRequest(
                        f"Message '{message_id}' already has {len(numbers)} images; at most "
                        f"{self.max_per_message} are allowed (server.max_images_per_message).",
                        param="file",
                    )
                stored = f"{max(numbers, default=0) + 1:03d}_{safe}"
                final = self._inside(folder / stored)
                os.replace(tmp, final)
        except BaseException:
            tmp.unlink(missing_ok=True)
            for d in reversed(created):  # only folders this upload made, and only if empty
                with contextlib.suppress(OSError):
                    d.rmdir()
            raise
        return {
            "filename": stored,
            "path": f"{conversation_id}/{message_id}/{stored}",
            "size": len(data),
            "mimeType": info.mime_type,
            "width": info.width,
            "height": info.height,
        }

    def _make_dirs(self, folder: Path) -> list[Path]:
        """mkdir -p ``folder``; answers the folders it created, outermost first."""
        created: list[Path] = []
        for d in (self.root.parent, self.root, folder.parent, folder):
            if not d.is_dir():
                with contextlib.suppress(FileExistsError):
                    d.mkdir(mode=DIR_MODE, parents=True)  # 0700 through a umask of 022
                    created.append(d)
        self._inside(folder)  # again, now that the folders exist (a symlink planted meanwhile)
        return created

    async def save(
        self, conversation_id: str, message_id: str, filename: str | None, data: bytes
    ) -> dict[str, Any]:
        """:meth:`save_sync` in a worker thread."""
        return await asyncio.to_thread(self.save_sync, conversation_id, message_id, filename, data)

    # ------------------------------------------------------------------ reading

    def read_sync(self, conversation_id: str, message_id: str, filename: str) -> tuple[bytes, str]:
        """The bytes and MIME type of a stored image.

        Raises InvalidRequest (400) for unsafe ids or names, NotFound (404) when there is
        no such image.
        """
        path = self.path_of(conversation_id, message_id, filename)
        try:
            data = path.read_bytes()
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            raise NotFound(
                f"No image '{conversation_id}/{message_id}/{filename}'.", param="path"
            ) from None
        # The extension was chosen from the decoded format when the file was stored.
        return data, MIME_BY_EXT[path.suffix[1:]]

    async def read(self, conversation_id: str, message_id: str, filename: str) -> tuple[bytes, str]:
        """:meth:`read_sync` in a worker thread."""
        return await asyncio.to_thread(self.read_sync, conversation_id, message_id, filename)

    def _ref_parts(self, ref: Any, where: str) -> tuple[str, str, str]:
        bad = InvalidRequest(
            f"{where} must be an uploaded image's answer: an object with 'path' "
            f"('conversation_id/message_id/filename') or with 'conversation_id', "
            f"'message_id' and 'filename'.",
            param=where,
        )
        if not isinstance(ref, dict):
            raise bad
        path = ref.get("path")
        if path is not None:
            parts: list[Any] = path.split("/") if isinstance(path, str) else []
        else:
            parts = [ref.get(k) for k in ("conversation_id", "message_id", "filename")]
        if len(parts) != 3 or not all(isinstance(v, str) for v in parts):
            raise bad
        return (
            check_id(parts[0], f"{where}.conversation_id"),
            check_id(parts[1], f"{where}.message_id"),
            check_stored_name(parts[2], f"{where}.filename"),
        )

    def data_url_sync(self, ref: Any, where: str = "image_ref") -> str:
        """``data:{mime};base64,...`` for one ``image_refs`` item.

        Raises InvalidRequest (400) for a malformed or unsafe reference, or one whose
        image does not exist.
        """
        conv, msg, name = self._ref_parts(ref, where)
        try:
            data, mime = self.read_sync(conv, msg, name)
        except NotFound:
            raise InvalidRequest(
                f"{where}: no uploaded image at '{conv}/{msg}/{name}'.", param=where
            ) from None
        return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"

    def resolve_sync(self, messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Messages with each ``image_refs`` item added as a base64 ``image_url`` part.

        A string content becomes a text part followed by the images; the input is not
        modified and ``image_refs`` stays on the returned messages (the engine strips it
        before sending). Raises InvalidRequest (400) for refs that are not an array of
        valid references, more than ``max_per_message`` of them, or a missing image.
        """
        out: list[dict[str, Any]] = []
        for i, msg in enumerate(messages):
            refs = msg.get("image_refs") if isinstance(msg, dict) else None
            if not refs:
                out.append(msg)
                continue
            where = f"messages[{i}].image_refs"
            if not isinstance(refs, list):
                raise InvalidRequest(f"{where} must be an array.", param=where)
            if len(refs) > self.max_per_message:
                raise InvalidRequest(
                    f"{where} has {len(refs)} images; at most {self.max_per_message} are "
                    f"allowed per message (server.max_images_per_message).",
                    param=where,
                )
            content = msg.get("content")
            parts: list[Any]
            if isinstance(content, str):
                parts = [{"type": "text", "text": content}] if content else []
            elif isinstance(content, list):
                parts = list(content)
            else:
                parts = []
            for j, ref in enumerate(refs):
                url = self.data_url_sync(ref, f"{where}[{j}]")
                parts.append({"type": "image_url", "image_url": {"url": url}})
            out.append({**msg, "content": parts})
        return out

    async def resolve(self, messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The engine's ``image_resolver``: :meth:`resolve_sync` in a worker thread."""
        return await asyncio.to_thread(self.resolve_sync, messages)

    # ------------------------------------------------------------------ deletion

    def delete_conversation(self, conversation_id: str) -> bool:
        """Remove ``data_dir/images/{conversation_id}``; True if there was one.

        An id that could not have images (unsafe, ``..``) removes nothing. This is the
        store's ``on_conversation_deleted`` hook. Raises OSError when removal fails.
        """
        try:
            check_id(conversation_id, "conversation_id")
            folder = self._inside(self.root / conversation_id)
        except InvalidRequest:
            return False
        if not folder.is_dir():
            return False
        shutil.rmtree(folder)
        log.info("removed the images of conversation %s", conversation_id)
        return True

    def delete_message(self, conversation_id: str, message_id: str) -> bool:
        """Remove one message's images (and its conversation's folder if that leaves it
        empty); True if there were any. Unsafe ids remove nothing. Raises OSError."""
        try:
            check_id(conversation_id, "conversation_id")
            check_id(message_id, "message_id")
            folder = self._inside(self.root / conversation_id / message_id)
        except InvalidRequest:
            return False
        if not folder.is_dir():
            return False
        shutil.rmtree(folder)
        with contextlib.suppress(OSError):  # not empty: other messages keep their images
            folder.parent.rmdir()
        return True

    def sweep(self, *, now: float | None = None) -> list[str]:
        """Remove message folders not written to for ``retention_days`` (by the folder's
        modification time: the last upload into it), then conversation folders left empty
        that are as old. Answers the removed folders relative to the images root.

        Does nothing without ``retention_days``. A folder that cannot be removed is logged
        and skipped.
        """
        if self.retention_days is None or not self.root.is_dir():
            return []
        cutoff = (self.clock.time() if now is None else now) - self.retention_days * 86400
        removed: list[str] = []
        for conv in sorted(self.root.iterdir()):
            if conv.is_symlink() or not conv.is_dir():
                continue
            # Read before removing children: removing them bumps the folder's mtime.
            conv_old = conv.stat().st_mtime < cutoff
            for msg in sorted(conv.iterdir()):
                if msg.is_symlink() or not msg.is_dir():
                    continue
                try:
                    if msg.stat().st_mtime < cutoff:
                        shutil.rmtree(msg)
                        removed.append(f"{conv.name}/{msg.name}")
                except OSError:
                    log.exception("retention sweep: could not remove %s", msg)
            if conv_old:
                # Fails (and is skipped) when an upload just made a new message folder.
                with contextlib.suppress(OSError):
                    conv.rmdir()
                    removed.append(conv.name)
        if removed:
            log.info("retention sweep removed %d image folders", len(removed))
        return removed

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        """Start the daily retention sweep (only when ``retention_days`` is set)."""
        if self.retention_days is not None and self._sweeper is None:
            self._sweeper = asyncio.create_task(self._sweep_forever(), name="lai-image-sweep")

    async def close(self) -> None:
        """Stop the retention sweep."""
        task, self._sweeper = self._sweeper, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _sweep_forever(self) -> None:
        while True:
            try:
                await asyncio.to_thread(self.sweep)
            except Exception:  # a bad day on disk must not end the sweeping for good
                log.exception("retention sweep failed")
            await self.clock.sleep(SWEEP_INTERVAL)
