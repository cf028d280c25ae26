"""Reloading the config of a running process: SIGHUP, ``lai config reload`` (over the
admin socket) and, with ``server.watch_config``, a change of the file itself.

The file is read and validated off the event loop; one that does not validate is refused
with the same one-line error ``lai config check`` prints, and the old config keeps
serving. Settings that cannot change while serving keep their old value until restart,
with a warning naming them. See docs/operations.md ("Reloading the config").
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lai.config.loader import load_settings
from lai.config.models import Settings
from lai.engine.events import ConfigReloaded
from lai.errors import ConfigError

if TYPE_CHECKING:
    from lai.runtime import Runtime

log = logging.getLogger("lai.reload")

RESTART_ONLY = ("host", "port", "database_url", "data_dir", "shutdown_timeout",
                "watch_config")
"""``[server]`` keys a running process keeps until it restarts: the sockets are bound,
the database is open, the data dir holds the socket and the lock, the shutdown and the
file watcher are set up."""
WATCH_INTERVAL = 2.0
"""Seconds between looks at the config file when ``server.watch_config`` is on."""


@dataclass(frozen=True, slots=True)
class ReloadResult:
    """What a reload did: applied with ``changes``, or refused with ``error``."""

    ok: bool
    changes: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "changes": list(self.changes), "warnings": list(self.warnings),
                "error": self.error}


@dataclass
class Reloader:
    """Reloads one runtime's config; one reload at a time."""

    runtime: Runtime
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    _watch: asyncio.Task[None] | None = None
    _pending: set[asyncio.Task[ReloadResult]] = field(default_factory=set)

    @property
    def path(self) -> Path | None:
        return self.runtime.settings.source

    async def reload(self) -> ReloadResult:
        """Read the file again and apply it. Never raises for a bad file (the result
        says why); the old config keeps serving then."""
        async with self._lock:
            result = await self._reload()
        rt = self.runtime
        rt.engine.events.emit(ConfigReloaded(result.ok, result.changes, result.warnings,
                                             result.error, rt.clock.time()))
        return result

    async def _reload(self) -> ReloadResult:
        path = self.path
        if path is None:
            return ReloadResult(False, error="this process was not started from a config "
                                             "file, so there is nothing to reload")
        try:
            new, warnings = await asyncio.to_thread(load_settings, path)
        except ConfigError as exc:
            log.error("config reload refused, the old config keeps serving: %s", exc)
            return ReloadResult(False, error=str(exc))
        old = self.runtime.settings
        kept = restart_only_fields(old, new)
        if kept:
            new = new.model_copy(update={"server": new.server.model_copy(
                update={k: getattr(old.server, k) for k in kept})})
            warnings.append(f"{path}: server: {', '.join(kept)} cannot change while lai runs; "
                            f"the old value stays until restart")
        for warning in warnings:
            log.warning("%s", warning)
        changes = await self.runtime.apply_settings(new)
        log.info("config reloaded from %s: %s", path,
                 "; ".join(changes) if changes else "no changes")
        return ReloadResult(True, tuple(changes), tuple(warnings))

    def reload_soon(self) -> None:
        """Start a reload from a signal handler (the task is kept until it ends)."""
        task = asyncio.get_running_loop().create_task(self.reload())
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    # -- the file watcher

    def start_watching(self) -> None:
        """With ``server.watch_config``, reload whenever the file's contents change."""
        if self.runtime.settings.server.watch_config and self.path is not None:
            # The file as it is now, not when the task first runs: a change made in
            # between must count as a change.
            first = _fingerprint(self.path)
            self._watch = asyncio.get_running_loop().create_task(
                self._watch_file(self.path, first), name="config-watch")

    async def _watch_file(self, path: Path, last: tuple[int, int, bytes] | None) -> None:
        while True:
            await asyncio.sleep(WATCH_INTERVAL)
            now = await asyncio.to_thread(_fingerprint, path)
            if now != last:
                last = now
                log.info("%s changed: reloading", path)
                await self.reload()

    async def close(self) -> None:
        if self._watch is not None:
            self._watch.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watch
            self._watch = None
        for task in list(self._pending):
            task.cancel()


def _fingerprint(path: Path) -> tuple[int, int, bytes] | None:
    """The file's mtime, size and contents (an editor may keep both mtime and size)."""
    try:
        stat = path.stat()
        return stat.st_mtime_ns, stat.st_size, path.read_bytes()
    except OSError:
        return None


def restart_only_fields(old: Settings, new: Settings) -> list[str]:
    """The RESTART_ONLY keys whose value differs between ``old`` and ``new``."""
    return [k for k in RESTART_ONLY if getattr(old.server, k) != getattr(new.server, k)]
