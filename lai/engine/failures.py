"""The last failures, kept in memory for the operator (the TUI board, ``/admin/failures``).

A bounded ring fed by engine events: a request that ended in an error (whatever the
status) and every attempt given up on for another provider. A client that went away
(499) is not a failure of anything and is left out. Messages are stored as the engine
reported them, which is after lai's own redaction of upstream text.
"""

from __future__ import annotations

from collections import deque

from lai.engine.events import Event, Failover, RequestFinished
from lai.engine.types import Failure

DEFAULT_SIZE = 50


class FailureLog:
    """The newest ``size`` failures; subscribe ``observe`` to an engine's EventBus."""

    def __init__(self, size: int = DEFAULT_SIZE) -> None:
        self._items: deque[Failure] = deque(maxlen=size)

    def observe(self, event: Event) -> None:
        if isinstance(event, RequestFinished):
            if event.status != "error" or event.http_status == 499:
                return
            self._items.append(Failure(
                at=event.started_at + event.duration_ms / 1000,
                request_id=event.context.request_id, provider_id=event.provider_id,
                key_name=event.context.key_name, model=event.model_requested,
                status=event.http_status, code=event.error_code,
                reason=event.error_message or "",
            ))
        elif isinstance(event, Failover):
            self._items.append(Failure(
                at=event.at, request_id=event.context.request_id,
                provider_id=event.from_provider, key_name=event.context.key_name,
                model="", status="failover", code=None,
                reason=event.reason + (f" (moved to {event.to_provider})"
                                       if event.to_provider else ""),
            ))

    def recent(self) -> list[Failure]:
        """Newest first."""
        return list(reversed(self._items))
