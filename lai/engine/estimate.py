"""How long a request would wait for its first token on each candidate.

For a candidate (provider, model) and a request of ``prompt_tokens``::

    wait    = max(0, in flight + waiting - max_concurrent + 1) x service / max_concurrent
    load    = the model's load_seconds when it is cold (not warm, not in flight; the
              only model of a provider that sets no load_seconds is never cold)
    prefill = prompt tokens not in the server's prefix cache / prefill tokens per second
    total   = wait + load + prefill

``in flight`` counts the provider's requests holding a slot, ``waiting`` the queued
requests that would be served before this one. ``service`` is the EWMA of how long a
request on that provider held its slot (from slot taken to the last byte), over all its
models: the requests ahead are anyone's, a batch's long summaries as much as a chat's
short answers (when the model's own ``max_concurrent`` binds, the model's own EWMA).
The prefill rate is the EWMA of prompt tokens per second of time to first token for
that model on that provider; for a model it has not measured yet, the provider's over
its other models (the same GPU), before any the guess below. Both come from lai's own
traffic (requests on a cold model are left out: their time was the load). Before any
traffic the guesses below are used.

A cold model on a provider where another model is warm also costs a swap back later:
``swap_s`` (its load_seconds again) is added to the rank candidates are ordered by, not
to the time to first token.

Nothing here waits or touches the network; ``Estimator`` is fed by the engine.
"""

from __future__ import annotations

from dataclasses import dataclass

from lai.config.models import ModelConfig, ProviderConfig

ALPHA = 0.3
"""Weight of the newest observation in each EWMA."""
DEFAULT_SERVICE_S = {"local": 8.0, "cloud": 6.0}
"""A request's service time before the first one finished: about 300 tokens at 40 per
second on a home GPU; a cloud API answers faster but waits on the network."""
DEFAULT_PREFILL_TPS = {"local": 1000.0, "cloud": 2000.0}
"""Prompt tokens per second of prefill before any streamed request measured it: a 14B
model on one consumer GPU does 1-3 thousand; a cloud API about twice that."""
DEFAULT_LOAD_S = {"local": 10.0, "cloud": 0.0}
"""``load_seconds`` of a model that does not set it: loading a 7-14B model from an NVMe
disk into a GPU takes 5-15 s (Ollama, llama-swap); a cloud model is always loaded."""
MIN_PREFILL_S = 0.05
"""Shorter times to first token say nothing about prefill (network, a tiny prompt)."""


def _kind(provider: ProviderConfig) -> str:
    return "cloud" if provider.is_cloud else "local"


def load_seconds(provider: ProviderConfig, model: ModelConfig) -> float:
    """What loading ``model`` costs when it is cold: its ``load_seconds`` or the default."""
    if model.load_seconds is not None:
        return model.load_seconds
    return DEFAULT_LOAD_S[_kind(provider)]


@dataclass(frozen=True, slots=True)
class Estimate:
    """Expected seconds to the first token on one candidate, and why."""

    wait_s: float
    """Until a slot is free."""
    load_s: float
    """Loading the model (0 when it is warm)."""
    prefill_s: float
    """Reading the prompt (less what the server's prefix cache already holds)."""
    reason: str
    swap_s: float = 0.0
    """Loading the model evicts another warm one: what swapping it back will cost."""
    guessed: bool = False
    """The prefill rate is the built-in guess: lai has measured none on this provider."""

    @property
    def untried(self) -> bool:
        """A free slot and a loaded model, and only the guess says it is slow: the
        choice treats it as expected at once (otherwise a box never tried is never
        measured, and a lower priority, a paid cloud, serves its traffic for good)."""
        return self.guessed and self.wait_s == 0 and self.load_s == 0

    @property
    def total_s(self) -> float:
        """Expected time to the first token."""
        return self.wait_s + self.load_s + self.prefill_s

    @property
    def rank_s(self) -> float:
        """What candidates are ordered by: the time to first token plus a swap's cost."""
        return self.total_s + self.swap_s


@dataclass(slots=True)
class _Ewma:
    service_s: float | None = None
    prefill_tps: float | None = None
    served: int = 0


def _mix(old: float | None, new: float) -> float:
    return new if old is None else old + ALPHA * (new - old)


class Estimator:
    """EWMAs of service time and prefill rate per provider and model."""

    def __init__(self) -> None:
        self._stats: dict[tuple[str, str], _Ewma] = {}
        self._providers: dict[str, _Ewma] = {}
        """Per provider, over all its models."""

    def observe(self, provider_id: str, model_id: str, *, service_s: float,
                prompt_tokens: int, prefill_s: float | None) -> None:
        """A request on a warm model held its slot ``service_s`` seconds; for a stream,
        its first token came ``prefill_s`` after it took the slot."""
        for stat in (self._stats.setdefault((provider_id, model_id), _Ewma()),
                     self._providers.setdefault(provider_id, _Ewma())):
            stat.service_s = _mix(stat.service_s, max(0.0, service_s))
            stat.served += 1
            if prefill_s is not None and prefill_s >= MIN_PREFILL_S and prompt_tokens > 0:
                stat.prefill_tps = _mix(stat.prefill_tps, prompt_tokens / prefill_s)

    def forget(self, provider_id: str) -> None:
        """Drop what was learnt about a provider (a reload removed or changed it)."""
        for key in [k for k in self._stats if k[0] == provider_id]:
            del self._stats[key]
        self._providers.pop(provider_id, None)

    def service_s(self, provider: ProviderConfig, model: ModelConfig) -> float:
        stat = self._stats.get((provider.id, model.id))
        if stat is not None and stat.service_s is not None:
            return stat.service_s
        return DEFAULT_SERVICE_S[_kind(provider)]

    def provider_service_s(self, provider: ProviderConfig, model: ModelConfig) -> float:
        """How long a request on ``provider`` held its slot, whatever its model; the
        model's own figure (or guess) before the provider served any."""
        stat = self._providers.get(provider.id)
        if stat is not None and stat.service_s is not None:
            return stat.service_s
        return self.service_s(provider, model)

    def measured_prefill(self, provider: ProviderConfig, model: ModelConfig) -> bool:
        """Whether a prefill rate was measured for the model or its provider."""
        return any(stat is not None and stat.prefill_tps is not None
                   for stat in (self._stats.get((provider.id, model.id)),
                                self._providers.get(provider.id)))

    def prefill_tps(self, provider: ProviderConfig, model: ModelConfig) -> float:
        for stat in (self._stats.get((provider.id, model.id)),
                     self._providers.get(provider.id)):
            if stat is not None and stat.prefill_tps is not None:
                return stat.prefill_tps
        return DEFAULT_PREFILL_TPS[_kind(provider)]

    def estimate(
        self,
        provider: ProviderConfig,
        model: ModelConfig,
        *,
        prompt_tokens: int,
        in_flight: int,
        waiting: int,
        capacity: int,
        warm: bool,
        evicts: bool = False,
        cached_tokens: int = 0,
        model_bound: bool = False,
    ) -> Estimate:
        """The estimate for one candidate. ``warm``: the model is loaded (or serving);
        ``evicts``: loading it would push out another model that is warm there;
        ``cached_tokens``: prompt tokens the server likely holds in its prefix cache
        (this conversation's last turn went there); ``model_bound``: ``in_flight`` and
        ``capacity`` are the model's own (its ``max_concurrent`` binds), so the wait is
        for requests of this model."""
        service = (self.service_s(provider, model) if model_bound
                   else self.provider_service_s(provider, model))
        capacity = max(1, capacity)
        ahead = in_flight + waiting - capacity + 1
        wait = max(0, ahead) * service / capacity
        load = 0.0 if warm else load_seconds(provider, model)
        fresh = max(0, prompt_tokens - cached_tokens)
        prefill = fresh / self.prefill_tps(provider, model)
        swap = load if evicts and not warm else 0.0
        parts = [f"{provider.id}/{model.id}"]
        if ahead > 0:
            parts.append(f"wait {wait:.1f}s ({in_flight + waiting} ahead, "
                         f"{service:.1f}s each / {capacity})")
        else:
            parts.append("free slot")
        parts.append("warm" if warm else f"cold +{load:.1f}s load")
        if swap:
            parts.append("evicts a warm model")
        if cached_tokens:
            parts.append(f"{min(cached_tokens, prompt_tokens)} tokens cached")
        guessed = fresh > 0 and not self.measured_prefill(provider, model)
        parts.append(f"prefill {prefill:.1f}s" + (" (guessed)" if guessed else ""))
        return Estimate(wait, load, prefill, ", ".join(parts), swap, guessed)
