"""The built wheel on its own: installed into a fresh virtual environment outside the
checkout, every command works (migrations included), as they will in the container image.

The wheel is built from a copy of the source (so parallel runs never share a ``build/``
folder) without build isolation, and installed with ``--no-deps --no-index`` into a venv
made with ``--system-site-packages``: the dependencies come from this machine, nothing
comes from the network. The commands run with no PYTHONPATH, from a folder outside the
checkout, so only the installed copy of lai can answer.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import urllib.request
import zipfile
from pathlib import Path

import pytest

import lai
from tests.deploy_files import image_command, image_healthcheck

ROOT = Path(__file__).resolve().parent.parent
SOURCES = ("pyproject.toml", "README.md", "lai", "alembic")
KEY_LINE = re.compile(r"^lai_[0-9a-f]{32}$")
LISTENING = re.compile(r"lai proxy listening on http://([^:]+):(\d+)")


def build_wheel(into: Path) -> Path:
    """Build lai's wheel from a copy of the source tree; returns the .whl path."""
    import setuptools

    have = tuple(int(p) for p in setuptools.__version__.split(".")[:2])
    assert have >= (70, 1), (
        f"setuptools {setuptools.__version__} cannot build the wheel without the `wheel` "
        "package; `pip install -e '.[test]'` brings setuptools>=70.1")
    src = into / "src"
    for name in SOURCES:
        if (ROOT / name).is_dir():
            shutil.copytree(ROOT / name, src / name,
                            ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            src.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, src / name)
    dist = into / "dist"
    done = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
         "--no-index", "--quiet", "--wheel-dir", str(dist), str(src)],
        capture_output=True, text=True, timeout=120, env=clean_env(),
    )
    assert done.returncode == 0, done.stdout + done.stderr
    (wheel,) = dist.glob("lai-*.whl")
    return wheel


def clean_env(**extra: str) -> dict[str, str]:
    """This environment without anything that points at the checkout or a config, and
    without HTTP proxies (every request here goes to 127.0.0.1)."""
    env = {k: v for k, v in os.environ.items()
           if k != "PYTHONPATH" and not k.startswith(("LAI_", "PROVIDER_"))
           and k.lower() not in ("http_proxy", "https_proxy", "all_proxy")}
    env.update(extra)
    return env


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_wheel(tmp_path_factory.mktemp("wheel"))


def test_the_wheel_ships_every_module_and_the_migrations(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    source = {p.relative_to(ROOT).as_posix() for p in (ROOT / "lai").rglob("*")
              if p.is_file() and "__pycache__" not in p.parts}
    missing = sorted(source - names)
    assert not missing, f"not in the wheel (add the package to pyproject.toml): {missing}"
    migrations = {p.relative_to(ROOT / "alembic").as_posix() for p in (ROOT / "alembic").rglob("*")
                  if p.is_file() and "__pycache__" not in p.parts}
    assert migrations and {f"lai/_migrations/{m}" for m in migrations} <= names
    # The library's own `alembic` package must never be shadowed by our folder.
    assert not any(n.startswith("alembic/") for n in names)
    assert wheel.name.startswith(f"lai-{lai.__version__}-")


def test_every_command_works_from_the_installed_wheel(wheel: Path, tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    # --without-pip: the machine's pip, seen through --system-site-packages, installs into
    # the venv (its sys.prefix) in a second instead of ensurepip's ten.
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", "--without-pip",
                    str(venv)], check=True, timeout=60)
    python, lai_bin = venv / "bin" / "python", venv / "bin" / "lai"
    done = subprocess.run([str(python), "-m", "pip", "install", "--no-deps", "--no-index",
                           "--quiet", str(wheel)], capture_output=True, text=True, timeout=120,
                          env=clean_env())
    assert done.returncode == 0, done.stdout + done.stderr

    home = tmp_path / "home"
    home.mkdir()
    # The example config's box is sent to the discard port: nothing answers there.
    env = clean_env(HOME=str(home), PROVIDER_GPU_BOX_ENDPOINT="http://127.0.0.1:9")
    config = home / "etc" / "config.toml"

    def run(*args: str, ok: bool = True) -> subprocess.CompletedProcess[str]:
        r = subprocess.run([str(lai_bin), *args], capture_output=True, text=True, env=env,
                           cwd=home, timeout=60)
        if ok:
            assert r.returncode == 0, f"lai {' '.join(args)}: {r.stdout}{r.stderr}"
        return r

    where = subprocess.run(
        [str(python), "-c", "import importlib.metadata as m, lai; print(lai.__file__); "
         "print(m.version('lai'))"], capture_output=True, text=True, env=env, cwd=home,
        check=True)
    installed_at, metadata_version = where.stdout.split()
    assert Path(installed_at).is_relative_to(venv), where.stdout
    # pyproject.toml's version is dynamic, read from lai.__version__: one source.
    assert metadata_version == lai.__version__

    assert run("--version").stdout.strip() == f"lai {lai.__version__}"
    run("config", "init", "--config", str(config))
    run("db", "upgrade", "--config", str(config))
    key = run("keys", "create", "wheel-test", "--config", str(config)).stdout.strip()
    assert KEY_LINE.match(key), key
    assert "api_keys" in run("db", "size", "--config", str(config)).stdout
    run("db", "backup", str(home / "backup.db"), "--config", str(config))
    assert (home / "backup.db").stat().st_size > 0
    imported = home / "imported.toml"
    run("config", "import", str(ROOT / "deploy" / "examples" / "providers.yaml"),
        "--output", str(imported))
    assert 'id = "gaming-pc-3090"' in imported.read_text()

    # What the container image runs (tests/test_deploy.py holds the Dockerfile to these).
    command = image_command()
    assert command[:2] == ["lai", "proxy"]
    argv = [str(lai_bin), *command[1:], "--config", str(config), "--port", "0"]
    argv[argv.index("--host") + 1] = "127.0.0.1"  # the image listens on 0.0.0.0
    log = (tmp_path / "proxy.log").open("w+")  # a file: a pipe nobody reads could fill up
    proxy = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=log, text=True, env=env,
                             cwd=home)
    local = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        assert proxy.stdout is not None
        line = proxy.stdout.readline()
        found = LISTENING.search(line)
        assert found, line + (tmp_path / "proxy.log").read_text()
        port = int(found.group(2))
        with local.open(f"http://127.0.0.1:{port}/health", timeout=10) as r:
            health = json.load(r)
        assert r.status == 200 and set(health["providers"]) == {"gpu-box"}
        request = urllib.request.Request(f"http://127.0.0.1:{port}/v1/models",
                                         headers={"Authorization": f"Bearer {key}"})
        with local.open(request, timeout=10) as r:
            assert "qwen2.5-14b" in {m["id"] for m in json.load(r)["data"]}
        probe = [str(python) if c == "python" else c.replace("8012", str(port))
                 for c in image_healthcheck()]
        assert subprocess.run(probe, env=env, timeout=30).returncode == 0
    finally:
        proxy.send_signal(signal.SIGTERM)
        try:
            proxy.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proxy.kill()
            proxy.wait()
        log.close()
    assert proxy.returncode == 0, (tmp_path / "proxy.log").read_text()


def test_the_wheel_requires_every_package_lai_imports(wheel: Path) -> None:
    """The venv above borrows this machine's packages, so it cannot notice a dependency
    missing from pyproject.toml; this does: every third-party module lai imports comes
    from a distribution the wheel's metadata requires."""
    import ast
    from importlib.metadata import packages_distributions, requires

    from packaging.requirements import Requirement

    with zipfile.ZipFile(wheel) as z:
        meta = next(n for n in z.namelist() if n.endswith(".dist-info/METADATA"))
        lines = z.read(meta).decode().splitlines()
    required = {Requirement(line.split(":", 1)[1]).name.lower().replace("_", "-")
                for line in lines if line.startswith("Requires-Dist:")
                and "extra ==" not in line}
    imported: set[str] = set()
    for path in (ROOT / "lai").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                imported |= {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                imported.add(node.module.split(".")[0])
    def norm(name: str) -> str:
        return name.lower().replace("_", "-")

    # What each required distribution brings along (sqlmodel brings SQLAlchemy, quart
    # Werkzeug): a module from one of those is there whenever lai is installed.
    brought = {norm(Requirement(r).name) for d in required for r in (requires(d) or [])
               if "extra ==" not in r}
    dists = packages_distributions()
    third_party = {m for m in imported - set(sys.stdlib_module_names) if m != "lai"}
    missing = {m: dists.get(m) for m in third_party
               if not {norm(d) for d in dists.get(m, [])} & (required | brought)}
    assert not missing, f"imported by lai but not in [project] dependencies: {missing}"
