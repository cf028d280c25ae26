"""`lai config check` and `lai config init`, run as a real subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

import lai

PACKAGED = Path(lai.__file__).parent / "config" / "example.toml"


@dataclass
class Cli:
    """Runs ``python -m lai.cli ARGS`` in ``work`` with ``env``."""

    work: Path
    env: dict[str, str]

    def __call__(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "lai.cli", *args],
            cwd=self.work,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=60,
        )


@pytest.fixture
def run(tmp_path: Path) -> Cli:
    """A CLI runner in an empty working directory, with an empty home and no $LAI_CONFIG."""
    work = tmp_path / "work"
    work.mkdir()
    home = tmp_path / "home"
    home.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "LAI_CONFIG"}
    env["HOME"] = str(home)
    # Import the checkout under test whether or not it is pip-installed.
    env["PYTHONPATH"] = os.pathsep.join(
        filter(None, [str(Path(lai.__file__).parent.parent), env.get("PYTHONPATH")])
    )
    return Cli(work, env)


def test_init_then_check(run: Cli) -> None:
    init = run("config", "init")
    assert init.returncode == 0, init.stderr
    assert (run.work / "config.toml").read_bytes() == PACKAGED.read_bytes()
    check = run("config", "check")
    assert check.returncode == 0, check.stderr
    assert check.stdout == "ok: config.toml: 1 provider, 2 models\n"
    assert check.stderr == ""


def test_init_refuses_to_overwrite_without_force(run: Cli) -> None:
    target = run.work / "config.toml"
    target.write_text("# mine\n")
    again = run("config", "init")
    assert again.returncode == 2
    assert again.stderr == "lai: config.toml: already exists; use --force to overwrite it\n"
    assert target.read_text() == "# mine\n"
    forced = run("config", "init", "--force")
    assert forced.returncode == 0, forced.stderr
    assert target.read_bytes() == PACKAGED.read_bytes()


def test_init_and_check_honour_config_before_or_after_the_command(run: Cli) -> None:
    init = run("config", "init", "--config", "sub/dir/lai.toml")
    assert init.returncode == 0, init.stderr
    check = run("--config", "sub/dir/lai.toml", "config", "check")
    assert check.returncode == 0, check.stderr
    assert check.stdout.startswith("ok: sub/dir/lai.toml: ")


def test_check_reports_an_invalid_file_on_one_line_and_exits_2(run: Cli) -> None:
    text = PACKAGED.read_text().replace("max_concurrent = 1\n", "max_concurrent = 0\n", 1)
    (run.work / "config.toml").write_text(text)
    check = run("config", "check")
    assert check.returncode == 2
    assert check.stdout == ""
    assert check.stderr == "lai: config.toml: providers[0].max_concurrent: must be >= 1\n"


def test_check_prints_warnings(run: Cli) -> None:
    (run.work / "config.toml").write_text('[server]\nhost = "0.0.0.0"\nauth = false\n')
    check = run("config", "check")
    assert check.returncode == 0, check.stderr
    lines = check.stdout.splitlines()
    assert lines[0] == "ok: config.toml: 0 providers, 0 models"
    assert lines[1:] and all(line.startswith("warning: config.toml: ") for line in lines[1:])
    assert any("server.auth: false while server.host is 0.0.0.0" in line for line in lines)


def test_check_without_any_config_exits_2(run: Cli) -> None:
    check = run("config", "check")
    assert check.returncode == 2
    assert check.stderr.startswith("lai: no config file found")
    assert "lai config init" in check.stderr
    assert check.stderr.count("\n") == 1


def test_init_writes_where_lai_config_points(run: Cli) -> None:
    run.env["LAI_CONFIG"] = str(run.work / "etc" / "lai.toml")
    init = run("config", "init")
    assert init.returncode == 0, init.stderr
    assert not (run.work / "config.toml").exists()
    check = run("config", "check")
    assert check.returncode == 0, check.stderr
    assert check.stdout.startswith(f"ok: {run.work / 'etc' / 'lai.toml'}: ")
