"""One engine per data dir: an exclusive lock held by the process that runs the engine.

Slots, the queue and health live in the engine's process. Two engines on one config (an
embedded TUI and a proxy) would each allow a box its ``max_concurrent``, so whichever
runs an engine — ``lai proxy`` or ``lai`` in embedded mode — holds ``data_dir/engine.lock``
(``flock``, so the kernel releases it when the process ends, crash included: nothing
stale is left). The file names the holder (pid and role) for the refusal's message.

Hand-over: a ``lai proxy`` that finds an embedded TUI holding the lock may ask it to
hand over by writing its pid into ``data_dir/engine.handover`` (:func:`request_handover`).
The TUI sees the request (:func:`handover_request`), asks its operator, and either
releases the lock (the proxy takes it and removes the request) or removes the request
(:func:`withdraw_handover`: declined, the proxy exits with its refusal). A request whose
pid is gone (a proxy killed while waiting) counts as none.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Literal

from lai.errors import LaiError

try:
    import fcntl
except ImportError:  # pragma: no cover - not POSIX: no lock, as before
    fcntl = None  # type: ignore[assignment]

LOCK_NAME = "engine.lock"
HANDOVER_NAME = "engine.handover"
Role = Literal["proxy", "tui"]
_WHAT = {"proxy": "a lai proxy", "tui": "a lai TUI with its own engine"}


class EngineLocked(LaiError):
    """Another process runs the engine for this data dir."""

    def __init__(self, message: str, holder: str) -> None:
        super().__init__(message, code="engine_locked")
        self.holder = holder
        """What the lock file says: ``"<pid> <role>"`` (may be empty)."""


class EngineLock:
    """The held lock; ``release()`` (or the process's end) gives it up."""

    def __init__(self, path: Path, fd: int | None) -> None:
        self.path = path
        self._fd = fd

    def release(self) -> None:
        """Give the lock up. Idempotent."""
        fd, self._fd = self._fd, None
        if fd is not None:
            # Emptied first: a holder-less file must not name this process afterwards.
            with contextlib.suppress(OSError):
                os.ftruncate(fd, 0)
            os.close(fd)  # closing releases the flock


def holder_role(holder: str) -> str:
    """The role in a lock file's text (``"12345 tui"`` -> ``"tui"``), or ``""``."""
    return holder.partition(" ")[2].strip()


def request_handover(data_dir: Path) -> Path:
    """Ask the embedded TUI holding ``data_dir``'s lock to hand over to this process
    (the file is written 0600 with this pid). Answers the request file's path. Raises
    OSError when it cannot be written."""
    path = data_dir / HANDOVER_NAME
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, f"{os.getpid()}\n".encode())
    finally:
        os.close(fd)
    return path


def handover_request(data_dir: Path) -> int | None:
    """The pid of a live process asking for ``data_dir``'s engine, else None."""
    try:
        text = (data_dir / HANDOVER_NAME).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
    pid = text.strip()
    if not pid.isdigit():
        return None
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return None  # it was killed while waiting
    except PermissionError:
        pass  # alive, another user's: still a request
    return int(pid)


def withdraw_handover(data_dir: Path, pid: int | None = None) -> None:
    """Remove the hand-over request (only if ``pid`` made it, when given). Idempotent."""
    path = data_dir / HANDOVER_NAME
    if pid is not None and handover_request(data_dir) not in (pid, None):
        return  # another process asks now: its request stays
    with contextlib.suppress(FileNotFoundError):
        path.unlink()


def holder_text(holder: str) -> str:
    """``"12345 tui"`` as "a lai TUI with its own engine (pid 12345)"."""
    pid, _, role = holder.partition(" ")
    what = _WHAT.get(role.strip(), "another lai process")
    return f"{what} (pid {pid})" if pid.isdigit() else what


def acquire(data_dir: Path, role: Role, *, hint: str = "") -> EngineLock:
    """Take ``data_dir/engine.lock`` for this process (creating data_dir 0700 and the file
    0600 when missing). Raises EngineLocked (its message ends with ``hint``) when another
    process holds it, and OSError when the data dir cannot be written."""
    path = data_dir / LOCK_NAME
    data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    if fcntl is None:  # pragma: no cover
        return EngineLock(path, None)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        try:
            holder = os.pread(fd, 200, 0).decode("utf-8", "replace").strip()
        finally:
            os.close(fd)
        raise EngineLocked(
            f"{holder_text(holder)} already runs the engine for {data_dir} (two engines "
            f"would each fill the same boxes up to max_concurrent){hint}",
            holder,
        ) from None
    except BaseException:
        os.close(fd)
        raise
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()} {role}\n".encode(), 0)
    return EngineLock(path, fd)
