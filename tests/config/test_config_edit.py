"""lai.config.edit: in-place edits keep the user's comments and layout."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from lai.config.edit import set_provider_enabled, set_provider_field
from lai.config.loader import load_settings
from lai.errors import ConfigError

TEXT = """\
# My lai setup: do not lose this comment.
[server]
port = 8012  # the usual port

# The GPU box under my desk.
[[providers]]
id = "gpu-box"
endpoint = "http://127.0.0.1:8000"
enabled = true   # flipped by gaming mode

[[providers]]
id = "cloud"
type = "openai"
endpoint = "https://api.example.com/v1"
auth_type = "bearer"
auth_secret = "env:CLOUD_KEY"

[[models]]
id = "m1"
provider_id = "gpu-box"

[[models]]
id = "m2"
provider_id = "cloud"
"""

ENV = {"CLOUD_KEY": "sk-test"}


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(TEXT, encoding="utf-8")
    return path


def test_set_enabled_changes_only_that_line(config: Path) -> None:
    set_provider_enabled(config, "gpu-box", False)
    after = config.read_text(encoding="utf-8")
    assert "# My lai setup: do not lose this comment." in after
    assert "# The GPU box under my desk." in after
    assert "enabled = false   # flipped by gaming mode" in after
    changed = [
        (old, new)
        for old, new in zip(TEXT.splitlines(), after.splitlines(), strict=True)
        if old != new
    ]
    assert changed == [
        ("enabled = true   # flipped by gaming mode", "enabled = false   # flipped by gaming mode")
    ]
    settings, _ = load_settings(config, ENV)
    assert settings.providers[0].enabled is False


def test_new_key_lands_in_the_right_provider(config: Path) -> None:
    set_provider_enabled(config, "cloud", False)
    set_provider_field(config, "gpu-box", "max_concurrent", 3)
    settings, _ = load_settings(config, ENV)
    assert settings.providers[0].max_concurrent == 3
    assert settings.providers[0].enabled is True
    assert settings.providers[1].enabled is False
    after = config.read_text(encoding="utf-8")
    assert "# My lai setup: do not lose this comment." in after
    assert 'auth_secret = "env:CLOUD_KEY"' in after  # the secret is not expanded into the file


def test_none_removes_the_key(config: Path) -> None:
    set_provider_field(config, "gpu-box", "enabled", None)
    assert "enabled" not in config.read_text(encoding="utf-8")
    settings, _ = load_settings(config, ENV)
    assert settings.providers[0].enabled is True


def test_unknown_provider_is_an_error_and_leaves_the_file(config: Path) -> None:
    with pytest.raises(ConfigError, match=r"no provider with id 'nope'"):
        set_provider_enabled(config, "nope", False)
    assert config.read_text(encoding="utf-8") == TEXT


def test_invalid_value_is_refused_and_leaves_the_file(config: Path) -> None:
    with pytest.raises(ConfigError) as info:
        set_provider_field(config, "gpu-box", "max_concurrent", 0)
    assert str(info.value) == f"{config}: providers[0].max_concurrent: must be >= 1"
    assert config.read_text(encoding="utf-8") == TEXT


def test_file_mode_survives_and_no_temp_file_is_left(config: Path) -> None:
    config.chmod(0o600)
    set_provider_enabled(config, "gpu-box", False)
    assert stat.S_IMODE(config.stat().st_mode) == 0o600
    assert sorted(p.name for p in config.parent.iterdir()) == ["config.toml"]


def test_symlinked_config_stays_a_symlink(tmp_path: Path, config: Path) -> None:
    link = tmp_path / "link.toml"
    os.symlink(config, link)
    set_provider_enabled(link, "gpu-box", False)
    assert link.is_symlink()
    assert "enabled = false" in config.read_text(encoding="utf-8")
