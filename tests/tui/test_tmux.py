"""`lai` in a real terminal (tmux), driven by keystrokes as a person would."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fakes.upstream import FakeUpstream
from tests.tools import TMUX, require_tool


@pytest.fixture(autouse=True)
def _tmux() -> None:
    require_tool(*TMUX)


CONFIG = """\
[server]
database_url = "sqlite:///data/lai.db"
data_dir = "data"

[[providers]]
id = "box"
name = "Test box"
endpoint = "{url}"
health_check_interval = 3600

[[models]]
id = "m1"
provider_id = "box"
context_window = 32768
"""


class Terminal:
    """A 120x34 tmux window running one command, on a tmux server of its own (so other
    sessions on the machine neither see it nor change its size)."""

    def __init__(self, sock: Path, command: str) -> None:
        self.tmux = ["tmux", "-S", str(sock), "-f", "/dev/null"]
        subprocess.run([*self.tmux, "new-session", "-d", "-s", "lai", "-x", "120", "-y", "34",
                        command], check=True)

    def keys(self, *keys: str) -> None:
        subprocess.run([*self.tmux, "send-keys", "-t", "lai", *keys], check=True)

    def screen(self) -> str:
        return subprocess.run([*self.tmux, "capture-pane", "-p", "-t", "lai"],
                              capture_output=True, text=True, check=True).stdout

    def wait_for(self, text: str, timeout: float = 20.0) -> str:
        deadline = time.monotonic() + timeout
        while True:
            shown = self.screen()
            if text in shown:
                return shown
            if time.monotonic() > deadline:
                raise AssertionError(f"{text!r} never appeared; the screen was:\n{shown}")
            time.sleep(0.1)

    def close(self) -> None:
        subprocess.run([*self.tmux, "kill-server"], capture_output=True)


@pytest.fixture
def terminal(tmp_path: Path, upstream: FakeUpstream) -> Iterator[Terminal]:
    config = tmp_path / "config.toml"
    config.write_text(CONFIG.format(url=upstream.url))
    command = (f"{sys.executable} -m lai.cli --config {config}; "
               f"echo EXIT=$?; sleep 30")
    term = Terminal(tmp_path / "tmux.sock", command)
    try:
        yield term
    finally:
        term.close()


def test_a_person_opens_lai_chats_and_quits(terminal: Terminal) -> None:
    shown = terminal.wait_for("Test box")
    assert "embedded" in shown and "1 Board" in shown
    terminal.wait_for("healthy")
    terminal.keys("4")
    terminal.wait_for("Auto (best available)")
    terminal.keys("hello from tmux", "Enter")
    shown = terminal.wait_for("tok0 tok1 tok2")
    terminal.wait_for("box · m1 · 3 tokens")
    terminal.keys("Escape")  # leave the message box, so 2 switches panes
    time.sleep(0.5)  # a lone escape, not the start of an escape sequence
    terminal.keys("2")
    shown = terminal.wait_for("Last activity")
    row = next(line for line in shown.splitlines() if "hello from tmux" in line)
    assert " tui " in row  # the chat, saved with source tui
    terminal.keys("C-q")
    shown = terminal.wait_for("EXIT=")
    assert "EXIT=0" in shown and "Traceback" not in shown


STORY_CONFIG = """\
# The lab's router.
[server]
database_url = "sqlite:///data/lai.db"
data_dir = "data"

[[providers]]
id = "box"
name = "Test box"
endpoint = "{url}"
health_check_interval = 3600

[[providers]]
id = "attic"
name = "Attic PC"
endpoint = "http://127.0.0.1:{dead}"
enabled = true   # the operator's own note
priority = 2
health_check_interval = 3600

[[models]]
id = "m1"
provider_id = "box"
context_window = 32768

[[models]]
id = "m2"
provider_id = "attic"
context_window = 32768
"""


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_an_operator_story(tmp_path: Path, upstream: FakeUpstream) -> None:
    """Look at usage, find the failing provider, disable it for good, rotate a key and
    copy the new one to the clipboard."""
    from lai.store import keys as keyrepo
    from lai.store.db import open_store
    from tests.store.stats_rows import insert, known_rows

    config = tmp_path / "config.toml"
    config.write_text(STORY_CONFIG.format(url=upstream.url, dead=free_port()))
    (tmp_path / "data").mkdir()
    store = open_store(f"sqlite:///{tmp_path / 'data' / 'lai.db'}")
    try:
        store.upgrade()
        from datetime import UTC, datetime

        insert(store, known_rows(datetime.now(UTC)))
        keyrepo.create_key(store, "laptop")
    finally:
        store.dispose()
    command = (f"{sys.executable} -m lai.cli --config {config}; "
               f"echo EXIT=$?; sleep 30")
    term = Terminal(tmp_path / "tmux.sock", command)
    try:
        # OSC 52 from the app becomes a tmux paste buffer, which the test can read.
        subprocess.run([*term.tmux, "set-option", "-g", "set-clipboard", "on"], check=True)
        term.wait_for("Attic PC")
        term.keys("5")  # usage
        shown = term.wait_for("requests ·")
        assert "Usage · last 7 days" in shown
        term.keys("g")  # by model
        term.wait_for("by model")

        term.keys("1")  # the board: check the attic box, which nothing answers
        term.wait_for("Providers · sorted by")
        term.keys("Down")
        term.keys("c")
        # The check's notification names the box and why it failed.
        shown = term.wait_for("Attic PC: ")
        assert "refused" in shown or "failed" in shown
        term.keys("e")  # disable, and save it in the config
        term.wait_for("Disable and save (s)")
        term.keys("s")
        term.wait_for("Saved in")
        text = config.read_text()
        assert "enabled = false   # the operator's own note" in text
        assert text.replace("enabled = false", "enabled = true") == STORY_CONFIG.format(
            url=upstream.url, dead=text.split("127.0.0.1:")[2].split('"')[0])

        term.keys("3")  # keys: rotate laptop, copy the new key
        term.wait_for("laptop")
        term.keys("r")
        term.wait_for("How long should the old key keep working?")
        term.keys("Enter")
        term.wait_for("Rotate (y)")
        term.keys("y")
        shown = term.wait_for("Copy to my clipboard (c)")
        (secret,) = [w for line in shown.splitlines() for w in line.split()
                     if w.startswith("lai_") and len(w) == 36]
        term.keys("c")
        term.wait_for("Sent to your terminal's clipboard")
        buffer = subprocess.run([*term.tmux, "show-buffer"], capture_output=True, text=True)
        assert buffer.stdout == secret
        term.keys("Enter")
        term.wait_for("grace ends in")
        term.keys("C-q")
        shown = term.wait_for("EXIT=")
        assert "EXIT=0" in shown and "Traceback" not in shown
    finally:
        term.close()
