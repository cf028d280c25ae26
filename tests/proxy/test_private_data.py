"""Private by default: under umask 022 the data dir is 0700 and everything lai writes in
it (database, WAL, SHM, spill file, images and their folders, tui.log, admin socket) is
0600/0700; a looser data dir left by an older version is tightened at start, with a
warning."""

from __future__ import annotations

import logging
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from lai.commands.tui import setup_logging
from tests.harness import model, provider
from tests.store.image_files import image_bytes


@pytest.fixture
def umask_022() -> Iterator[None]:
    old = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old)


def _modes(root: Path) -> dict[str, int]:
    out = {".": stat.S_IMODE(root.stat().st_mode)}
    for folder, dirs, files in os.walk(root):
        for name in (*dirs, *files):
            path = Path(folder) / name
            out[str(path.relative_to(root))] = stat.S_IMODE(path.lstat().st_mode)
    return out


def _loose(modes: dict[str, int]) -> dict[str, str]:
    return {path: f"{mode:04o}" for path, mode in modes.items() if mode & 0o077}


async def test_a_fresh_data_dir_is_private_under_umask_022(
    proxy_factory, upstream, tmp_path, umask_022  # type: ignore[no-untyped-def]
) -> None:
    data = tmp_path / "data"
    proxy = await proxy_factory([provider("box", upstream.url)], [model("small", "box")],
                                database_url=f"sqlite:///{data / 'lai.db'}", admin_socket=True)
    r = await proxy.http.post("/v1/chat/completions", json={
        "model": "small", "messages": [{"role": "user", "content": "a secret"}]})
    assert r.status_code == 200
    r = await proxy.http.post("/v1/images/upload",
                              params={"conversation_id": "c1", "message_id": "m1"},
                              files={"file": ("cat.png", image_bytes("PNG"), "image/png")})
    assert r.status_code == 200, r.text
    await proxy.runtime.recorder.flush()
    modes = _modes(data)
    assert {"lai.db", "lai.db-wal", "lai.db-shm", "lai.sock",
            "images/c1/m1/001_cat.png"} <= set(modes)
    assert _loose(modes) == {}

    recorder = proxy.runtime.recorder
    await proxy.stop()
    # A record arriving after close goes to the spill file: private too.
    recorder.submit({"request_id": "late", "conversation_id": None})
    root = logging.getLogger()
    before = list(root.handlers)
    root.handlers.clear()  # so basicConfig opens tui.log
    try:
        setup_logging(proxy.settings)
    finally:
        for handler in root.handlers:
            handler.close()
        root.handlers[:] = before
    modes = _modes(data)
    assert {"recorder-spill.jsonl", "tui.log"} <= set(modes)
    assert _loose(modes) == {}


async def test_a_loose_data_dir_is_tightened_at_start_with_a_warning(
    proxy_factory, upstream, tmp_path, umask_022, caplog  # type: ignore[no-untyped-def]
) -> None:
    data = tmp_path / "data"
    # What an older lai (or a restore) left: 0755 folders and 0644 files.
    (data / "images" / "c1" / "m1").mkdir(parents=True, mode=0o755)
    for d in (data, data / "images", data / "images" / "c1", data / "images" / "c1" / "m1"):
        d.chmod(0o755)
    (data / "images" / "c1" / "m1" / "001_cat.png").write_bytes(image_bytes("PNG"))
    db = tmp_path / "elsewhere.db"  # a database outside the data dir is covered as well
    for path in (db, Path(f"{db}-wal"), Path(f"{db}-shm")):
        path.write_bytes(b"")
    db.unlink()  # SQLite makes a fresh one; its leftovers keep their loose mode
    caplog.set_level(logging.WARNING, logger="lai.store")
    await proxy_factory([provider("box", upstream.url)], [model("small", "box")],
                        database_url=f"sqlite:///{db}")
    assert _loose(_modes(data)) == {}
    for path in (db, Path(f"{db}-wal"), Path(f"{db}-shm")):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    (warning,) = [r for r in caplog.records if "tightened" in r.getMessage()]
    assert warning.levelno == logging.WARNING
    assert str(data) in warning.getMessage() and "0755" in warning.getMessage()
