"""One engine per data dir: an exclusive lock held by the process that runs the engine.

Slots, the queue and health live in the engine's process. Two engines on one config (an
embedded TUI and a proxy) would each allow a box its ``max_concurrent``, so whichever
runs an engine — ``lai proxy`` or ``lai`` in embedded mode — holds ``data_dir/engine.lock``
(``flock``, so the kernel releases it when the process ends, crash included: nothing
stale is left). The file names the holder (pid and role) for the refusal's message.
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
