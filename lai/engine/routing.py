"""Which (provider, model) pairs may serve a request, best first.

``auto``: every usable provider by ``priority`` (cloud ones only with
``server.cloud_fallback``), each with its default model (else its first) or, when the
request needs something that one lacks (vision, a larger context), its first model that
has it; warm models first among equal priorities. A model id: every provider serving it,
by priority, then the model's ``fallbacks``. A provider id: its default model, then that
model's fallbacks. ``provider/model``: that pair, then its fallbacks. A key with scope
``local-only`` never gets a cloud provider (403 when only a cloud one could serve).

A name that is none of these is looked up among the models' ``aliases``: an exact alias
first, then the glob patterns, the most specific first (the most characters that are
not wildcards; on a tie the pattern that comes first in the file). Model and provider
ids always win over a pattern that also matches them. Every face (chat completions,
Anthropic Messages, ...) resolves names here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from fnmatch import fnmatchcase

from lai.config.models import (
    GLOB_CHARS,
    ModelConfig,
    ModelKind,
    ProviderConfig,
    Settings,
    is_glob,
)
from lai.engine.requests import ChatShape
from lai.engine.types import RequestContext
from lai.errors import (
    ContextLengthExceeded,
    InvalidRequest,
    ModelNotFound,
    NoHealthyProvider,
    PermissionDenied,
)


@dataclass(frozen=True, slots=True)
class Candidate:
    provider: ProviderConfig
    model: ModelConfig


_RESOLVED = 1024
"""Names ``Catalog.explicit`` keeps resolved; past this many it starts over."""


class Catalog:
    """The configured providers and models, indexed for resolution."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.providers = {p.id: p for p in settings.providers}
        self.by_provider: dict[str, list[ModelConfig]] = {p.id: [] for p in settings.providers}
        for m in settings.models:
            self.by_provider[m.provider_id].append(m)
        for models in self.by_provider.values():
            # The default model first, then the file's order.
            models.sort(key=lambda m: not m.is_default)
        self.exact_aliases: dict[str, str] = {}
        """Exact alias -> model id."""
        globs: list[tuple[str, str]] = []
        for m in settings.models:
            for alias in m.aliases:
                if is_glob(alias):
                    globs.append((alias, m.id))
                else:
                    self.exact_aliases.setdefault(alias, m.id)
        # Most specific first; sorted() is stable, so ties keep the file's order.
        self.glob_aliases: list[tuple[str, str]] = sorted(
            dict.fromkeys(globs), key=lambda g: -sum(c not in GLOB_CHARS for c in g[0])
        )
        """(pattern, model id), the most specific pattern first."""
        self._explicit: dict[tuple[str, ModelKind], list[Candidate]] = {}

    def alias_target(self, name: str) -> str | None:
        """The model id an alias names (exact aliases before patterns), or None."""
        target = self.exact_aliases.get(name)
        if target is not None:
            return target
        for pattern, model_id in self.glob_aliases:
            if fnmatchcase(name, pattern):
                return model_id
        return None

    def default_model(self, provider_id: str) -> ModelConfig | None:
        models = self.by_provider.get(provider_id) or []
        return models[0] if models else None

    def lookup(self, name: str, kind: ModelKind = "chat") -> list[Candidate]:
        """Pairs that ``name`` names directly (no fallbacks); empty when unknown. A
        provider id names its default model, or for ``kind`` embedding its first
        embedding model."""
        if "/" in name:
            pid, _, mid = name.partition("/")
            for m in self.by_provider.get(pid, ()):
                if m.id == mid:
                    return [Candidate(self.providers[pid], m)]
            # A provider id that itself contains no slash but a model id that does.
        found = [
            Candidate(self.providers[m.provider_id], m)
            for m in self.settings.models
            if m.id == name
        ]
        if found:
            return sorted(found, key=lambda c: c.provider.priority)
        if name in self.providers:
            model = self.default_model(name)
            if kind == "embedding":
                model = next((m for m in self.by_provider[name] if m.kind == kind), model)
            return [Candidate(self.providers[name], model)] if model else []
        target = self.alias_target(name)
        if target is not None:
            return self.lookup(target, kind)
        return []

    def explicit(self, name: str, kind: ModelKind = "chat") -> list[Candidate]:
        """``name`` and then its fallbacks, without repeats. Raises ModelNotFound."""
        # Resolved once per name: the catalog never changes (a reload makes a new one).
        # Names are the clients' (a glob alias matches endless ones): the cache is bounded.
        key = (name, kind)
        found = self._explicit.get(key)
        if found is None:
            found = self._resolve(name, kind)
            if len(self._explicit) >= _RESOLVED:
                self._explicit.clear()
            self._explicit[key] = found
        return list(found)

    def _resolve(self, name: str, kind: ModelKind) -> list[Candidate]:
        direct = self.lookup(name, kind)
        if not direct:
            known = ", ".join(["auto", *sorted({m.id for m in self.settings.models})])
            raise ModelNotFound(
                f"The model '{name}' does not exist. Known models: {known}.", param="model"
            )
        out: list[Candidate] = []
        queue = list(direct)
        seen: set[tuple[str, str]] = set()
        while queue:
            cand = queue.pop(0)
            key = (cand.provider.id, cand.model.id)
            if key in seen:
                continue
            seen.add(key)
            out.append(cand)
            for fb in cand.model.fallbacks:
                queue.extend(self.lookup(fb, kind))
        return out


def _fits(model: ModelConfig, shape: ChatShape) -> bool:
    return shape.prompt_tokens + shape.max_tokens <= model.context_window


def may_use(provider_id: str, model_id: str, allowed: frozenset[str] | None) -> bool:
    """Whether a key limited to ``allowed`` (model ids, ``provider/model`` or provider
    ids; None for no limit) may use this model on this provider."""
    if allowed is None:
        return True
    return (model_id in allowed or f"{provider_id}/{model_id}" in allowed
            or provider_id in allowed)


def _allowed(cand: Candidate, ctx: RequestContext) -> bool:
    return may_use(cand.provider.id, cand.model.id, ctx.allowed_models)


def _wrong_kind(model_id: str, kind: ModelKind) -> str:
    if kind == "embedding":
        return (f"The model '{model_id}' is a chat model; embeddings need a model with "
                f"kind = \"embedding\".")
    return (f"The model '{model_id}' is an embedding model (kind = \"embedding\"); send "
            f"it POST /v1/embeddings, or ask a chat model.")


def plan(
    catalog: Catalog,
    shape: ChatShape,
    ctx: RequestContext,
    *,
    usable: Callable[[str], bool],
    status: Callable[[str], str],
    warm: Callable[[str, str], bool],
    kind: ModelKind = "chat",
) -> list[Candidate]:
    """The ordered candidates for a request served by models of ``kind``.

    Raises ModelNotFound (404), PermissionDenied (403), InvalidRequest (400, images for a
    model without vision, a model of the other kind), ContextLengthExceeded (400) or
    NoHealthyProvider (503).
    """
    settings = catalog.settings
    if shape.model == "auto":
        pool: list[Candidate] = []
        for p in sorted(settings.providers, key=lambda p: p.priority):
            if p.is_cloud and not settings.server.cloud_fallback:
                continue
            for m in catalog.by_provider[p.id]:
                if m.kind == kind:
                    pool.append(Candidate(p, m))
        if not pool:
            what = "embedding models" if kind == "embedding" else "'auto' traffic"
            raise NoHealthyProvider(f"No provider is configured for {what}.")
        pool = [c for c in pool if _allowed(c, ctx)]
        if not pool:
            raise PermissionDenied("This API key may not use any model that 'auto' can pick.")
    else:
        pool = catalog.explicit(shape.model, kind)
        if pool[0].model.kind != kind:
            raise InvalidRequest(_wrong_kind(pool[0].model.id, kind), param="model")
        pool = [c for c in pool if c.model.kind == kind]
        if not _allowed(pool[0], ctx):
            raise PermissionDenied(
                f"This API key may not use the model '{shape.model}'.", param="model"
            )
        pool = [c for c in pool if _allowed(c, ctx)]
        if shape.has_images and not pool[0].model.capabilities.vision:
            raise InvalidRequest(
                f"The model '{pool[0].model.id}' does not accept images "
                f"(capabilities.vision is false). Use a vision model or model 'auto'.",
                param="model",
            )

    if ctx.local_only:
        clouds = sorted({c.provider.id for c in pool if c.provider.is_cloud})
        pool = [c for c in pool if not c.provider.is_cloud]
        if not pool:
            raise PermissionDenied(
                f"This API key is local-only (scope 'local-only'): it never reaches a "
                f"cloud provider, and '{shape.model}' could only be served by "
                f"{', '.join(clouds)}.", param="model",
            )
    if shape.has_images:
        pool = [c for c in pool if c.model.capabilities.vision]
        if not pool:
            raise InvalidRequest(
                "The request carries images but no model with capabilities.vision is "
                "configured for it.", param="messages",
            )
    fitting = [c for c in pool if _fits(c.model, shape)]
    if not fitting:
        largest = max(c.model.context_window for c in pool)
        raise ContextLengthExceeded(
            f"The prompt (about {shape.prompt_tokens} tokens) plus max_tokens "
            f"({shape.max_tokens}) does not fit the context window of any eligible model "
            f"(largest: {largest} tokens).", param="messages",
        )
    live = [c for c in fitting if usable(c.provider.id)]
    if not live:
        why = "; ".join(
            sorted({f"{c.provider.id}: {status(c.provider.id)}" for c in fitting})
        )
        raise NoHealthyProvider(f"No healthy provider can serve this request ({why}).")
    if shape.model == "auto":
        # One model per provider: the first in its list that fits, warm ones first.
        by_provider: dict[str, list[Candidate]] = {}
        for c in live:
            by_provider.setdefault(c.provider.id, []).append(c)
        chosen = []
        for cands in by_provider.values():
            warm_ones = [c for c in cands if warm(c.provider.id, c.model.id)]
            chosen.append((warm_ones or cands)[0])
        # Stable: priority first, then warm before cold, then config order.
        chosen.sort(key=lambda c: (c.provider.priority, not warm(c.provider.id, c.model.id)))
        return chosen
    return live
