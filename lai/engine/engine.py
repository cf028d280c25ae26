"""The routing engine: picks a provider, holds its slot, calls it, fails over, reports.

    engine = Engine(settings, client, clock=SystemClock())
    await engine.start()                      # health checks
    done = await engine.complete(body, ctx)   # non-streamed: Completion
    stream = await engine.stream(body, ctx)   # streamed: first byte already there
    async for event_bytes in stream: ...      # SSE bytes for the client
    await stream.aclose()                     # always; frees the slot

Failures (DESIGN.md "Routing behaviour"): connection refused/reset before any byte fails
over at once; 429/5xx is retried once after ``retry_delay`` (or the upstream's
Retry-After up to ``max_retry_after``), then fails over; a read timeout is a 504 with no
retry. A stream fails over only until its first event is in hand; after that a failure
ends it with an error event.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, cast

import httpx

from lai.config.models import Settings
from lai.engine import discovery, reconfigure
from lai.engine.adapters import adapter_for
from lai.engine.adapters.base import Adapter, UpstreamRequest
from lai.engine.choice import Route, choose
from lai.engine.clock import Clock, SystemClock
from lai.engine.cost import request_cost
from lai.engine.embeddings import embed
from lai.engine.estimate import Estimate, Estimator
from lai.engine.events import EventBus, Failover, QueueChanged, RequestFinished, RequestStarted
from lai.engine.failures import FailureLog
from lai.engine.health import HealthMonitor, ProviderState, auto_status, describe_http_error
from lai.engine.jsonbytes import members, splice
from lai.engine.reconfigure import provider_timeout
from lai.engine.redact import Redactor, secrets_of
from lai.engine.requests import ChatShape, inspect_chat
from lai.engine.routing import Candidate, Catalog, may_use, plan
from lai.engine.run import (
    CONNECT_FAILURES,
    TIMEOUTS,
    AdapterChoice,
    ProviderFailed,
    Run,
    billed_seconds,
)
from lai.engine.slots import SlotManager, model_capacities, model_key
from lai.engine.sticky import StickyMap, conversation_names
from lai.engine.streaming import EngineStream
from lai.engine.types import (
    Completion,
    InFlight,
    ProviderSnapshot,
    Queued,
    RequestContext,
    Usage,
)
from lai.errors import (
    LaiError,
    NotFound,
    UpstreamError,
    UpstreamPoolExhausted,
    UpstreamRejected,
    UpstreamTimeout,
)
from lai.transport import Answer, Streamed, open_stream
from lai.transport import post as upstream_post

log = logging.getLogger("lai.engine")

PATIENCE_SLACK_S = 1.0
"""Seconds a request waits past its estimate before the candidates held back join."""

ImageResolver = Callable[[list[dict[str, Any]]], Awaitable[list[dict[str, Any]]]]
"""Turns messages carrying ``image_refs`` into messages with base64 ``image_url`` parts.
Raises InvalidRequest for a reference it cannot read."""


class Engine:
    """Routes chat requests over the configured providers. See the module docstring."""

    def __init__(
        self,
        settings: Settings,
        client: httpx.AsyncClient,
        *,
        clock: Clock | None = None,
        retry_delay: float = 1.0,
        max_retry_after: float = 10.0,
        pool_timeout: float = 30.0,
        image_resolver: ImageResolver | None = None,
    ) -> None:
        self.settings = settings
        self.client = client
        self.clock = clock or SystemClock()
        self.retry_delay = retry_delay
        self.max_retry_after = max_retry_after
        self.image_resolver = image_resolver
        self.catalog = Catalog(settings)
        self.redact = Redactor.for_settings(settings)
        """Applied to every upstream message before a client, the store or a log sees it."""
        self.events = EventBus()
        self.failures = FailureLog()
        """The last failures, for the operator (GET /admin/failures, the TUI board)."""
        self.events.subscribe(self.failures.observe)
        self.states = {p.id: ProviderState(p, p.enabled) for p in settings.providers}
        self.slots = SlotManager(
            {p.id: p.max_concurrent for p in settings.providers},
            queue_max_size=settings.server.queue_max_size,
            model_capacities=model_capacities(settings),
            on_queue_change=self._queue_changed,
            scheduling=settings.server.scheduling,
        )
        self.health = HealthMonitor(self.states, client, self.clock, self.events,
                                    self.slots.in_flight)
        self.pool_timeout = pool_timeout
        self.timeouts = {p.id: provider_timeout(p, pool_timeout) for p in settings.providers}
        """Per provider; a reload replaces entries, keeping those of removed providers
        for the requests still in flight on them."""
        self._running: dict[str, Run] = {}
        self._urls: dict[str, httpx.URL] = {}
        self.admit: Callable[[RequestContext], Awaitable[None]] | None = None
        """Checked before a request is queued (a key's rpm, tpm and budgets); raises a
        LaiError to refuse it. Set by the runtime."""
        self.estimator = Estimator()
        """Service times and prefill rates learnt from the traffic (``lai.engine.estimate``)."""
        self.sticky = StickyMap()
        """The provider of each conversation's last turn (``lai.engine.sticky``)."""

    # ----------------------------------------------------------------- lifecycle

    async def start(self) -> None:
        """Start the background health checks."""
        self.health.start()

    async def close(self) -> None:
        """Stop the health checks. In-flight requests are the caller's to finish."""
        await self.health.stop()

    # ----------------------------------------------------------------- state

    def _state(self, provider_id: str) -> ProviderState:
        # A provider a reload removed keeps its state until it drains, but is gone.
        if provider_id not in self.catalog.providers:
            raise NotFound(f"No provider with id '{provider_id}'.")
        return self.states[provider_id]

    def reload(self, settings: Settings) -> list[str]:
        """Serve ``settings`` from now on (``lai.engine.reconfigure``); requests in flight
        finish on what they started with. Returns one line per change."""
        changes = reconfigure.apply(self, settings)
        self.redact.add(secrets_of(settings))
        for line in changes:
            log.info("config reloaded: %s", line)
        return changes

    def is_warm(self, provider_id: str, model_id: str) -> bool:
        """Whether the model is ready to answer without loading first. When the server
        reports what it has loaded (a ``server`` hint), that decides, except that a model
        that served a request since the last poll is warm at once (the next poll
        corrects it); otherwise a model is warm for ``warm_timeout`` s after it served."""
        state = self.states[provider_id]
        used = state.warm.get(model_id)
        loaded = self.is_loaded(provider_id, model_id)
        if loaded is not None:
            return loaded or (used is not None and state.loaded_at is not None
                              and used >= state.loaded_at)
        return used is not None and (
            self.clock.monotonic() - used <= self.settings.server.warm_timeout
        )

    def is_loaded(self, provider_id: str, model_id: str) -> bool | None:
        """Whether the provider's server reports the model loaded; None when it does
        not say (no ``server`` hint that discovers, no answer yet, a bad answer)."""
        state = self.states[provider_id]
        if state.loaded is None or discovery.kind_of(state.config) is None:
            return None
        model = next((m for m in self.catalog.by_provider.get(provider_id, [])
                      if m.id == model_id), None)
        if model is None:
            return None
        return discovery.is_loaded(state.config, state.loaded, model.upstream_name)

    def provider(self, provider_id: str) -> ProviderSnapshot:
        """One provider's live state. Raises NotFound."""
        s = self._state(provider_id)
        models = tuple(m.id for m in self.catalog.by_provider[provider_id])
        return ProviderSnapshot(
            id=s.config.id, name=s.config.display_name, type=s.config.type, status=s.status,
            enabled=s.enabled, priority=s.config.priority,
            active_requests=self.slots.in_flight[provider_id],
            max_concurrent=s.config.max_concurrent,
            queue_depth=self.slots.queue_depth_for(provider_id),
            latency_ms=None if s.latency_ms is None else round(s.latency_ms, 1),
            last_check=s.last_check, consecutive_failures=s.consecutive_failures,
            last_error=s.last_error, models=models,
            warm_models=tuple(m for m in models if self.is_warm(provider_id, m)),
            server=s.config.server,
            loaded_models=None if s.loaded is None else tuple(sorted(s.loaded)),
            load=s.load,
        )

    def providers(self) -> list[ProviderSnapshot]:
        """Every provider's live state, by priority."""
        ordered = sorted(self.settings.providers, key=lambda p: p.priority)
        return [self.provider(p.id) for p in ordered]

    def models(self, allowed: frozenset[str] | None = None) -> list[dict[str, Any]]:
        """The model list of GET /v1/models (``auto`` first); with ``allowed`` (a key's
        model list) only the models that key may use."""
        now = int(self.clock.time())
        live = [s for pid, s in self.states.items() if pid in self.catalog.providers]
        auto = auto_status(live,
                           cloud_fallback=self.settings.server.cloud_fallback)
        out: list[dict[str, Any]] = [{
            "id": "auto", "object": "model", "created": now, "owned_by": "lai",
            "provider": None, "status": auto,
            "warm": any(self.is_warm(m.provider_id, m.id) for m in self.settings.models),
            "loaded": _any_known(self.is_loaded(m.provider_id, m.id)
                                 for m in self.settings.models),
        }]
        for m in self.settings.models:
            if not may_use(m.provider_id, m.id, allowed):
                continue
            state = self.states[m.provider_id]
            out.append({
                "id": m.id, "object": "model", "created": now, "owned_by": m.provider_id,
                "name": m.display_name, "provider": m.provider_id, "kind": m.kind,
                "status": state.status,
                "warm": self.is_warm(m.provider_id, m.id),
                "loaded": self.is_loaded(m.provider_id, m.id),
                "context_window": m.context_window, "max_tokens": m.max_tokens,
                "capabilities": m.capabilities.model_dump(), "tags": list(m.tags),
                "aliases": list(m.aliases),
            })
        return out

    def in_flight(self) -> list[InFlight]:
        """Requests holding a slot right now."""
        out = []
        for run in self._running.values():
            if run.candidate is None:
                continue
            tokens = run.stream_state.content_events if run.stream_state else 0
            out.append(InFlight(run.ctx.request_id, run.ctx.key_name, run.candidate.model.id,
                                run.candidate.provider.id, run.started_at, run.shape.stream,
                                tokens))
        return out

    def queued(self) -> list[Queued]:
        """Requests waiting for a slot, in the order they will be served."""
        now = self.clock.monotonic()
        out = []
        ahead: dict[str, int] = {}
        for label, priority, position in self.slots.waiting():
            ctx, model, since, t, cands = cast(
                tuple[RequestContext, str, float, float, tuple[Candidate, ...]], label)
            start = min((self._start_estimate(c, ahead.get(c.provider.id, 0))
                         for c in cands), default=None)
            for pid in {c.provider.id for c in cands}:
                ahead[pid] = ahead.get(pid, 0) + 1
            out.append(Queued(ctx.request_id, ctx.key_name, model, priority, position, since,
                              (now - t) * 1000, ctx.conversation_id,
                              None if start is None else start * 1000))
        return out

    def _queue_changed(self, depth: int) -> None:
        waiting = tuple(cast(tuple[RequestContext, ...], label)[0].request_id
                        for label, _, _ in self.slots.waiting())
        self.events.emit(QueueChanged(depth, self.clock.time(), waiting))

    def _start_estimate(self, cand: Candidate, ahead: int) -> float:
        """Seconds until a request with ``ahead`` waiters before it gets a slot on
        ``cand``'s provider."""
        pid = cand.provider.id
        service = self.estimator.provider_service_s(cand.provider, cand.model)
        capacity = max(1, self.slots.capacity.get(pid, 0))
        queued = self.slots.in_flight.get(pid, 0) + ahead - capacity + 1
        return max(0, queued) * service / capacity

    # ----------------------------------------------------------------- choosing

    def _loaded(self, provider_id: str, model_id: str, *, others: int = 0) -> bool:
        """Warm (``is_warm``), serving more than ``others`` requests right now, or the
        only model of its provider that does not set ``load_seconds`` (a server with one
        model keeps it loaded; with several it may have to swap)."""
        if self.is_warm(provider_id, model_id):
            return True
        if self.slots.model_in_flight.get(model_key(provider_id, model_id), 0) > others:
            return True
        models = self.catalog.by_provider.get(provider_id, ())
        return len(models) == 1 and models[0].id == model_id and models[0].load_seconds is None

    def estimate(self, cand: Candidate, shape: ChatShape, *, waiting: int,
                 cached_tokens: int = 0) -> Estimate:
        """The expected time to first token of a request of ``shape`` on ``cand`` now,
        queued behind ``waiting`` waiters that would be served before it
        (``SlotManager.ahead_for``: under ``fair``, keys take turns)."""
        pid, mid = cand.provider.id, cand.model.id
        warm = self._loaded(pid, mid)
        evicts = not warm and any(self._loaded(pid, m.id)
                                  for m in self.catalog.by_provider.get(pid, ()) if m.id != mid)
        in_flight = self.slots.in_flight.get(pid, 0)
        capacity = self.slots.capacity.get(pid, cand.provider.max_concurrent)
        cap = cand.model.max_concurrent
        model_bound = False
        if cap is not None:  # the model's own cap may be the one that binds
            mine = self.slots.model_in_flight.get(model_key(pid, mid), 0)
            if mine - cap > in_flight - capacity:
                in_flight, capacity, model_bound = mine, cap, True
        return self.estimator.estimate(
            cand.provider, cand.model, prompt_tokens=shape.prompt_tokens,
            in_flight=in_flight,
            waiting=waiting,
            capacity=capacity, warm=warm, evicts=evicts, cached_tokens=cached_tokens,
            model_bound=model_bound,
        )

    def _route(self, run: Run, candidates: list[Candidate]) -> Route:
        """Scheduling ``fair``: estimates, then ``lai.engine.choice.choose``."""
        server = self.settings.server
        names, continues = conversation_names(run.ctx.conversation_id,
                                              run.body.get("messages") or ())
        run.conversation = names
        last = self.sticky.last(names) if continues else None
        ahead = self.slots.ahead_for([c.provider.id for c in candidates],
                                     priority=run.ctx.priority, key=run.ctx.key_name)
        estimates = [
            self.estimate(c, run.shape, waiting=ahead[c.provider.id],
                          cached_tokens=(last.tokens if last is not None
                                         and last.provider_id == c.provider.id else 0))
            for c in candidates
        ]
        spill = run.ctx.spill_after if run.ctx.spill_after is not None else server.spill_after
        return choose(candidates, estimates, auto=run.shape.model == "auto",
                      prefer_within=server.prefer_priority_within, spill_after=spill,
                      sticky=last.provider_id if last is not None else None,
                      sticky_within=server.sticky_within)

    def set_enabled(self, provider_id: str, enabled: bool) -> ProviderSnapshot:
        """Enable or disable a provider at run time (not written to the config file).

        Disabling stops new traffic; requests in flight finish. Raises NotFound.
        """
        state = self._state(provider_id)
        old = state.status
        state.enabled = enabled
        log.info("provider %s %s", provider_id, "enabled" if enabled else "disabled")
        self.health.notify_toggle(provider_id, old)
        return self.provider(provider_id)

    async def check(self, provider_id: str) -> ProviderSnapshot:
        """Probe a provider now, even if busy or disabled. Raises NotFound."""
        self._state(provider_id)
        await self.health.probe(provider_id)
        return self.provider(provider_id)

    # ----------------------------------------------------------------- requests

    async def _begin(self, body: Any, ctx: RequestContext,
                     adapters: AdapterChoice | None = None) -> tuple[Run, list[Candidate]]:
        started_at, t0 = self.clock.time(), self.clock.monotonic()
        shape = inspect_chat(body)
        candidates = plan(
            self.catalog, shape, ctx,
            usable=lambda pid: self.states[pid].usable,
            status=lambda pid: self.states[pid].status,
            warm=self.is_warm,
        )
        if self.admit is not None:
            await self.admit(ctx)
        upstream_body = body
        messages = body["messages"]
        if any("image_refs" in m for m in messages):
            if self.image_resolver is not None:
                messages = await self.image_resolver(messages)
            messages = [{k: v for k, v in m.items() if k != "image_refs"} for m in messages]
            upstream_body = {**body, "messages": messages}
        run = Run(ctx, shape, body, upstream_body, started_at, t0, adapters=adapters)
        if self.settings.server.scheduling == "fair":
            # Under fifo nothing reads the sticky map: no fingerprint, nothing remembered.
            run.route = self._route(run, candidates)
            candidates = run.route.candidates
        return run, candidates

    async def _acquire(self, run: Run, remaining: list[Candidate],
                       patience: float | None = None) -> Candidate:
        """A slot on one of ``remaining``; with ``patience``, TimeoutError after that
        many seconds (the queue place is given back)."""
        if len(remaining) == 1:  # one provider serves the model: the common case
            only = remaining[0].provider.id
            pids, models = [only], {only: model_key(only, remaining[0].model.id)}
        else:
            pids = list(dict.fromkeys(c.provider.id for c in remaining))
            # A provider id stands for its first candidate (as returned below).
            models = {}
            for c in remaining:
                models.setdefault(c.provider.id, model_key(c.provider.id, c.model.id))
        waited = run.queue_ms / 1000
        t = self.clock.monotonic()
        ctx = run.ctx
        try:
            pid = self.slots.try_acquire(pids, key=ctx.key_name, limits=ctx.quota,
                                         models=models)
            if pid is None:
                run.queued = True
                waiting = self.slots.acquire(
                    pids, priority=ctx.priority,
                    timeout=max(0.001, self.settings.server.queue_timeout - waited),
                    label=(ctx, run.shape.model, self.clock.time(), t, tuple(remaining)),
                    key=ctx.key_name,
                    limits=ctx.quota,
                    models=models,
                )
                if patience is None:
                    pid = await waiting
                else:
                    pid = await asyncio.wait_for(waiting, patience)
        finally:
            run.queue_ms += (self.clock.monotonic() - t) * 1000
        return remaining[0] if len(remaining) == 1 else next(
            c for c in remaining if c.provider.id == pid)

    def _release(self, run: Run, cand: Candidate) -> None:
        self.slots.release(cand.provider.id, key=run.ctx.key_name,
                           model=model_key(cand.provider.id, cand.model.id))

    async def _serve(self, run: Run, candidates: list[Candidate], attempt: Any) -> Any:
        """Try candidates in order until one answers; the winner keeps its slot."""
        remaining = list(candidates)
        reserve = list(run.route.reserve) if run.route is not None else []
        self._running[run.ctx.request_id] = run
        while remaining or reserve:
            if not remaining:  # every preferred candidate failed: the held-back ones
                remaining, reserve = reserve, []
            try:
                cand = await self._acquire(run, remaining, self._patience(run, reserve))
            except TimeoutError:
                # Waited well past the estimate: wait on the held-back candidates too.
                log.debug("request %s: waited %.1f s, past its estimate; now also on %s",
                          run.ctx.request_id, run.queue_ms / 1000,
                          ", ".join(dict.fromkeys(c.provider.id for c in reserve)))
                remaining, reserve = remaining + reserve, []
                run.replanned_after_ms = run.queue_ms
                continue
            pid = cand.provider.id
            if not self.states[pid].usable:  # disabled or failed while we queued
                self._release(run, cand)
                remaining = [c for c in remaining if c.provider.id != pid]
                reserve = [c for c in reserve if c.provider.id != pid]
                run.failures.append((pid, self.states[pid].status))
                continue
            self._took(run, cand)
            run.candidate = cand
            self.events.emit(RequestStarted(run.ctx, run.shape.model, cand.model.id, pid,
                                            run.shape.stream, self.clock.time(), run.queue_ms))
            try:
                return await attempt(run, cand)
            except ProviderFailed as exc:
                self._release(run, cand)
                run.candidate = None
                reason = self.redact(exc.reason)
                self.health.record_failure(pid, reason)
                run.failures.append((pid, reason))
                remaining = [c for c in remaining if c.provider.id != pid]
                reserve = [c for c in reserve if c.provider.id != pid]
                nxt = (remaining or reserve)[0].provider.id if remaining or reserve else None
                log.warning("request %s: %s failed (%s); failing over to %s",
                            run.ctx.request_id, pid, reason, nxt or "nothing")
                self.events.emit(Failover(run.ctx, pid, nxt, reason, self.clock.time()))
            except BaseException:
                self._release(run, cand)
                raise
        tried = "; ".join(f"{pid}: {why}" for pid, why in run.failures)
        raise UpstreamError(f"Every eligible provider failed ({tried}).")

    def _patience(self, run: Run, reserve: list[Candidate]) -> float | None:
        """How long to wait on the preferred candidates before the held-back ones join:
        the best estimate plus a second (the estimate was wrong by then: a request of a
        higher priority came in ahead, a box slowed down), but no longer than the bound
        that held them back (``Route.hold_s``: past ``spill_after`` the cloud joins);
        None (no limit) when nothing is held back or the queue timeout comes first."""
        if not reserve or run.route is None or not run.route.candidates:
            return None
        best = run.route.estimate_of(run.route.candidates[0])
        left = self.settings.server.queue_timeout - run.queue_ms / 1000
        expected = best.total_s if best else 0.0
        patience = expected + PATIENCE_SLACK_S
        if run.route.hold_s is not None:  # never past the bound that held them back
            patience = min(patience, max(expected, run.route.hold_s))
        return patience if patience < left else None

    def _took(self, run: Run, cand: Candidate) -> None:
        """A slot on ``cand`` is the request's: note its estimate and whether it is cold."""
        pid, mid = cand.provider.id, cand.model.id
        run.cold = not self._loaded(pid, mid, others=1)  # our own slot counts already
        if run.route is None:
            return
        run.estimate = run.route.estimate_of(cand)
        if run.estimate is not None and log.isEnabledFor(logging.DEBUG):
            log.debug("request %s: %s on %s, expected first token in %.1f s (%s%s)",
                      run.ctx.request_id, mid, pid, run.estimate.total_s,
                      run.estimate.reason, f"; {run.route.note}" if run.route.note else "")

    async def _retry_wait(self, run: Run, resp: httpx.Response | None) -> None:
        # The back-off counts as upstream time: the upstream's failure (or Retry-After)
        # caused it, and lai's own overhead (duration - upstream - queue) must not show it.
        delay = self.retry_delay
        header = resp.headers.get("retry-after") if resp is not None else None
        if header:
            try:
                delay = min(max(float(header), 0.0), self.max_retry_after)
            except ValueError:
                pass
        t = self.clock.monotonic()
        await self.clock.sleep(delay)
        run.upstream_ms += (self.clock.monotonic() - t) * 1000

    @staticmethod
    def _adapter(run: Run, cand: Candidate) -> Adapter:
        # A face may speak to some providers its own way (lai.engine.passthrough).
        if run.adapters is not None:
            return run.adapters(cand.provider)
        return adapter_for(cand.provider)

    def _rejected(self, run: Run, cand: Candidate, resp: httpx.Response | Answer | Streamed,
                  raw: bytes) -> LaiError:
        # Relayed to the client: an upstream refusing a key often quotes it.
        message = self.redact(self._adapter(run, cand).error_message(raw))
        return UpstreamRejected(
            f"{cand.provider.id} refused the request: {message}", status=resp.status_code
        )

    def _answer_model(self, run: Run, cand: Candidate) -> str:
        """The ``model`` an answer names: what the client asked for, or lai's model id
        when it asked for ``auto`` or a provider (never the upstream's own name)."""
        asked = run.shape.model
        if asked == "auto" or asked in self.catalog.providers:
            return cand.model.id
        return asked

    def _request(self, cand: Candidate, run: Run, stream: bool) -> UpstreamRequest:
        return self._adapter(run, cand).chat_request(
            cand.provider, cand.model, run.upstream_body, stream
        )

    def _url(self, url: str) -> httpx.URL:
        # Parsed once per upstream URL: httpx parses a str on every request (~25 us).
        parsed = self._urls.get(url)
        if parsed is None:
            parsed = self._urls[url] = httpx.URL(url)
        return parsed

    def _timeout_error(self, cand: Candidate, exc: Exception) -> UpstreamTimeout:
        p = cand.provider
        self.health.record_failure(p.id, describe_http_error(exc))
        return UpstreamTimeout(
            f"{p.id} sent nothing for {p.effective_read_timeout:g} s (read_timeout)."
        )

    def _pool_exhausted(self, cand: Candidate) -> UpstreamPoolExhausted:
        # lai's own limit, not the provider's fault: its health is left alone.
        pool = self.timeouts[cand.provider.id].pool
        log.warning("no free upstream connection for %s within %g s: lai's connection "
                    "pool is full", cand.provider.id, pool)
        return UpstreamPoolExhausted(
            f"lai has no free upstream connection for {cand.provider.id} right now "
            f"(its connection pool stayed full for {pool:g} s). Retry later.",
            retry_after=1,
        )

    # ----------------------------------------------------------------- non-streamed

    async def complete(self, body: Any, ctx: RequestContext, *,
                       adapters: AdapterChoice | None = None) -> Completion:
        """Serve a non-streamed chat request. ``adapters`` (a face's choice of adapter per
        provider; default ``adapter_for``) decides how each upstream is spoken to.

        Raises InvalidRequest, ModelNotFound, PermissionDenied, ContextLengthExceeded,
        CapacityExceeded, NoHealthyProvider, UpstreamPoolExhausted, UpstreamRejected,
        UpstreamError or UpstreamTimeout; every outcome is reported as a RequestFinished event.
        """
        run: Run | None = None
        try:
            run, candidates = await self._begin(body, ctx, adapters)
            return await self._serve(run, candidates, self._attempt_complete)
        except LaiError as exc:
            self._finish(run, body, ctx, error=exc)
            raise
        except asyncio.CancelledError:
            self._finish(run, body, ctx, error=None, cancelled=True)
            raise
        finally:
            if run is not None:
                self._running.pop(run.ctx.request_id, None)

    async def _attempt_complete(self, run: Run, cand: Candidate) -> Completion:
        pid = cand.provider.id
        req = self._request(cand, run, stream=False)
        adapter = self._adapter(run, cand)
        for attempt in (1, 2):
            t = self.clock.monotonic()
            try:
                # Not streamed, lai.transport.post reads the whole body and lets go of
                # the connection on any way out of it (cancellation included).
                resp = await upstream_post(self.client, self._url(req.url), req.content,
                                           req.headers, self.timeouts[pid])
            except httpx.PoolTimeout:
                raise self._pool_exhausted(cand) from None
            except TIMEOUTS as exc:
                raise self._timeout_error(cand, exc) from None
            except CONNECT_FAILURES as exc:
                raise ProviderFailed(describe_http_error(exc)) from None
            except httpx.HTTPError as exc:  # e.g. a body that does not decode (bad gzip)
                raise ProviderFailed(f"unreadable answer: {describe_http_error(exc)}") from None
            finally:
                run.upstream_ms += (self.clock.monotonic() - t) * 1000
            status = resp.status_code
            if status == 200:
                try:
                    parsed = adapter.parse_completion(resp.content, pid,
                                                      model=self._answer_model(run, cand))
                except ValueError as exc:
                    if attempt == 1:
                        await self._retry_wait(run, None)
                        continue
                    raise ProviderFailed(str(exc)) from None
                usage = parsed.usage or Usage(run.shape.prompt_tokens, 0, True)
                cost = request_cost(cand.model, cand.provider, self.settings.server, usage,
                                    billed_seconds(run, self.clock.monotonic()))
                self._release(run, cand)
                self.health.record_success(pid)
                self.states[pid].warm[cand.model.id] = self.clock.monotonic()
                run.candidate = None
                # The same cost as the response's cost_usd, not one recomputed later.
                self._finish(run, run.body, run.ctx, cand=cand, usage=usage, cost=cost,
                             message=parsed.message, finish_reason=parsed.finish_reason)
                body = splice(parsed.body, members({"cost_usd": cost}))
                return Completion(body, pid, cand.model.id, usage, cost,
                                  run.queue_ms if run.queued else None)
            if status == 429 or status >= 500:
                if attempt == 1:
                    # Only a 200 comes back as a bare Answer (lai.transport.post).
                    await self._retry_wait(run, resp if isinstance(resp, httpx.Response)
                                           else None)
                    continue
                raise ProviderFailed(f"HTTP {status}: {adapter.error_message(resp.content)}")
            raise self._rejected(run, cand, resp, resp.content)
        raise AssertionError("unreachable")

    # ----------------------------------------------------------------- embeddings

    async def embed(self, body: Any, ctx: RequestContext) -> Completion:
        """Serve ``POST /v1/embeddings`` on models of kind "embedding"
        (``lai.engine.embeddings``). Raises what ``complete`` raises."""
        return await embed(self, body, ctx)

    # ----------------------------------------------------------------- streamed

    async def stream(self, body: Any, ctx: RequestContext, *,
                     adapters: AdapterChoice | None = None) -> EngineStream:
        """Open a streamed chat request; returns once the first event is in hand.
        ``adapters`` as for ``complete``.

        Raises what ``complete`` raises. The returned stream must be closed
        (``aclose``), which frees its slot and reports the request.
        """
        run: Run | None = None
        try:
            run, candidates = await self._begin(body, ctx, adapters)
            return await self._serve(run, candidates, self._attempt_stream)  # type: ignore[no-any-return]
        except LaiError as exc:
            self._finish(run, body, ctx, error=exc)
            if run is not None:
                self._running.pop(run.ctx.request_id, None)
            raise
        except asyncio.CancelledError:
            self._finish(run, body, ctx, error=None, cancelled=True)
            if run is not None:
                self._running.pop(run.ctx.request_id, None)
            raise

    async def _attempt_stream(self, run: Run, cand: Candidate) -> EngineStream:
        pid = cand.provider.id
        req = self._request(cand, run, stream=True)
        adapter = self._adapter(run, cand)
        for attempt in (1, 2):
            t = self.clock.monotonic()
            try:
                resp = await open_stream(self.client, self._url(req.url), req.content,
                                         req.headers, self.timeouts[pid])
            except httpx.PoolTimeout:
                raise self._pool_exhausted(cand) from None
            except TIMEOUTS as exc:
                raise self._timeout_error(cand, exc) from None
            except CONNECT_FAILURES as exc:
                raise ProviderFailed(describe_http_error(exc)) from None
            # This function owns ``resp`` until it hands it over in a stream whose first
            # event is in hand: every other way out closes it, so the pooled connection
            # is let go and the upstream stops. A client that hangs up during prefill
            # cancels us right here, in first_event().
            try:
                if resp.status_code != 200:
                    try:
                        raw = await resp.aread()
                    except httpx.HTTPError:
                        raw = b""
                    finally:
                        await resp.aclose()
                        run.upstream_ms += (self.clock.monotonic() - t) * 1000
                    if resp.status_code == 429 or resp.status_code >= 500:
                        if attempt == 1:
                            # A Streamed is a 200 (lai.transport.open_stream): not here.
                            await self._retry_wait(run, cast(httpx.Response, resp))
                            continue
                        raise ProviderFailed(
                            f"HTTP {resp.status_code}: {adapter.error_message(raw)}")
                    raise self._rejected(run, cand, resp, raw)
                parser = adapter.stream_parser(pid, run.shape.wants_usage,
                                               model=self._answer_model(run, cand),
                                               redact=self.redact)
                opened = EngineStream(self, run, cand, resp, parser, t)
                await opened.first_event()
            except BaseException:
                await resp.aclose()
                raise
            return opened
        raise AssertionError("unreachable")

    # ----------------------------------------------------------------- reporting

    def _finish(
        self,
        run: Run | None,
        body: Any,
        ctx: RequestContext,
        *,
        cand: Candidate | None = None,
        error: LaiError | None = None,
        cancelled: bool = False,
        usage: Usage | None = None,
        cost: float | None = None,
        message: dict[str, Any] | None = None,
        finish_reason: str | None = None,
    ) -> None:
        """Emit the RequestFinished event that the recorder and metrics consume."""
        now_m = self.clock.monotonic()
        shape = run.shape if run else None
        duration_s = (now_m - run.t0) if run else 0.0
        if usage is None:
            usage = Usage(shape.prompt_tokens if shape else 0, 0, True)
        if cost is None:
            cost = request_cost(cand.model, cand.provider, self.settings.server, usage,
                                billed_seconds(run, now_m)) if cand and run else 0.0
        if error is not None:
            status, code, http_status = "error", error.code, error.status
            msg = self.redact(error.message)
        elif cancelled:
            status, code, msg, http_status = ("error", "client_disconnected",
                                              "The client went away.", 499)
        else:
            status, code, msg, http_status = "success", None, None, 200
        failed = tuple(pid for pid, _ in run.failures) if run else ()
        if cand is None and run is not None and run.candidate is not None:
            cand = run.candidate
        messages = body.get("messages") if isinstance(body, dict) else None
        model_req = body.get("model") if isinstance(body, dict) else None
        if status == "success" and cand is not None and run is not None:
            self._learn(run, cand, usage, now_m)
        estimate = run.estimate if run is not None and cand is not None else None
        reason = None
        if estimate is not None and run is not None and run.route is not None:
            reason = estimate.reason + (f"; {run.route.note}" if run.route.note else "")
            if run.replanned_after_ms is not None:
                reason += (f"; after {run.replanned_after_ms / 1000:.1f}s, past the "
                           f"estimate or its bound, waited on every candidate")
        self.events.emit(RequestFinished(
            context=ctx,
            model_requested=model_req if isinstance(model_req, str) else "",
            model_id=cand.model.id if cand else None,
            provider_id=cand.provider.id if cand else (failed[-1] if failed else None),
            failover_from=failed if cand is None else tuple(
                p for p in failed if p != cand.provider.id),
            streaming=bool(shape.stream) if shape else bool(
                isinstance(body, dict) and body.get("stream")),
            status=status,  # type: ignore[arg-type]
            http_status=http_status,
            error_code=code,
            error_message=msg,
            usage=usage,
            cost_usd=cost,
            started_at=run.started_at if run else self.clock.time(),
            queue_ms=round(run.queue_ms, 3) if run else 0.0,
            ttft_ms=None if run is None or run.ttft_ms is None else round(run.ttft_ms, 3),
            duration_ms=round(duration_s * 1000, 3),
            upstream_ms=round(run.upstream_ms, 3) if run else 0.0,
            request_messages=tuple(messages) if isinstance(messages, list) else (),
            response_message=message,
            finish_reason=finish_reason,
            estimate_ms=None if estimate is None else round(estimate.total_s * 1000, 1),
            route_reason=reason,
        ))

    def _learn(self, run: Run, cand: Candidate, usage: Usage, now_m: float) -> None:
        """A request succeeded: its service time and prefill rate feed the estimates
        (unless the model was cold, or it failed over: those times are not service),
        and its provider is the conversation's last."""
        pid = cand.provider.id
        if run.conversation:
            self.sticky.remember(run.conversation, pid, usage.total_tokens)
        if run.cold or run.failures:
            return
        queue_s = run.queue_ms / 1000
        prefill = None
        if run.shape.stream and run.ttft_ms is not None:
            prefill = run.ttft_ms / 1000 - queue_s
        # lai's own token estimate, not the upstream's count: the rate must be in the
        # units the next request's prefill is estimated in.
        self.estimator.observe(pid, cand.model.id, service_s=billed_seconds(run, now_m),
                               prompt_tokens=run.shape.prompt_tokens, prefill_s=prefill)


def _any_known(values: Iterable[bool | None]) -> bool | None:
    """True if any is True, else False if any is known, else None."""
    seen = False
    for value in values:
        if value:
            return True
        seen = seen or value is not None
    return False if seen else None
