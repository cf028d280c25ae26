"""One request's book-keeping across attempts, and the failures that move it on.

Shared by ``lai.engine.engine`` (choosing, retrying, failing over) and
``lai.engine.streaming`` (a stream in progress).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

from lai.config.models import ProviderConfig
from lai.engine.adapters.base import Adapter, StreamState
from lai.engine.choice import Route
from lai.engine.estimate import Estimate
from lai.engine.requests import ChatShape
from lai.engine.routing import Candidate
from lai.engine.types import RequestContext

CONNECT_FAILURES = (httpx.ConnectError, httpx.ConnectTimeout, httpx.RemoteProtocolError,
                    httpx.ReadError, httpx.WriteError)
"""Failures before any byte of an answer: the next candidate is tried at once."""
TIMEOUTS = (httpx.ReadTimeout, httpx.WriteTimeout)
"""The upstream went quiet: 504, no retry. ``httpx.PoolTimeout`` is not one: a full pool
is lai's own condition (``UpstreamPoolExhausted``), not the upstream's."""


AdapterChoice = Callable[[ProviderConfig], Adapter]
"""How one request speaks to a provider (default: ``lai.engine.adapters.adapter_for``)."""


class ProviderFailed(Exception):
    """This provider cannot serve this request now; try the next candidate."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass
class Run:
    """Book-keeping for one request across its attempts."""

    ctx: RequestContext
    shape: ChatShape
    body: dict[str, Any]
    """The client's body, as recorded."""
    upstream_body: dict[str, Any]
    """What the adapters send: image references resolved, lai-only fields removed."""
    started_at: float
    t0: float
    queue_ms: float = 0.0
    queued: bool = False
    """It waited in the queue (found no free slot at once) on some attempt."""
    upstream_ms: float = 0.0
    failures: list[tuple[str, str]] = field(default_factory=list)
    candidate: Candidate | None = None
    ttft_ms: float | None = None
    stream_state: StreamState | None = None
    adapters: AdapterChoice | None = None
    route: Route | None = None
    """The estimates and order of scheduling ``fair``; None under ``fifo``."""
    estimate: Estimate | None = None
    """The estimate of the candidate holding the slot."""
    cold: bool = False
    """The model was not loaded when the request took its slot."""
    conversation: tuple[str, ...] = ()
    """The names its conversation is known by (``lai.engine.sticky``)."""
    replanned_after_ms: float | None = None
    """When the wait ran past the estimate and the held-back candidates joined it."""


def billed_seconds(run: Run, now_monotonic: float) -> float:
    """The seconds a provider's energy is billed for: the request's duration less its
    time in the queue, when the box was busy with (and billed to) other requests."""
    return max(0.0, now_monotonic - run.t0 - run.queue_ms / 1000)
