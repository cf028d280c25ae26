"""lai.config.loader: finding the file, error lines, environment overrides, paths, warnings."""

from __future__ import annotations

from pathlib import Path

import pytest

from lai.config.loader import find_config_path, load_settings
from lai.errors import ConfigError

BASE = """\
[server]
host = "127.0.0.1"

[[providers]]
id = "gpu-box"
endpoint = "http://127.0.0.1:8000"

[[providers]]
id = "cloud"
type = "openai"
endpoint = "https://api.example.com/v1"
auth_type = "bearer"
auth_secret = "sk-literal"

[[models]]
id = "m1"
provider_id = "gpu-box"

[[models]]
id = "m2"
provider_id = "cloud"
"""


def write(directory: Path, text: str, name: str = "config.toml") -> Path:
    path = directory / name
    path.write_text(text, encoding="utf-8")
    return path


def error_of(path: Path, environ: dict[str, str] | None = None) -> str:
    with pytest.raises(ConfigError) as info:
        load_settings(path, environ or {})
    return str(info.value)


# --------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        pytest.param(
            'auth_type = "bearer"',
            'auth_type = "bearer"\nmax_concurrent = "four"',
            "providers[1].max_concurrent: must be an integer",
            id="bad-type",
        ),
        pytest.param(
            'auth_type = "bearer"',
            'auth_type = "bearer"\nmax_concurrent = 0',
            "providers[1].max_concurrent: must be >= 1",
            id="out-of-range",
        ),
        pytest.param(
            'endpoint = "http://127.0.0.1:8000"\n',
            "",
            "providers[0].endpoint: missing",
            id="missing-endpoint",
        ),
        pytest.param(
            'endpoint = "http://127.0.0.1:8000"',
            'endpoint = "http://127.0.0.1:8000"\nmax_concurent = 2',
            "providers[0].max_concurent: unknown key (did you mean max_concurrent?)",
            id="unknown-key",
        ),
        pytest.param(
            'id = "cloud"',
            'id = "gpu-box"',
            "providers[1].id: duplicate provider id 'gpu-box'",
            id="duplicate-provider-id",
        ),
        pytest.param(
            'provider_id = "cloud"',
            'provider_id = "nope"',
            "models[1].provider_id: no provider with id 'nope'",
            id="model-unknown-provider",
        ),
        pytest.param(
            'id = "m1"',
            'id = "m1"\ncost_per_1k_tokens = 0.5\ncost_per_1k_input = 0.1',
            "models[0].cost_per_1k_tokens: cannot be set together with cost_per_1k_input/output",
            id="price-forms",
        ),
        pytest.param(
            'type = "openai"',
            'type = "ollama"',
            "providers[1].type: must be one of local, openai, anthropic",
            id="literal",
        ),
        pytest.param(
            'host = "127.0.0.1"',
            'host = "127.0.0.1"\nauth = "maybe"',
            "server.auth: must be a boolean",
            id="bad-boolean",
        ),
        pytest.param(
            'host = "127.0.0.1"',
            'host = "127.0.0.1"\nqueue_timeout = 0',
            "server.queue_timeout: must be > 0",
            id="greater-than",
        ),
        pytest.param(
            'id = "m1"',
            'id = "m1"\ntags = [1]',
            "models[0].tags[0]: must be a string",
            id="list-item",
        ),
        pytest.param(
            'id = "m1"',
            'id = "m1"\ncapabilities = { vison = true }',
            "models[0].capabilities.vison: unknown key (did you mean vision?)",
            id="capabilities-key",
        ),
        pytest.param(
            'id = "gpu-box"',
            'id = "gpu box"',
            "providers[0].id: must be 1-64 letters, digits, '.', '_' or '-', "
            "starting with a letter or digit",
            id="id-pattern",
        ),
    ],
)
def test_validation_error_is_one_line_naming_file_table_and_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, old: str, new: str, expected: str
) -> None:
    assert old in BASE
    write(tmp_path, BASE.replace(old, new, 1))
    monkeypatch.chdir(tmp_path)
    assert error_of(Path("config.toml")) == f"config.toml: {expected}"


def test_error_uses_the_path_as_given(tmp_path: Path) -> None:
    path = write(tmp_path, BASE + "\n[server2]\n")
    assert error_of(path) == f"{path}: server2: unknown key (did you mean server?)"


def test_single_bracket_providers_table_gets_a_hint(tmp_path: Path) -> None:
    path = write(tmp_path, '[providers]\nid = "a"\nendpoint = "http://x"\n')
    assert error_of(path) == (
        f"{path}: providers: must be an array of tables: write [[providers]], not [providers]"
    )


def test_several_errors_report_the_first_and_count_the_rest(tmp_path: Path) -> None:
    text = BASE.replace('id = "gpu-box"', 'id = "gpu-box"\nmax_concurrent = 0\npriority = "x"', 1)
    message = error_of(write(tmp_path, text))
    assert "\n" not in message
    assert message.endswith("(and 1 more error)")


def test_source_cannot_be_set_in_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, 'source = "elsewhere.toml"\n' + BASE)
    assert error_of(path) == f"{path}: source: unknown key"


def test_toml_syntax_error_names_the_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    lines = BASE.splitlines()
    lines[6] = "[[models]"  # line 7
    write(tmp_path, "\n".join(lines) + "\n")
    monkeypatch.chdir(tmp_path)
    message = error_of(Path("config.toml"))
    assert message.startswith("config.toml: line 7: ")
    assert " at line " not in message and "\n" not in message


def test_unreadable_file_is_a_config_error(tmp_path: Path) -> None:
    message = error_of(tmp_path / "absent.toml")
    assert message.startswith(f"{tmp_path / 'absent.toml'}: cannot read: ")


# --------------------------------------------------------------------------- environment


def test_endpoint_override(tmp_path: Path) -> None:
    settings, _ = load_settings(
        write(tmp_path, BASE), {"PROVIDER_GPU_BOX_ENDPOINT": "http://10.0.0.9:8000"}
    )
    assert settings.providers[0].endpoint == "http://10.0.0.9:8000"
    assert settings.providers[1].endpoint == "https://api.example.com/v1"


def test_override_name_mangles_every_non_alphanumeric(tmp_path: Path) -> None:
    text = BASE.replace('"gpu-box"', '"gaming-pc.3090"')
    settings, _ = load_settings(
        write(tmp_path, text), {"PROVIDER_GAMING_PC_3090_ENDPOINT": "http://h:1"}
    )
    assert settings.providers[0].endpoint == "http://h:1"


@pytest.mark.parametrize(
    ("value", "enabled"),
    [
        ("true", True),
        ("1", True),
        ("yes", True),
        ("ON", True),
        ("false", False),
        ("0", False),
        ("no", False),
        ("Off", False),
    ],
)
def test_enabled_override(tmp_path: Path, value: str, enabled: bool) -> None:
    text = BASE.replace(
        'id = "gpu-box"', f'id = "gpu-box"\nenabled = {str(not enabled).lower()}', 1
    )
    settings, _ = load_settings(write(tmp_path, text), {"PROVIDER_GPU_BOX_ENABLED": value})
    assert settings.providers[0].enabled is enabled


def test_enabled_override_rejects_other_words(tmp_path: Path) -> None:
    path = write(tmp_path, BASE)
    assert error_of(path, {"PROVIDER_CLOUD_ENABLED": "maybe"}) == (
        f"{path}: providers[1].enabled: $PROVIDER_CLOUD_ENABLED must be "
        "true/false/1/0/yes/no/on/off, got 'maybe'"
    )


def test_api_key_override_sets_secret_and_bearer(tmp_path: Path) -> None:
    settings, _ = load_settings(write(tmp_path, BASE), {"PROVIDER_GPU_BOX_API_KEY": "k1"})
    gpu = settings.providers[0]
    assert (gpu.auth_type, gpu.auth_secret) == ("bearer", "k1")


def test_api_key_override_keeps_an_explicit_auth_type(tmp_path: Path) -> None:
    text = BASE.replace('auth_type = "bearer"', 'auth_type = "api_key"')
    settings, _ = load_settings(write(tmp_path, text), {"PROVIDER_CLOUD_API_KEY": "k2"})
    cloud = settings.providers[1]
    assert (cloud.auth_type, cloud.auth_secret) == ("api_key", "k2")


def test_api_key_override_on_anthropic_uses_api_key_header(tmp_path: Path) -> None:
    text = BASE.replace('type = "openai"', 'type = "anthropic"').replace(
        'auth_type = "bearer"\n', ""
    )
    settings, _ = load_settings(write(tmp_path, text), {"PROVIDER_CLOUD_API_KEY": "k3"})
    assert settings.providers[1].auth_type == "api_key"


def test_database_url_override(tmp_path: Path) -> None:
    url = "postgresql+psycopg://lai@db/lai"
    settings, _ = load_settings(write(tmp_path, BASE), {"LAI_DATABASE_URL": url})
    assert settings.server.database_url == url


def test_empty_override_counts_as_unset(tmp_path: Path) -> None:
    settings, _ = load_settings(
        write(tmp_path, BASE), {"PROVIDER_GPU_BOX_ENDPOINT": "", "LAI_DATABASE_URL": ""}
    )
    assert settings.providers[0].endpoint == "http://127.0.0.1:8000"
    assert settings.server.database_url.endswith("/data/lai.db")


def test_env_secret_is_read_from_the_environment(tmp_path: Path) -> None:
    text = BASE.replace('"sk-literal"', '"env:CLOUD_KEY"')
    settings, _ = load_settings(write(tmp_path, text), {"CLOUD_KEY": "sk-from-env"})
    assert settings.providers[1].auth_secret == "sk-from-env"


def test_missing_env_secret_names_provider_and_key(tmp_path: Path) -> None:
    path = write(tmp_path, BASE.replace('"sk-literal"', '"env:CLOUD_KEY"'))
    assert error_of(path) == (
        f"{path}: providers[1].auth_secret: environment variable CLOUD_KEY is not set or empty"
    )


def test_api_key_override_wins_over_env_secret(tmp_path: Path) -> None:
    text = BASE.replace('"sk-literal"', '"env:CLOUD_KEY"')
    settings, _ = load_settings(write(tmp_path, text), {"PROVIDER_CLOUD_API_KEY": "k4"})
    assert settings.providers[1].auth_secret == "k4"


def test_environ_defaults_to_the_process_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PROVIDER_GPU_BOX_ENDPOINT", "http://from-os-environ:1")
    settings, _ = load_settings(write(tmp_path, BASE))
    assert settings.providers[0].endpoint == "http://from-os-environ:1"


# --------------------------------------------------------------------------- paths


def test_relative_paths_resolve_against_the_config_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    conf_dir = tmp_path / "etc" / "lai"
    conf_dir.mkdir(parents=True)
    text = BASE.replace(
        'host = "127.0.0.1"',
        'host = "127.0.0.1"\ndata_dir = "state"\ndatabase_url = "sqlite:///db/lai.db"',
    )
    write(conf_dir, text)
    elsewhere = tmp_path / "cwd"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    settings, _ = load_settings(Path("../etc/lai/config.toml"), {})
    assert settings.server.data_dir == conf_dir / "state"
    assert settings.server.database_url == f"sqlite:///{conf_dir / 'db' / 'lai.db'}"
    assert settings.source == Path("../etc/lai/config.toml")


def test_relative_sqlite_url_from_environment_also_resolves_against_config_folder(
    tmp_path: Path,
) -> None:
    settings, _ = load_settings(
        write(tmp_path, BASE), {"LAI_DATABASE_URL": "sqlite+aiosqlite:///x.db?timeout=5"}
    )
    assert settings.server.database_url == f"sqlite+aiosqlite:///{tmp_path / 'x.db'}?timeout=5"


@pytest.mark.parametrize(
    "url",
    [
        "sqlite:///:memory:",
        "sqlite://",
        "sqlite:////var/lib/lai/lai.db",
        "postgresql+psycopg://lai:pw@db:5432/lai",
    ],
)
def test_memory_absolute_and_server_urls_are_untouched(tmp_path: Path, url: str) -> None:
    text = BASE.replace('host = "127.0.0.1"', f'host = "127.0.0.1"\ndatabase_url = "{url}"')
    settings, _ = load_settings(write(tmp_path, text), {})
    assert settings.server.database_url == url


def test_absolute_data_dir_is_untouched(tmp_path: Path) -> None:
    text = BASE.replace('host = "127.0.0.1"', 'host = "127.0.0.1"\ndata_dir = "/srv/lai"')
    settings, _ = load_settings(write(tmp_path, text), {})
    assert settings.server.data_dir == Path("/srv/lai")


# --------------------------------------------------------------------------- warnings


def test_clean_config_has_no_warnings(tmp_path: Path) -> None:
    settings, warnings = load_settings(write(tmp_path, BASE), {})
    assert warnings == []
    assert len(settings.providers) == 2 and len(settings.models) == 2


def test_provider_without_models_warns(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write(tmp_path, BASE.split("[[models]]")[0])
    monkeypatch.chdir(tmp_path)
    _, warnings = load_settings(Path("config.toml"), {})
    assert "config.toml: providers[0].id: no [[models]] entry uses provider 'gpu-box'" in warnings
    assert "config.toml: providers[1].id: no [[models]] entry uses provider 'cloud'" in warnings


def test_file_without_providers_warns(tmp_path: Path) -> None:
    path = write(tmp_path, "[server]\nport = 9000\n")
    settings, warnings = load_settings(path, {})
    assert settings.server.port == 9000
    assert warnings == [f"{path}: providers: no providers configured: lai cannot route any request"]


def test_cloud_provider_without_auth_warns(tmp_path: Path) -> None:
    path = write(tmp_path, BASE.replace('auth_type = "bearer"\nauth_secret = "sk-literal"\n', ""))
    _, warnings = load_settings(path, {})
    assert warnings == [
        f"{path}: providers[1].auth_type: none on a cloud provider (openai); "
        "set auth_type and auth_secret"
    ]


def test_same_endpoint_twice_warns(tmp_path: Path) -> None:
    text = BASE.replace("https://api.example.com/v1", "http://127.0.0.1:8000/")
    text = text.replace('type = "openai"', 'type = "local"').replace(
        'auth_type = "bearer"\nauth_secret = "sk-literal"\n', ""
    )
    path = write(tmp_path, text)
    _, warnings = load_settings(path, {})
    assert warnings == [f"{path}: providers[1].endpoint: same endpoint as providers[0]"]


@pytest.mark.parametrize(
    ("host", "warns"),
    [
        ("0.0.0.0", True),
        ("192.168.1.2", True),
        ("lai.lan", True),
        ("127.0.0.1", False),
        ("localhost", False),
        ("::1", False),
    ],
)
def test_auth_off_on_a_network_address_warns(tmp_path: Path, host: str, warns: bool) -> None:
    text = BASE.replace('host = "127.0.0.1"', f'host = "{host}"\nauth = false')
    path = write(tmp_path, text)
    _, warnings = load_settings(path, {})
    auth = [w for w in warnings if w.startswith(f"{path}: server.auth: ")]
    assert bool(auth) is warns


def test_every_warning_is_one_line_with_file_and_key(tmp_path: Path) -> None:
    text = BASE.replace('host = "127.0.0.1"', 'host = "0.0.0.0"\nauth = false').replace(
        'id = "m1"', 'id = "m1"\nmax_tokens = 9000\ncontext_window = 4096\nfallbacks = ["m1"]'
    )
    path = write(tmp_path, text)
    _, warnings = load_settings(path, {})
    assert len(warnings) == 3
    for warning in warnings:
        assert "\n" not in warning
        assert warning.startswith(f"{path}: ")


# --------------------------------------------------------------------------- finding


@pytest.fixture
def clean_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """No $LAI_CONFIG, an empty home and an empty working directory."""
    monkeypatch.delenv("LAI_CONFIG", raising=False)
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    return tmp_path


def test_find_prefers_explicit_path(clean_env: Path) -> None:
    write(clean_env / "work", BASE)
    other = write(clean_env, BASE, "other.toml")
    assert find_config_path(str(other)) == other


def test_find_explicit_missing_is_an_error_not_a_fallback(clean_env: Path) -> None:
    write(clean_env / "work", BASE)
    with pytest.raises(ConfigError, match=r"^nope\.toml: no such config file \(from --config\)"):
        find_config_path("nope.toml")


def test_find_uses_lai_config_then_cwd_then_home(
    clean_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home_file = clean_env / "home" / ".config" / "lai" / "config.toml"
    home_file.parent.mkdir(parents=True)
    home_file.write_text(BASE)
    assert find_config_path(None) == home_file
    write(clean_env / "work", BASE)
    assert find_config_path(None) == Path("config.toml")
    named = write(clean_env, BASE, "named.toml")
    monkeypatch.setenv("LAI_CONFIG", str(named))
    assert find_config_path(None) == named


def test_find_nothing_lists_places_and_suggests_init(clean_env: Path) -> None:
    with pytest.raises(ConfigError) as info:
        find_config_path(None)
    message = str(info.value)
    assert "\n" not in message
    for place in ("--config", "$LAI_CONFIG", "./config.toml", ".config/lai/config.toml"):
        assert place in message
    assert "lai config init" in message


def test_truncated_file_says_end_of_file(tmp_path: Path) -> None:
    path = write(tmp_path, "[server]\nport = ")
    assert error_of(path) == f"{path}: line 2: unexpected end of file"


def test_find_lai_config_missing_is_an_error(
    clean_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write(clean_env / "work", BASE)
    monkeypatch.setenv("LAI_CONFIG", str(clean_env / "gone.toml"))
    with pytest.raises(ConfigError, match=r"no such config file \(from \$LAI_CONFIG\)"):
        find_config_path(None)


def test_content_retention_not_below_retention_warns(tmp_path: Path) -> None:
    path = write(tmp_path, "[server]\nretention_days = 30\ncontent_retention_days = 30\n")
    settings, warnings = load_settings(path, {})
    assert (settings.server.retention_days, settings.server.content_retention_days) == (30, 30)
    assert f"{path}: server.content_retention_days: has no effect: not less than " \
        "server.retention_days (30), which deletes the messages first" in warnings
    path = write(tmp_path, "[server]\nretention_days = 30\ncontent_retention_days = 7\n")
    assert not any("server.content_retention_days" in w for w in load_settings(path, {})[1])
    with pytest.raises(ConfigError, match="retention_days"):
        load_settings(write(tmp_path, "[server]\nretention_days = 0\n"), {})


# --------------------------------------------------------------------------- model kinds


def test_model_kind_defaults_to_chat_and_an_embedding_model_is_not_warned_about(
    tmp_path: Path,
) -> None:
    text = BASE.replace(
        'id = "m1"', 'id = "m1"\nkind = "embedding"\ncontext_window = 512\nmax_tokens = 4096')
    settings, warnings = load_settings(write(tmp_path, text), {})
    assert settings.models[0].kind == "embedding"
    assert warnings == []


def test_an_unknown_kind_or_an_embedding_model_on_anthropic_is_a_config_error(
    tmp_path: Path,
) -> None:
    with pytest.raises(ConfigError, match=r"models\[0\]\.kind"):
        load_settings(write(tmp_path, BASE.replace('id = "m1"', 'id = "m1"\nkind = "rerank"')),
                      {})
    claude = 'type = "anthropic"\nauth_type = "api_key"\nauth_secret = "x"\nendpoint = '
    anthropic = BASE.replace('id = "m1"', 'id = "m1"\nkind = "embedding"').replace(
        'endpoint = ', claude, 1)
    with pytest.raises(ConfigError, match="serves no embeddings"):
        load_settings(write(tmp_path, anthropic), {})
