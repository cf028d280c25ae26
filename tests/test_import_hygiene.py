"""The engine is importable without any framework, database or TOML library, and nothing
runs at import time."""

from __future__ import annotations

import subprocess
import sys

FORBIDDEN = ("quart", "hypercorn", "textual", "sqlmodel", "sqlalchemy", "tomlkit")


def test_engine_imports_no_framework() -> None:
    code = (
        "import sys, lai.engine.engine, lai.engine.routing, lai.engine.health, "
        "lai.engine.adapters.openai, lai.engine.adapters.anthropic\n"
        f"bad = [m for m in {FORBIDDEN!r} if m in sys.modules]\n"
        "print(','.join(bad))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "", f"lai.engine pulled in: {out.stdout.strip()}"


def test_importing_every_module_does_no_io(tmp_path) -> None:
    code = (
        "import pkgutil, importlib, lai\n"
        "for m in pkgutil.walk_packages(lai.__path__, 'lai.'):\n"
        "    importlib.import_module(m.name)\n"
    )
    subprocess.run([sys.executable, "-c", code], cwd=tmp_path, check=True,
                   env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path),
                        "PYTHONPATH": str(__import__("pathlib").Path(__file__).parent.parent)})
    assert list(tmp_path.iterdir()) == []  # no data dir, database or socket was made


def test_layer_contracts_hold() -> None:
    out = subprocess.run(["lint-imports"], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr
