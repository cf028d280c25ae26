"""`lai config import providers.yaml`: the original router's YAML becomes a config.toml
that `lai config check` accepts; every mistake is one line naming its YAML path."""

from __future__ import annotations

from pathlib import Path

import pytest

from lai.cli import main
from lai.config.loader import load_settings

ROOT = Path(__file__).resolve().parent.parent.parent
EXAMPLE = ROOT / "deploy" / "examples" / "providers.yaml"
EXPECTED = ROOT / "deploy" / "examples" / "providers.expected.toml"
SECRETS = {"WORKSTATION_TOKEN": "token-of-the-workstation", "ZAI_API_KEY": "zai-key"}

GOOD = """\
providers:
  - id: box
    endpoint: http://127.0.0.1:9
models:
  - id: small
    providerId: box
"""


def run(*args: str) -> int:
    return main([*args])


def test_the_example_converts_exactly_and_checks(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "config.toml"
    assert run("config", "import", str(EXAMPLE), "--output", str(out)) == 0
    assert out.read_text() == EXPECTED.read_text()
    assert f"wrote {out}" in capsys.readouterr().out

    for name, value in SECRETS.items():
        monkeypatch.setenv(name, value)
    assert run("config", "check", "--config", str(out)) == 0
    assert capsys.readouterr().out.startswith(f"ok: {out}: 3 providers, 4 models")
    settings, _warnings = load_settings(out)
    box, workstation, cloud = settings.providers
    assert (box.id, box.max_concurrent, box.endpoint) == (
        "gaming-pc-3090", 1, "http://192.168.86.63:8000")
    # ${WORKSTATION_TOKEN} in the YAML is read from the environment, as env:NAME.
    assert (workstation.auth_type, workstation.auth_secret) == (
        "bearer", "token-of-the-workstation")
    assert (cloud.type, cloud.priority) == ("openai", 10)
    vision = next(m for m in settings.models if m.id == "qwen2.5-vl-7b")
    assert vision.capabilities.vision and not vision.is_default
    assert next(m for m in settings.models if m.id == "glm-4.6").cost_per_1k_tokens == 0.0011
    # gpu and location have no key in lai: kept as comments on their provider.
    text = out.read_text()
    assert "# gpu: NVIDIA RTX 3090 24GB\n# location: living room\nid = \"gaming-pc-3090\"" in text


def test_without_output_it_writes_where_config_init_would(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("LAI_CONFIG", raising=False)
    assert run("config", "import", str(EXAMPLE)) == 0
    assert (tmp_path / "config.toml").read_text() == EXPECTED.read_text()
    assert run("config", "import", str(EXAMPLE), "--config", "etc/lai.toml") == 0
    assert (tmp_path / "etc" / "lai.toml").read_text() == EXPECTED.read_text()
    monkeypatch.setenv("LAI_CONFIG", str(tmp_path / "env.toml"))
    assert run("config", "import", str(EXAMPLE)) == 0
    assert (tmp_path / "env.toml").is_file()


def test_to_stdout(capsys: pytest.CaptureFixture[str]) -> None:
    assert run("config", "import", str(EXAMPLE), "--output", "-") == 0
    assert capsys.readouterr().out == EXPECTED.read_text()


def test_an_existing_output_needs_force(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src, out = tmp_path / "providers.yaml", tmp_path / "config.toml"
    src.write_text(GOOD)
    out.write_text("# mine\n")
    assert run("config", "import", str(src), "-o", str(out)) == 2
    assert "already exists; use --force" in capsys.readouterr().err
    assert out.read_text() == "# mine\n"
    assert run("config", "import", str(src), "-o", str(out), "--force") == 0
    assert 'id = "box"' in out.read_text()


@pytest.mark.parametrize(("yaml", "lines"), [
    (GOOD.replace("    endpoint:", "    maxConcurent: 2\n    endpoint:"),
     ["providers[0].maxConcurent: unknown key (did you mean maxConcurrent?)"]),
    (GOOD + "    contextWindow: big\n    capabilities: {vision: maybe, audio: true}\n",
     ["models[0].contextWindow: must be an integer, got 'big'",
      "models[0].capabilities.vision: must be true or false, got 'maybe'",
      "models[0].capabilities.audio: unknown key"]),
    (GOOD.replace("endpoint:", "maxConcurrent: 0\n    endpoint:"),
     ["providers[0].maxConcurrent: must be >= 1"]),
    (GOOD.replace("providerId: box", "providerId: gpu"),
     ["models[0].providerId: no provider with id 'gpu'"]),
    (GOOD.replace("  - id: box", "  - id: box\n    type: cloud"),
     ["providers[0].type: must be one of local, openai, anthropic"]),
    (GOOD + "routing: {}\n", ["routing: unknown key"]),
    (GOOD.replace("    endpoint:", "    id: again\n    endpoint:"),
     ["line 3: duplicate key 'id'"]),
    ("providers:\n  - id: [unclosed\n", ["line 3: expected ',' or ']', but got '<stream end>'"]),
])
def test_every_problem_is_one_line_with_its_yaml_path_and_nothing_is_written(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], yaml: str, lines: list[str]
) -> None:
    src, out = tmp_path / "providers.yaml", tmp_path / "config.toml"
    src.write_text(yaml)
    assert run("config", "import", str(src), "-o", str(out)) == 2
    err = capsys.readouterr().err.splitlines()
    assert err == [f"lai: {src}: {line}" for line in lines] + [f"lai: {src}: nothing written"]
    assert not out.exists()


def test_a_missing_file_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run("config", "import", str(tmp_path / "nope.yaml")) == 2
    missing = tmp_path / "nope.yaml"
    assert capsys.readouterr().err == f"lai: {missing}: cannot read: No such file or directory\n"


@pytest.mark.parametrize(("secret", "written"), [
    ("${BOX_TOKEN}", '"env:BOX_TOKEN"'),
    ("$BOX_TOKEN", '"env:BOX_TOKEN"'),
    ("${BOX_TOKEN", '"${BOX_TOKEN"'),  # not a reference: kept as the literal it is
    ("s3cr3t", '"s3cr3t"'),
])
def test_environment_references_become_env_secrets(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], secret: str, written: str
) -> None:
    src = tmp_path / "providers.yaml"
    src.write_text(GOOD.replace("    endpoint:", f"    authType: bearer\n    authSecret: "
                                f"'{secret}'\n    endpoint:"))
    assert run("config", "import", str(src), "--output", "-") == 0
    assert f"auth_secret = {written}\n" in capsys.readouterr().out


def test_an_unhashable_key_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = tmp_path / "providers.yaml"
    src.write_text("providers:\n  - ? [a, b]\n    : 1\n")
    assert run("config", "import", str(src), "-o", str(tmp_path / "out.toml")) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 2 and "unhashable" in err[0] and not (tmp_path / "out.toml").exists()
