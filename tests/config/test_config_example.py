"""The shipped example config: identical copies, loads cleanly, documents every key."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from pydantic import BaseModel

import lai
from lai.config.loader import load_settings
from lai.config.models import Capabilities, ModelConfig, ProviderConfig, ServerSettings

PACKAGED = Path(lai.__file__).parent / "config" / "example.toml"
AT_ROOT = Path(lai.__file__).parent.parent / "config.toml.example"


def test_root_copy_is_byte_identical() -> None:
    assert AT_ROOT.read_bytes() == PACKAGED.read_bytes()


def test_example_loads_without_errors_or_warnings(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "config.toml"
    path.write_bytes(PACKAGED.read_bytes())
    monkeypatch.chdir(tmp_path)
    settings, warnings = load_settings(Path("config.toml"), {})
    assert warnings == []
    assert [p.endpoint for p in settings.providers] == ["http://127.0.0.1:8000"]
    assert settings.providers[0].max_concurrent == 1
    assert len(settings.models) == 2
    assert settings.server.data_dir == tmp_path / "data"
    assert settings.server.database_url == f"sqlite:///{tmp_path / 'data' / 'lai.db'}"


@pytest.mark.parametrize("model", [ServerSettings, ProviderConfig, ModelConfig, Capabilities])
def test_example_mentions_every_key(model: type[BaseModel]) -> None:
    text = PACKAGED.read_text(encoding="utf-8")
    for key in model.model_fields:
        # As an assignment, live or commented out, or inside an inline table.
        pattern = rf"(?m)(^(# )?|[{{,] ){key} = "
        assert re.search(pattern, text), f"{model.__name__}.{key} is not in the example"


def test_commented_out_providers_and_models_are_valid(tmp_path: Path) -> None:
    # Uncomment every block that starts with "# [[...]]", up to the next blank line.
    out: list[str] = []
    in_block = False
    for line in PACKAGED.read_text(encoding="utf-8").splitlines():
        if line.startswith("# [["):
            in_block = True
        elif not line.strip():
            in_block = False
        out.append(line[2:] if in_block else line)
    path = tmp_path / "config.toml"
    path.write_text("\n".join(out) + "\n", encoding="utf-8")
    settings, warnings = load_settings(path, {"OPENAI_API_KEY": "sk-test"})
    assert [p.id for p in settings.providers] == ["gpu-box", "workstation", "openai"]
    assert settings.providers[2].auth_secret == "sk-test"
    assert [m.id for m in settings.models][-1] == "gpt-4o-mini"
    # The second box has no model in the example: the only expected warning.
    assert warnings == [f"{path}: providers[1].id: no [[models]] entry uses provider 'workstation'"]
