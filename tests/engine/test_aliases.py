"""Model aliases: exact names and glob patterns, resolved in lai.engine.routing for every
face, refused at start-up when two models could claim one name."""

from __future__ import annotations

from pathlib import Path

import pytest

from lai.config.loader import load_settings
from lai.config.models import ModelConfig, ProviderConfig, Settings
from lai.engine.requests import inspect_chat
from lai.engine.routing import Catalog, plan
from lai.engine.types import RequestContext
from lai.errors import ConfigError, ModelNotFound, PermissionDenied


def settings(*models: ModelConfig) -> Settings:
    return Settings(
        providers=(ProviderConfig(id="box", endpoint="http://127.0.0.1:1"),
                   ProviderConfig(id="big", endpoint="http://127.0.0.1:2", priority=2)),
        models=models,
    )


def model(mid: str, *aliases: str, provider: str = "box") -> ModelConfig:
    return ModelConfig(id=mid, provider_id=provider, aliases=aliases)


def route(s: Settings, name: str, ctx: RequestContext | None = None) -> list[tuple[str, str]]:
    shape = inspect_chat({"model": name, "messages": [{"role": "user", "content": "hi"}]})
    cands = plan(Catalog(s), shape, ctx or RequestContext(), usable=lambda _: True,
                 status=lambda _: "healthy", warm=lambda _p, _m: False)
    return [(c.provider.id, c.model.id) for c in cands]


def test_exact_alias_and_glob_route_to_their_model() -> None:
    s = settings(model("qwen", "gpt-4o", "claude-sonnet-*"), model("small", "claude-haiku-*"))
    assert route(s, "gpt-4o") == [("box", "qwen")]
    assert route(s, "claude-sonnet-4-5-20250929") == [("box", "qwen")]
    assert route(s, "claude-haiku-4-5") == [("box", "small")]
    with pytest.raises(ModelNotFound):
        route(s, "claude-opus-4-1")


def test_most_specific_glob_wins_whatever_the_order() -> None:
    s = settings(model("general", "claude-*"), model("coder", "claude-sonnet-*"))
    assert route(s, "claude-sonnet-4") == [("box", "coder")]
    assert route(s, "claude-opus-4") == [("box", "general")]


def test_equal_globs_first_in_file_wins_and_exact_beats_glob() -> None:
    s = settings(model("first", "gpt-*"), model("second", "gpt-?o*", "gpt-4o"))
    assert route(s, "gpt-5") == [("box", "first")]
    assert route(s, "gpt-4o") == [("box", "second")]


def test_real_ids_beat_patterns() -> None:
    s = settings(model("gpt-oss"), model("other", "gpt-*"))
    assert route(s, "gpt-oss") == [("box", "gpt-oss")]
    assert route(s, "box") == [("box", "gpt-oss")]


def test_alias_of_a_model_on_two_providers_reaches_both() -> None:
    s = settings(model("qwen", "claude-*"), model("qwen", "claude-*", provider="big"))
    assert route(s, "claude-opus-4") == [("box", "qwen"), ("big", "qwen")]


def test_a_key_limited_to_a_model_may_use_its_aliases_only() -> None:
    s = settings(model("qwen", "claude-*"), model("other", "gpt-*"))
    ctx = RequestContext(allowed_models=frozenset({"qwen"}))
    assert route(s, "claude-opus-4", ctx) == [("box", "qwen")]
    with pytest.raises(PermissionDenied):
        route(s, "gpt-5", ctx)


BASE = """\
[[providers]]
id = "gpu"
endpoint = "http://127.0.0.1:8000"

[[models]]
id = "m1"
provider_id = "gpu"
aliases = ["claude-*", "gpt-4o"]

[[models]]
id = "m2"
provider_id = "gpu"
"""


@pytest.mark.parametrize(("aliases", "expected"), [
    pytest.param('["gpt-4o"]', "models[1].aliases: 'gpt-4o' is already an alias of model 'm1'",
                 id="same-exact-alias"),
    pytest.param('["claude-*"]',
                 "models[1].aliases: 'claude-*' is already an alias of model 'm1'",
                 id="same-pattern"),
    pytest.param('["m1"]', "models[1].aliases: 'm1' is already a model id", id="model-id"),
    pytest.param('["gpu"]', "models[1].aliases: 'gpu' is already a provider id",
                 id="provider-id"),
    pytest.param('["auto"]', "models[1].aliases: 'auto' is lai's own model name", id="auto"),
    pytest.param('["a/b"]', "models[1].aliases: 'a/b' must be a non-empty name", id="slash"),
])
def test_clashing_aliases_are_config_errors_naming_file_table_and_key(
    tmp_path: Path, aliases: str, expected: str
) -> None:
    path = tmp_path / "config.toml"
    path.write_text(BASE + f"aliases = {aliases}\n", encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_settings(path, {})
    assert str(info.value).startswith(f"{path}: {expected}")


def test_overlapping_patterns_of_two_models_are_legal(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text(BASE + 'aliases = ["claude-sonnet-*"]\n', encoding="utf-8")
    s, _ = load_settings(path, {})
    assert route(s, "claude-sonnet-4") == [("gpu", "m2")]
    assert route(s, "claude-opus-4") == [("gpu", "m1")]


def test_one_catalog_answers_the_same_for_every_request_and_any_number_of_names() -> None:
    # A catalog keeps what it resolved (bounded: a glob matches endless client names).
    s = settings(model("qwen", "claude-*", "gpt-4o"), model("big-one", provider="big"))
    catalog = Catalog(s)
    first = catalog.explicit("gpt-4o")
    first.clear()  # a caller's list is its own
    assert [(c.provider.id, c.model.id) for c in catalog.explicit("gpt-4o")] == [("box", "qwen")]
    for i in range(3000):
        assert catalog.explicit(f"claude-{i}")[0].model.id == "qwen"
        with pytest.raises(ModelNotFound):
            catalog.explicit(f"unknown-{i % 3}")
    assert catalog.explicit("big")[0].model.id == "big-one"
