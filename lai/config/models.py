"""The frozen settings models. Field names are the snake_case keys of ``config.toml``."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from lai.durations import parse_duration

ProviderType = Literal["local", "openai", "anthropic"]
ModelKind = Literal["chat", "embedding"]
AuthType = Literal["none", "bearer", "api_key"]
ServerKind = Literal["ollama", "llama.cpp", "llama-swap", "vllm", "lmstudio",
                     "openai-compatible"]

ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class ServerSettings(_Frozen):
    """The ``[server]`` table."""

    host: str = "127.0.0.1"
    """Address `lai proxy` listens on."""
    port: int = Field(8012, ge=1, le=65535)
    """TCP port of `lai proxy`."""
    database_url: str = "sqlite:///data/lai.db"
    """Any SQLAlchemy URL; a relative sqlite path is relative to the config file's folder."""
    data_dir: Path = Path("data")
    """Images, the admin socket and the SQLite file live here; relative to the config file."""
    auth: bool = True
    """Require `lai_` keys on /v1 and /admin. false only on a trusted single-user machine."""
    queue_timeout: float = Field(30.0, gt=0)
    """Seconds a request may wait for a free slot before 503 provider_capacity_exceeded."""
    queue_max_size: int = Field(100, ge=0)
    """Requests that may wait at once; one more is refused at once with 503."""
    cloud_fallback: bool = True
    """May `auto` traffic spill over to cloud providers (types openai, anthropic)."""
    scheduling: Literal["fair", "fifo"] = "fair"
    """`fair`: keys take turns in the queue, and the choice among providers weighs each
    one's expected time to first token (loaded models, queue, recent service times).
    `fifo`: priority, then arrival order and config order, as before issue 14; for
    comparison (bench/scheduling.py) and as an escape hatch."""
    prefer_priority_within: float = Field(5.0, ge=0)
    """Seconds: a candidate of a lower priority (a larger number) is not used while one
    of a higher priority is expected to give the first token within this long
    (scheduling `fair` only)."""
    spill_after: float | None = None
    """`auto` traffic goes to a cloud provider at once, instead of queueing, when every
    local candidate's expected wait is longer than this ("10s", or seconds); unset: cloud
    providers are ranked like any other lower priority. A key's `--spill-after` wins.
    Scheduling `fair` only."""
    sticky_within: float = Field(3.0, ge=0)
    """Seconds: a request continuing a conversation stays on the provider of its last
    turn (whose prefix cache holds the conversation) while that provider is expected to
    be at most this much slower than the best candidate (scheduling `fair` only)."""
    warm_timeout: float = Field(300.0, ge=0)
    """A model that served a request this many seconds ago still counts as warm."""
    max_body_size: int = Field(20 * 1024 * 1024, ge=1024)
    """Largest request body in bytes; larger ones get 413 request_too_large."""
    max_image_size: int = Field(10 * 1024 * 1024, ge=1024)
    """Largest uploaded image in bytes."""
    max_images_per_message: int = Field(5, ge=1)
    """Images one message may carry."""
    images_retention_days: int | None = Field(None, ge=1)
    """When set, a daily sweep deletes image folders older than this many days."""
    retention_days: int | None = Field(None, ge=1)
    """When set, an hourly sweep deletes requests and conversations (messages and images
    too) older than this many days: requests by start, conversations by last activity."""
    content_retention_days: int | None = Field(None, ge=1)
    """When set, the hourly sweep removes the text and tool calls of messages older than
    this many days; the rows, token counts and requests stay for `lai stats`."""
    metrics_auth: bool = False
    """Require a key on GET /metrics too."""
    electricity_rate_kwh: float = Field(0.0, ge=0)
    """Price of a kWh in USD, for providers that set power_watts."""
    shutdown_timeout: float = Field(30.0, ge=0)
    """Seconds a graceful shutdown waits for in-flight requests."""
    watch_config: bool = False
    """Reload the config whenever the file changes (checked every 2 s), besides SIGHUP
    and ``lai config reload``."""
    header_timeout: float = Field(10.0, gt=0)
    """Seconds a client has to send a complete request head (from connecting, or from
    the first byte of its next request); then the connection gets 408 and is closed."""
    access_log: bool = True
    """One line per HTTP request on the `lai.access` logger (stderr of `lai proxy`)."""
    access_log_format: Literal["text", "json"] = "text"
    """`text` lines, or one JSON object per line."""

    @field_validator("spill_after", mode="before")
    @classmethod
    def _duration(cls, value: object) -> object:
        return seconds_or_off(value)


def seconds_or_off(value: object) -> object:
    """A duration written "10s" (or a number of seconds) as seconds; "off" and "none"
    as None. Raises ValueError for a negative or unreadable one."""
    if isinstance(value, str):
        text = value.strip().lower()
        if text in ("off", "none", ""):
            return None
        try:
            value = float(text)
        except ValueError:
            return parse_duration(text).total_seconds()
    if isinstance(value, int | float) and not isinstance(value, bool) and not value >= 0:
        raise ValueError(f"must be a duration >= 0 (e.g. \"10s\"), not {value!r}")
    return value


class Capabilities(_Frozen):
    """What a model can do."""

    streaming: bool = True
    function_calling: bool = False
    vision: bool = False
    json_mode: bool = False


class ProviderConfig(_Frozen):
    """One ``[[providers]]`` entry: a model server (local) or a cloud API."""

    id: str = Field(pattern=ID_PATTERN)
    name: str = ""
    type: ProviderType = "local"
    endpoint: str = Field(min_length=1)
    priority: int = 1
    enabled: bool = True
    max_concurrent: int = Field(1, ge=1)
    health_check_interval: float = Field(30.0, gt=0)
    health_check_timeout: float = Field(5.0, gt=0)
    health_check_path: str | None = None
    """Probe path; default /health for local, /models for openai, /v1/models for anthropic."""
    connect_timeout: float | None = Field(None, gt=0)
    """Seconds to connect; default 5 for local, 10 for cloud."""
    read_timeout: float | None = Field(None, gt=0)
    """Seconds without a byte from the upstream; default 60 for local, 120 for cloud."""
    auth_type: AuthType = "none"
    auth_secret: str = ""
    """A literal secret, or "env:NAME" to read it from the environment at start-up."""
    power_watts: float = Field(0.0, ge=0)
    """Power the box draws while serving; with server.electricity_rate_kwh gives a cost."""
    messages_api: bool = False
    """The server speaks the Anthropic Messages API itself at {endpoint}/v1/messages
    (llama.cpp's server, vLLM): /v1/messages requests are passed through to it instead
    of translated to chat completions. Always so for type anthropic."""
    server: ServerKind | None = None
    """What software answers at ``endpoint``, so lai can ask it which models it has
    loaded and how busy it is, with each health check (``lai.engine.discovery``):
    ollama (GET /api/ps), llama.cpp (GET /props and /slots), llama-swap (GET /running),
    vllm (GET /metrics), lmstudio (GET /api/v0/models). openai-compatible, or unset:
    nothing beyond the health check."""

    @property
    def is_cloud(self) -> bool:
        return self.type != "local"

    @property
    def display_name(self) -> str:
        return self.name or self.id

    @property
    def probe_path(self) -> str:
        if self.health_check_path is not None:
            return self.health_check_path
        return {"local": "/health", "openai": "/models", "anthropic": "/v1/models"}[self.type]

    @property
    def effective_connect_timeout(self) -> float:
        return self.connect_timeout or (5.0 if self.type == "local" else 10.0)

    @property
    def effective_read_timeout(self) -> float:
        return self.read_timeout or (60.0 if self.type == "local" else 120.0)

    @property
    def base_url(self) -> str:
        """The endpoint without a trailing slash, and for local servers without ``/v1``."""
        url = self.endpoint.rstrip("/")
        if self.type == "local" and url.endswith("/v1"):
            url = url[: -len("/v1")]
        return url


class ModelConfig(_Frozen):
    """One ``[[models]]`` entry: a model that a provider serves."""

    id: str = Field(pattern=ID_PATTERN)
    name: str = ""
    provider_id: str
    upstream_id: str | None = None
    kind: ModelKind = "chat"
    """chat: chat completions and Responses; embedding: POST /v1/embeddings only."""
    context_window: int = Field(8192, ge=1)
    max_tokens: int = Field(4096, ge=1)
    is_default: bool = False
    cost_per_1k_tokens: float | None = Field(None, ge=0)
    cost_per_1k_input: float | None = Field(None, ge=0)
    cost_per_1k_output: float | None = Field(None, ge=0)
    capabilities: Capabilities = Capabilities()
    tags: tuple[str, ...] = ()
    fallbacks: tuple[str, ...] = ()
    aliases: tuple[str, ...] = ()
    """Other names clients may ask for this model by: exact names or glob patterns
    (``*``, ``?``, ``[...]``), e.g. ``["claude-sonnet-*", "gpt-4o"]``."""
    max_concurrent: int | None = Field(None, ge=1)
    """Requests to this model in flight at once (a model on a multi-model server);
    unset: only the provider's max_concurrent applies."""
    load_seconds: float | None = Field(None, ge=0)
    """Seconds the server takes to load this model when it is cold (not loaded): what
    choosing it costs then. Unset: 10 for a local provider, 0 for a cloud one; and the
    only model of a provider counts as always loaded unless this is set."""

    @model_validator(mode="after")
    def _one_price_form(self) -> ModelConfig:
        if self.cost_per_1k_tokens is not None and (
            self.cost_per_1k_input is not None or self.cost_per_1k_output is not None
        ):
            raise ValueError(
                "cost_per_1k_tokens cannot be set together with cost_per_1k_input/output"
            )
        return self

    @property
    def upstream_name(self) -> str:
        return self.upstream_id or self.id

    @property
    def display_name(self) -> str:
        return self.name or self.id


class Settings(_Frozen):
    """The whole config file, after environment overrides and path resolution."""

    server: ServerSettings = ServerSettings()
    providers: tuple[ProviderConfig, ...] = ()
    models: tuple[ModelConfig, ...] = ()
    source: Path | None = Field(None, exclude=True)
    """The file these settings came from (None when built in code)."""

    @model_validator(mode="after")
    def _cross_checks(self) -> Settings:
        seen: set[str] = set()
        for i, p in enumerate(self.providers):
            if p.id in seen:
                raise ValueError(f"providers[{i}].id: duplicate provider id {p.id!r}")
            seen.add(p.id)
        model_ids: set[str] = set()
        defaults: dict[str, str] = {}
        for i, m in enumerate(self.models):
            if m.provider_id not in seen:
                raise ValueError(
                    f"models[{i}].provider_id: no provider with id {m.provider_id!r}"
                )
            key = f"{m.provider_id}/{m.id}"
            if key in model_ids:
                raise ValueError(f"models[{i}].id: duplicate model {key!r}")
            model_ids.add(key)
            kind_of_provider = next(p.type for p in self.providers if p.id == m.provider_id)
            if m.kind == "embedding" and kind_of_provider == "anthropic":
                raise ValueError(
                    f"models[{i}].kind: provider {m.provider_id!r} is anthropic, which serves "
                    f"no embeddings"
                )
            if m.is_default:
                if m.provider_id in defaults:
                    raise ValueError(
                        f"models[{i}].is_default: provider {m.provider_id!r} already has "
                        f"default model {defaults[m.provider_id]!r}"
                    )
                defaults[m.provider_id] = m.id
        bare = {m.id for m in self.models}
        for i, m in enumerate(self.models):
            for f in m.fallbacks:
                if f not in bare and f not in model_ids and f not in seen:
                    raise ValueError(f"models[{i}].fallbacks: unknown model {f!r}")
        _check_aliases(self.models, bare, seen)
        return self

    def provider(self, provider_id: str) -> ProviderConfig | None:
        for p in self.providers:
            if p.id == provider_id:
                return p
        return None

    def models_of(self, provider_id: str) -> list[ModelConfig]:
        return [m for m in self.models if m.provider_id == provider_id]


GLOB_CHARS = frozenset("*?[")


def is_glob(alias: str) -> bool:
    """Whether an alias is a glob pattern (has ``*``, ``?`` or ``[``) rather than a name."""
    return not GLOB_CHARS.isdisjoint(alias)


def _check_aliases(
    models: tuple[ModelConfig, ...], model_ids: set[str], provider_ids: set[str]
) -> None:
    """Refuse aliases that could name two different models, or shadow a real name.

    An alias may repeat on entries of the same model id (one model on two providers).
    Overlapping globs of different models are legal: the most specific one wins
    (``lai.engine.routing``). Raises ValueError naming ``models[i].aliases``.
    """
    owner: dict[str, str] = {}
    for i, m in enumerate(models):
        for alias in m.aliases:
            where = f"models[{i}].aliases"
            if not alias.strip() or alias != alias.strip() or "/" in alias:
                raise ValueError(f"{where}: {alias!r} must be a non-empty name without "
                                 f"spaces at either end or '/'")
            if alias == "auto":
                raise ValueError(f"{where}: 'auto' is lai's own model name")
            if alias in model_ids:
                raise ValueError(f"{where}: {alias!r} is already a model id")
            if alias in provider_ids:
                raise ValueError(f"{where}: {alias!r} is already a provider id")
            other = owner.setdefault(alias, m.id)
            if other != m.id:
                raise ValueError(f"{where}: {alias!r} is already an alias of model {other!r}")


def env_name(provider_id: str) -> str:
    """``gaming-pc-3090`` -> ``GAMING_PC_3090`` (for PROVIDER_{ID}_ENDPOINT and friends)."""
    return re.sub(r"[^A-Za-z0-9]", "_", provider_id).upper()
