"""Warnings in the proxy's log for requests that went wrong on lai's or an upstream's side.

One line per request that ended in a 5xx (a queue timeout or a full queue, no healthy
provider, an upstream that failed or timed out) and per stream broken after its first
byte; a client that went away is an INFO line. Failovers are logged by the engine where
they happen (``lai.engine``). Fed by the engine's events, so it covers every face.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from lai.engine.events import Event, RequestFinished

if TYPE_CHECKING:
    from lai.runtime import Runtime

log = logging.getLogger("lai.proxy.requests")

EXTENSION_KEY = "lai.eventlog"
CLIENT_GONE = "client_disconnected"


def log_event(event: Event) -> None:
    """The event-bus observer: a log line for a request that failed (see module doc)."""
    if not isinstance(event, RequestFinished) or event.status != "error":
        return
    rid = event.context.request_id
    where = event.provider_id or "no provider"
    if event.error_code == CLIENT_GONE:
        log.info("request %s: the client went away after %.0f ms (%s)", rid,
                 event.duration_ms, where)
    elif event.streaming and event.ttft_ms is not None:
        log.warning("request %s: stream from %s broke after its first byte (%s): %s", rid,
                    where, event.error_code, event.error_message)
    elif event.http_status >= 500:
        log.warning("request %s: %d %s after %.0f ms (%s, queued %.0f ms): %s", rid,
                    event.http_status, event.error_code, event.duration_ms, where,
                    event.queue_ms, event.error_message)


def install_event_log(runtime: Runtime) -> None:
    """Subscribe :func:`log_event` to the runtime's engine (once per runtime)."""
    if EXTENSION_KEY not in runtime.extensions:
        runtime.extensions[EXTENSION_KEY] = runtime.engine.events.subscribe(log_event)
