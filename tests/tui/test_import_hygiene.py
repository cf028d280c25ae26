"""The UI draws its first frame before the heavy libraries load, and its screens and
widgets never reach for HTTP, SQL or the web framework themselves."""

from __future__ import annotations

import subprocess
import sys

HEAVY = ("httpx", "sqlmodel", "sqlalchemy", "quart", "alembic", "PIL")


def test_the_app_and_its_command_import_nothing_heavy() -> None:
    code = (
        "import sys, lai.commands.tui, lai.tui.app\n"
        f"print(','.join(m for m in {HEAVY!r} if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == ""
