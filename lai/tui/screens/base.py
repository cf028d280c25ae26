"""What every pane shares: the header, the footer and errors shown as notifications."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from textual.screen import Screen
from textual.worker import Worker, WorkerState

from lai.tui.notify import notify_error
from lai.tui.widgets.header import PaneHeader

if TYPE_CHECKING:
    from lai.tui.app import LaiApp
    from lai.tui.client import LaiClient


class PaneScreen(Screen[None]):
    """A pane. Its workers run with ``exit_on_error=False``; a failure becomes a
    notification titled with the worker's ``description``, never a traceback."""

    PANE = ""

    @property
    def lai(self) -> LaiApp:
        return self.app  # type: ignore[return-value]

    @property
    def client(self) -> LaiClient:
        return self.lai.client

    def on_mount(self) -> None:
        # Textual calls this as well as a pane's own on_mount.
        self.watch(self.lai, "client_epoch", self._client_replaced, init=False)

    def _client_replaced(self) -> None:
        for header in self.query(PaneHeader):
            header.set_where(self.client.mode, self.client.location)
        self.client_replaced()

    def client_replaced(self) -> None:
        """The app talks to another client now (an embedded TUI attached to the proxy it
        handed over to): read what the pane shows again."""

    def now(self) -> float:
        """The app's clock (fixed in snapshot tests)."""
        return self.lai.clock()

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        worker: Worker[Any] = event.worker
        if event.state == WorkerState.ERROR and worker.error is not None:
            notify_error(self, worker.error, worker.description or worker.name or "Error")
