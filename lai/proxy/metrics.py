"""Prometheus metrics of one runtime: counters fed by engine events, gauges read at scrape.

Each runtime gets its own ``CollectorRegistry`` (never prometheus-client's global one):
tests start many proxies in one process, and a global registry would mix their counts.
``install_metrics(runtime)`` builds it once, subscribes its observer to the engine's
event bus and keeps it in ``runtime.extensions``; ``GET /metrics`` renders it.

Exported (every label value comes from the config or from lai's own code, never from a
client: a model name a client made up is ``model="unknown"``; no conversation ids, key
names or messages)::

    local_ai_requests_total{endpoint,model,provider,status}   counter, status success|error
    local_ai_request_duration_seconds{endpoint,provider}      histogram
    local_ai_time_to_first_token_seconds{endpoint,provider}   histogram, streamed requests
    local_ai_router_overhead_seconds{endpoint}                histogram, duration - upstream - queue
    local_ai_queue_wait_seconds{endpoint}                     histogram
    local_ai_tokens_total{model,provider,kind}                counter, kind prompt|completion
    local_ai_cost_usd_total{model,provider}                   counter
    local_ai_errors_total{endpoint,provider,code}             counter, OpenAI error code
    local_ai_provider_failover_total{from_provider,to_provider} counter ("none": nothing left)
    local_ai_provider_active_requests{provider}               gauge
    local_ai_provider_max_concurrent{provider}                gauge
    local_ai_provider_queue_depth{provider}                   gauge, waiters it could serve
    local_ai_provider_health{provider}                        gauge, 1 healthy, 0.5 degraded, 0 else
    local_ai_provider_enabled{provider}                       gauge
    local_ai_provider_latency_seconds{provider}               gauge, last probe (when known)
    local_ai_provider_info{provider,type}                     gauge, always 1; type local|openai|...
    local_ai_queue_depth                                      gauge, requests waiting for a slot
    local_ai_recorder_backlog                                 gauge, rows not yet written
    local_ai_recorder_failed_writes_total                     counter (when a recorder exists)
    local_ai_database_size_bytes                              gauge, SQLite file + WAL or
                                                              pg_database_size (with a store)
    local_ai_http_responses_total{route,status}               counter, every HTTP answer

``local_ai_http_responses_total`` counts every HTTP response by the route's rule
(``/v1/conversations/<conversation_id>``, ``unmatched`` when no route matched: a 404 on an
unknown path) and its status code (``499`` when the client left before an answer).

Requests are counted when they finish, once each, under the provider that answered or
failed last (``none`` when no provider was tried). Tokens and cost are counted only for
requests that reached a model: the estimate of a prompt nobody read is not usage.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, NamedTuple

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from lai.engine.events import ConfigReloaded, Event, Failover, RequestFinished
from lai.store.space import DatabaseSize, database_size

if TYPE_CHECKING:
    from lai.runtime import Runtime

log = logging.getLogger("lai.proxy.metrics")

EXTENSION_KEY = "lai.metrics"
"""Where ``install_metrics`` keeps the runtime's metrics in ``runtime.extensions``."""

UNKNOWN = "unknown"
"""The label of a model or provider the config does not name."""
NONE = "none"
"""The label when there is no provider (never routed) or no next provider (failover)."""

HEALTH_VALUE = {"healthy": 1.0, "degraded": 0.5}
"""``local_ai_provider_health``: every other status (unknown, unhealthy, disabled) is 0."""

DURATION_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0)
TTFT_BUCKETS = (0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 30.0, 60.0)
OVERHEAD_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)
QUEUE_BUCKETS = (0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)

DATABASE_SIZE_TTL = 30.0
"""Seconds a measured database size is reused: scrapes stay cheap on PostgreSQL too."""

_CODE_LABEL = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
_ENDPOINT_LABEL = re.compile(r"^[a-z][a-z0-9._]{0,31}$")


class _Row(NamedTuple):
    """The children of the metrics a finished request updates, for one kind of request
    (``ProxyMetrics._rows``); None for a metric it leaves alone. The error counter,
    keyed by code too, is looked up on its own."""

    requests: Any
    duration: Any
    ttft: Any | None
    overhead: Any
    queue_wait: Any | None
    tokens: tuple[Any, Any, Any] | None
    """Prompt tokens, completion tokens, cost."""


class ProxyMetrics:
    """The metrics of one runtime: a registry, an event observer and a scrape collector."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        settings = runtime.settings
        self._providers = frozenset(p.id for p in settings.providers)
        self._models = frozenset(m.id for m in settings.models) | {"auto"}
        self._unsubscribe: Callable[[], None] | None = None
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter(
            "local_ai_requests", "Finished requests by outcome (success or error).",
            ["endpoint", "model", "provider", "status"], registry=r)
        self.duration = Histogram(
            "local_ai_request_duration_seconds",
            "Whole request time as lai saw it, queue and failovers included.",
            ["endpoint", "provider"], buckets=DURATION_BUCKETS, registry=r)
        self.ttft = Histogram(
            "local_ai_time_to_first_token_seconds",
            "Time from taking a streamed request to its first content event to the client.",
            ["endpoint", "provider"], buckets=TTFT_BUCKETS, registry=r)
        self.overhead = Histogram(
            "local_ai_router_overhead_seconds",
            "lai's own time per request: duration less upstream time and queue wait.",
            ["endpoint"], buckets=OVERHEAD_BUCKETS, registry=r)
        self.queue_wait = Histogram(
            "local_ai_queue_wait_seconds",
            "Time a request waited for a free provider slot.",
            ["endpoint"], buckets=QUEUE_BUCKETS, registry=r)
        self.tokens = Counter(
            "local_ai_tokens", "Tokens of requests that reached a model (kind prompt|completion).",
            ["model", "provider", "kind"], registry=r)
        self.cost = Counter(
            "local_ai_cost_usd", "Cost in USD from the model's prices and the box's energy.",
            ["model", "provider"], registry=r)
        self.errors = Counter(
            "local_ai_errors", "Failed requests by OpenAI error code.",
            ["endpoint", "provider", "code"], registry=r)
        self.failovers = Counter(
            "local_ai_provider_failover",
            "Attempts given up on one provider and moved to the next (none: nothing left).",
            ["from_provider", "to_provider"], registry=r)
        self.responses = Counter(
            "local_ai_http_responses",
            "HTTP responses by route rule (unmatched: no route) and status code.",
            ["route", "status"], registry=r)
        r.register(_LiveCollector(runtime))
        self.database_size_bytes: int | None = None
        """The last measured size of the store; None before the first or without a store."""
        self._size_measured_at = float("-inf")
        self._measuring: asyncio.Future[DatabaseSize] | None = None
        r.register(_DatabaseSizeCollector(self))
        self._children: dict[tuple[object, ...], Any] = {}
        """(metric, label values) -> its child: ``labels()`` validates and locks on
        every call, ~10 times a request. Bounded as the label sets are."""
        self._rows: dict[tuple[object, ...], _Row] = {}
        """(endpoint, model, provider, status labels; whether it has a first token, waited,
        was routed) -> the children such a finished request updates: one lookup a
        request instead of eight. Bounded as the label sets are."""

    def _child(self, metric: Any, *labels: str) -> Any:
        key = (metric, *labels)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*labels)
        return child

    # -- labels ----------------------------------------------------------------------------

    def _provider(self, provider_id: str | None) -> str:
        if provider_id is None:
            return NONE
        return provider_id if provider_id in self._providers else UNKNOWN

    def _model(self, model_id: str | None, requested: str) -> str:
        # A routed request names a configured model; before routing only a name the
        # config knows may become a label, so clients cannot mint new series.
        if model_id is not None:
            return model_id if model_id in self._models else UNKNOWN
        return requested if requested in self._models else UNKNOWN

    @staticmethod
    def _endpoint(endpoint: str) -> str:
        return endpoint if _ENDPOINT_LABEL.match(endpoint) else "other"

    @staticmethod
    def _code(code: str | None, http_status: int) -> str:
        if code is None:  # an error without an OpenAI code, e.g. a plain 400
            return f"http_{http_status}" if 100 <= http_status <= 599 else UNKNOWN
        return code if _CODE_LABEL.match(code) else "other"

    def count_response(self, route: str, status: int) -> None:
        """Count one HTTP response. ``route`` is a route rule of the app (or
        ``unmatched``), never a client's path, so the label set stays bounded."""
        code = str(status) if 100 <= status <= 599 else "other"
        self._child(self.responses, route, code).inc()

    # -- the observer ----------------------------------------------------------------------

    def attach(self) -> None:
        """Subscribe to the runtime's engine events (once)."""
        if self._unsubscribe is None:
            self._unsubscribe = self.runtime.engine.events.subscribe(self.observe)

    def detach(self) -> None:
        """Stop counting events."""
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None

    def observe(self, event: Event) -> None:
        """The event-bus observer: update counters and histograms, nothing else.

        Runs inside ``EventBus.emit`` on the request path, so it never waits: each
        update takes one uncontended lock inside prometheus-client.
        """
        if isinstance(event, RequestFinished):
            self._finished(event)
        elif isinstance(event, Failover):
            self._child(
                self.failovers,
                self._provider(event.from_provider),
                self._provider(event.to_provider),
            ).inc()
        elif isinstance(event, ConfigReloaded) and event.ok:
            # Labels follow the config: a provider added by a reload gets its own series,
            # and a removed one keeps its own for the requests that drain on it.
            settings = self.runtime.settings
            self._providers |= frozenset(p.id for p in settings.providers)
            self._models |= frozenset(m.id for m in settings.models)

    def _finished(self, e: RequestFinished) -> None:
        endpoint = self._endpoint(e.context.endpoint)
        provider = self._provider(e.provider_id)
        model = self._model(e.model_id, e.model_requested)
        # Requests refused before they could queue (bad body, unknown model) never
        # waited; leaving them out keeps the histogram about the queue.
        waited = e.provider_id is not None or e.queue_ms > 0
        key = (endpoint, model, provider, e.status, e.ttft_ms is not None, waited,
               e.model_id is not None)
        row = self._rows.get(key)
        if row is None:
            row = self._rows[key] = self._row(*key)
        row.requests.inc()
        row.duration.observe(e.duration_ms / 1000)
        if row.ttft is not None and e.ttft_ms is not None:
            row.ttft.observe(e.ttft_ms / 1000)
        own_ms = e.duration_ms - e.upstream_ms - e.queue_ms
        row.overhead.observe(max(0.0, own_ms) / 1000)
        if row.queue_wait is not None:
            row.queue_wait.observe(e.queue_ms / 1000)
        if row.tokens is not None:
            prompt, completion, cost = row.tokens
            prompt.inc(max(0, e.usage.prompt_tokens))
            completion.inc(max(0, e.usage.completion_tokens))
            cost.inc(max(0.0, e.cost_usd))
        if e.status == "error":
            code = self._code(e.error_code, e.http_status)
            self._child(self.errors, endpoint, provider, code).inc()

    def _row(self, endpoint: str, model: str, provider: str, status: str, ttft: bool,
             waited: bool, routed: bool) -> _Row:
        # Only the series such a request updates: a child made is a series shown at 0.
        return _Row(
            self._child(self.requests, endpoint, model, provider, status),
            self._child(self.duration, endpoint, provider),
            self._child(self.ttft, endpoint, provider) if ttft else None,
            self._child(self.overhead, endpoint),
            self._child(self.queue_wait, endpoint) if waited else None,
            (self._child(self.tokens, model, provider, "prompt"),
             self._child(self.tokens, model, provider, "completion"),
             self._child(self.cost, model, provider)) if routed else None)

    # -- scraping --------------------------------------------------------------------------

    async def refresh_database_size(self, *, wait: float = 1.0) -> None:
        """Measure the store's size in a worker thread, at most every DATABASE_SIZE_TTL
        seconds, waiting for it at most ``wait`` seconds: a database that is slow or down
        never holds up a scrape, which then shows the last value (failures are logged)."""
        store = self.runtime.store
        if store is None:
            return
        if self._measuring is None and (
            time.monotonic() - self._size_measured_at >= DATABASE_SIZE_TTL
        ):
            self._size_measured_at = time.monotonic()
            self._measuring = asyncio.ensure_future(asyncio.to_thread(database_size, store))
            self._measuring.add_done_callback(self._measured)
        if self._measuring is not None:
            await asyncio.wait({self._measuring}, timeout=wait)

    def _measured(self, future: asyncio.Future[DatabaseSize]) -> None:
        self._measuring = None
        if future.cancelled():
            return
        exc = future.exception()
        if exc is not None:  # a database that is down must not fail the scrape
            log.warning("could not measure the database size: %s", exc)
            return
        self.database_size_bytes = future.result().total_bytes

    def render(self) -> bytes:
        """The Prometheus text exposition of this runtime's metrics.

        Call it on the event loop that runs the engine: the live gauges read engine state
        that only that loop changes.
        """
        return generate_latest(self.registry)


class _LiveCollector(Collector):
    """Gauges read from the engine (and the recorder) at scrape time."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

    def describe(self) -> list[Metric]:
        # Describing without collecting keeps registration free of engine reads.
        return []

    def collect(self) -> Iterator[Metric]:
        engine = self.runtime.engine
        labels = ["provider"]
        active = GaugeMetricFamily(
            "local_ai_provider_active_requests", "Requests in flight on the provider.",
            labels=labels)
        maximum = GaugeMetricFamily(
            "local_ai_provider_max_concurrent", "The provider's max_concurrent.", labels=labels)
        queued = GaugeMetricFamily(
            "local_ai_provider_queue_depth", "Queued requests the provider could serve.",
            labels=labels)
        health = GaugeMetricFamily(
            "local_ai_provider_health", "1 healthy, 0.5 degraded, 0 unknown/unhealthy/disabled.",
            labels=labels)
        enabled = GaugeMetricFamily(
            "local_ai_provider_enabled", "1 when the provider takes traffic (runtime toggle).",
            labels=labels)
        latency = GaugeMetricFamily(
            "local_ai_provider_latency_seconds", "Latency of the last passing health probe.",
            labels=labels)
        info = GaugeMetricFamily(
            "local_ai_provider_info", "Always 1; the provider's type (local, openai, anthropic).",
            labels=["provider", "type"])
        for p in engine.providers():
            active.add_metric([p.id], p.active_requests)
            maximum.add_metric([p.id], p.max_concurrent)
            queued.add_metric([p.id], p.queue_depth)
            health.add_metric([p.id], HEALTH_VALUE.get(p.status, 0.0))
            enabled.add_metric([p.id], 1.0 if p.enabled else 0.0)
            if p.latency_ms is not None:
                latency.add_metric([p.id], p.latency_ms / 1000)
            info.add_metric([p.id, p.type], 1.0)
        yield from (active, maximum, queued, health, enabled, latency, info)
        yield GaugeMetricFamily(
            "local_ai_queue_depth", "Requests waiting for a provider slot.",
            value=engine.slots.queue_depth)
        yield from _recorder_metrics(self.runtime)
        yield from _key_limit_metrics(self.runtime)


def _key_limit_metrics(runtime: Runtime) -> Iterator[Metric]:
    # Key names as labels: bounded, since only the operator creates keys, and only keys
    # with an rpm, tpm or budget that this process has served appear.
    usage = runtime.usage
    if usage is None:
        return
    allowed = GaugeMetricFamily(
        "local_ai_key_limit", "A key's limit: rpm, tpm, or USD of a budget period.",
        labels=["key", "limit"])
    used = GaugeMetricFamily(
        "local_ai_key_limit_used", "How much of the limit the key uses now (requests or "
        "tokens in the last minute, USD spent in the period).", labels=["key", "limit"])
    for key, uses in sorted(usage.snapshot().items()):
        for u in uses:
            allowed.add_metric([key, u.limit], u.allowed)
            used.add_metric([key, u.limit], u.used)
    yield from (allowed, used)


class _DatabaseSizeCollector(Collector):
    """``local_ai_database_size_bytes`` from the value ``refresh_database_size`` keeps."""

    def __init__(self, metrics: ProxyMetrics) -> None:
        self.metrics = metrics

    def describe(self) -> list[Metric]:
        return []

    def collect(self) -> Iterator[Metric]:
        size = self.metrics.database_size_bytes
        if size is not None:
            yield GaugeMetricFamily(
                "local_ai_database_size_bytes",
                "Size of the database on disk: SQLite file plus WAL, or pg_database_size.",
                value=float(size))


def _recorder_metrics(runtime: Runtime) -> Iterator[Metric]:
    # The store's recorder hangs off the runtime as ``runtime.recorder`` when the runtime
    # has a store; a runtime without one (tests, a store-less embed) has nothing waiting,
    # so the backlog reads 0 and dashboards keep a series.
    recorder: Any = getattr(runtime, "recorder", None)
    backlog = getattr(recorder, "backlog", 0) if recorder is not None else 0
    yield GaugeMetricFamily(
        "local_ai_recorder_backlog", "Request records waiting to be written to the store.",
        value=float(backlog or 0))
    failed = getattr(recorder, "failed_writes", None) if recorder is not None else None
    if isinstance(failed, int):
        yield CounterMetricFamily(
            "local_ai_recorder_failed_writes", "Batch writes to the store that failed "
            "(each is retried; nothing is dropped).", value=failed)


def install_metrics(runtime: Runtime) -> ProxyMetrics:
    """The runtime's metrics, created and subscribed to its engine on first call."""
    metrics: ProxyMetrics | None = runtime.extensions.get(EXTENSION_KEY)
    if metrics is None:
        metrics = ProxyMetrics(runtime)
        metrics.attach()
        runtime.extensions[EXTENSION_KEY] = metrics
    return metrics
