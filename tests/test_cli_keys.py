"""`lai keys ...` as a user runs it: the console script in a subprocess, a temp config."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
import pytest

from lai.store.db import open_store
from lai.store.keylookup import verify_key
from lai.store.keys import create_key, list_keys

LAI = shutil.which("lai")
pytestmark = pytest.mark.skipif(LAI is None, reason="run `pip install -e . --no-deps` first")
KEY_LINE = re.compile(r"^lai_[0-9a-f]{32}\n$")


@pytest.fixture
def config(tmp_path: Path) -> Path:
    """A config whose database does not exist yet (relative to the config's folder)."""
    path = tmp_path / "conf" / "config.toml"
    path.parent.mkdir()
    path.write_text(
        '[server]\ndatabase_url = "sqlite:///data/lai.db"\n'
        '[[providers]]\nid = "box"\nendpoint = "http://127.0.0.1:9"\n'
        '[[models]]\nid = "small"\nprovider_id = "box"\n'
    )
    return path


def lai(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LAI_", "PROVIDER_"))}
    assert LAI is not None
    return subprocess.run([LAI, "keys", *args, "--config", str(config)], capture_output=True,
                          text=True, env=env, cwd=config.parent, timeout=60)


def db(config: Path):  # type: ignore[no-untyped-def]
    return open_store(f"sqlite:///{config.parent / 'data' / 'lai.db'}")


def test_create_on_a_fresh_machine_prints_the_key_once(config: Path) -> None:
    r = lai(config, "create", "agent-ci", "--expires", "30d", "--scope", "admin",
            "--models", "small,other")
    assert r.returncode == 0, r.stderr
    assert KEY_LINE.match(r.stdout), r.stdout  # the key, alone on its own line
    raw = r.stdout.strip()
    assert "will not be shown again" in r.stderr
    assert raw not in r.stderr and raw[:8] in r.stderr
    assert "not in the config (yet): other" in r.stderr
    store = db(config)
    try:
        info = verify_key(store, raw)
        assert (info.name, info.priority, set(info.scopes)) == ("agent-ci", 0, {"admin"})
        assert info.models == ("small", "other")
        assert info.expires_at is not None
        assert abs(info.expires_at - datetime.now(UTC) - timedelta(days=30)) < timedelta(minutes=5)
        assert raw.encode() not in (config.parent / "data" / "lai.db").read_bytes()
    finally:
        store.dispose()


def test_list_shows_an_aligned_table_with_rotation_and_json(config: Path) -> None:
    first = lai(config, "create", "laptop").stdout.strip()
    assert lai(config, "create", "agent-ci", "--priority", "1").returncode == 0
    r = lai(config, "rotate", "laptop", "--grace", "2h")
    assert r.returncode == 0, r.stderr
    second = r.stdout.strip()
    assert KEY_LINE.match(r.stdout) and second != first
    assert f"{second[:8]} replaces {first[:8]}" in r.stderr

    r = lai(config, "list")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    header = lines[0]
    for column in ("PREFIX", "NAME", "SCOPES", "PRIORITY", "CREATED", "LAST USED",
                   "EXPIRES", "STATUS", "REPLACED BY"):
        assert column in header
    status_at = header.index("STATUS")
    by_prefix = {line[:8]: line for line in lines[1:]}
    assert set(by_prefix) >= {first[:8], second[:8]} and len(lines) == 4
    assert by_prefix[first[:8]][status_at:].startswith("grace until ")
    replaced_at = header.index("REPLACED BY")
    assert by_prefix[first[:8]][replaced_at:].startswith(second[:8])  # replaced by
    assert by_prefix[second[:8]][status_at:].startswith("active")
    assert all(raw not in r.stdout for raw in (first[8:], second[8:]))

    data = orjson.loads(lai(config, "list", "--json").stdout)
    rows = {d["prefix"]: d for d in data}
    assert rows[first[:8]]["status"] == "grace"
    assert rows[first[:8]]["replaced_by"] == second[:8]
    assert rows[second[:8]]["rotated_from"] == first[:8]
    assert {d["name"]: d["priority"] for d in data} == {"laptop": 1, "agent-ci": 1}


def test_revoke_enable_delete_by_name_or_prefix(config: Path) -> None:
    raw = lai(config, "create", "laptop").stdout.strip()
    lai(config, "create", "desk")
    r = lai(config, "revoke", raw[:8])
    assert r.returncode == 0 and r.stdout == f"revoked {raw[:8]} (laptop)\n"
    r = lai(config, "enable", "laptop")
    assert r.returncode == 0 and r.stdout == f"enabled {raw[:8]} (laptop)\n"
    r = lai(config, "delete", "laptop")
    assert r.returncode == 0 and r.stdout == f"deleted {raw[:8]} (laptop)\n"
    store = db(config)
    try:
        assert [k.name for k in list_keys(store)] == ["desk"]
    finally:
        store.dispose()


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (("revoke", "nobody"), 1, "no key has the name or prefix 'nobody'"),
        (("revoke", "lai_"), 1, "'lai_' matches 2 keys: "),
        (("create", "x", "--expires", "tomorrow"), 2, "invalid duration 'tomorrow'"),
        (("rotate", "one", "--grace", "1.5h"), 2, "invalid duration '1.5h'"),
        (("create", "two words"), 2, "invalid key name"),
        (("create", "one"), 1, "a key named 'one' exists already"),
        (("create", "x", "--scope", "root"), 2, "unknown scope 'root'"),
    ],
)
def test_errors_are_one_line_with_the_right_exit_code(
    config: Path, args: tuple[str, ...], code: int, message: str
) -> None:
    store = db(config)
    try:
        store.upgrade()
        create_key(store, "one")
        create_key(store, "two")
    finally:
        store.dispose()
    r = lai(config, *args)
    assert r.returncode == code, r.stderr
    assert r.stdout == ""
    assert r.stderr.count("\n") == 1 and message in r.stderr, r.stderr
    assert "Traceback" not in r.stderr


def test_limits_are_set_at_creation_changed_by_update_and_listed(config: Path) -> None:
    r = lai(config, "create", "batch", "--max-concurrent", "2", "--max-queued", "5",
            "--rpm", "60", "--budget", "5.00/day")
    assert r.returncode == 0, r.stderr
    assert "max 2 in flight, 5 queued, 60 rpm, $5.00/day" in r.stderr
    r = lai(config, "update", "batch", "--rpm", "none", "--tpm", "100000",
            "--budget", "50/month")
    assert r.returncode == 0, r.stderr
    assert "max 2 in flight, 5 queued, 100000 tpm, $5.00/day, $50.00/month" in r.stdout
    listed = orjson.loads(lai(config, "list", "--json").stdout)
    assert listed[0]["limits"] == {"max_concurrent": 2, "max_queued": 5, "rpm": None,
                                   "tpm": 100000, "budgets": {"day": 5.0, "month": 50.0}}
    r = lai(config, "update", "batch", "--budget", "none")
    assert r.returncode == 0, r.stderr
    assert orjson.loads(lai(config, "list", "--json").stdout)[0]["limits"]["budgets"] == {}
    for bad in (["--rpm", "0"], ["--budget", "5/year"], ["--budget=-1/day"],
                ["--max-concurrent", "two"], []):
        r = lai(config, "update", "batch", *bad)
        assert r.returncode == 2, (bad, r.stderr)
        assert r.stderr.startswith("lai: ") and "Traceback" not in r.stderr


def test_local_only_and_spill_after_on_create_and_update(config: Path) -> None:
    r = lai(config, "create", "home", "--local-only", "--spill-after", "5s")
    assert r.returncode == 0, r.stderr
    # local-only is a scope: said once, among the scopes, not again after the limits.
    assert r.stderr.count("local-only") == 1, r.stderr
    assert "scopes: local-only, " in r.stderr
    assert "limits: none, spill after 5s, " in r.stderr
    store = db(config)
    try:
        info = verify_key(store, r.stdout.strip())
        assert info.has_scope("local-only") and info.spill_after == 5.0
    finally:
        store.dispose()
    listed = lai(config, "list")
    assert "local-only" in listed.stdout and "spill after 5s" in listed.stdout
    r = lai(config, "update", "home", "--no-local-only", "--spill-after", "none")
    assert r.returncode == 0, r.stderr
    store = db(config)
    try:
        (record,) = list_keys(store)
        assert record.scopes == () and record.spill_after is None
    finally:
        store.dispose()
    r = lai(config, "update", "home", "--spill-after", "1.5h")
    assert r.returncode == 2 and "invalid duration" in r.stderr
