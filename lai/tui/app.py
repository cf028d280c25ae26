"""``LaiApp``: five panes (board, conversations, keys, chat, usage) over one client.

Each pane is a Textual mode with its own screen, so switching keeps its state (a stream
keeps streaming on pane 4 while pane 1 is shown). Nothing here does IO: the client is
started in a worker once the app is on screen.

An embedded TUI asked by a starting ``lai proxy`` to hand its engine over (see
``lai.enginelock``) asks its operator; on yes it stops routing, lets the proxy start and
attaches to it (the panes read again from the new client, ``client_epoch``).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from functools import partial
from typing import Any

from textual import work
from textual.app import App, SystemCommand
from textual.binding import Binding
from textual.reactive import reactive
from textual.screen import Screen
from textual.worker import Worker, WorkerState

from lai.tui.client import LaiClient
from lai.tui.notify import notify_error
from lai.tui.screens.board import BoardScreen
from lai.tui.screens.chat import ChatScreen
from lai.tui.screens.confirm import ConfirmScreen
from lai.tui.screens.conversations import ConversationsScreen
from lai.tui.screens.help import HelpScreen, HelpSection, binding_rows
from lai.tui.screens.keys import KeysScreen
from lai.tui.screens.usage import UsageScreen
from lai.tui.widgets.header import PANES

PANE_SCREENS: dict[str, type[Screen[None]]] = {
    "board": BoardScreen,
    "conversations": ConversationsScreen,
    "keys": KeysScreen,
    "chat": ChatScreen,
    "usage": UsageScreen,
}
HANDOVER_CHECK_SECONDS = 1.0
"""How often an embedded TUI looks for a proxy asking it to hand over."""
DECLINED_QUIET_SECONDS = 300.0
"""After a no, further requests are declined without asking for this long: a service
manager restarting the refused proxy every few seconds must not ask again each time."""


class LaiApp(App[None]):
    """The ``lai`` terminal UI. ``client`` is the only way it reaches lai; ``clock``
    (wall-clock seconds) is fixed in snapshot tests."""

    CSS_PATH = "lai.tcss"
    TITLE = "lai"
    MODES = PANE_SCREENS  # type: ignore[assignment]
    DEFAULT_MODE = "board"
    BINDINGS = [
        Binding("1", "pane('board')", "Board", id="pane-board", show=False),
        Binding("2", "pane('conversations')", "Conversations", id="pane-conversations",
                show=False),
        Binding("3", "pane('keys')", "Keys", id="pane-keys", show=False),
        Binding("4", "pane('chat')", "Chat", id="pane-chat", show=False),
        Binding("5", "pane('usage')", "Usage", id="pane-usage", show=False),
        Binding("question_mark", "help", "Help", id="help"),
        Binding("ctrl+q", "quit", "Quit", id="quit", priority=True),
    ]

    client_epoch: reactive[int] = reactive(0, init=False)
    """Counts client replacements (a hand-over); panes watch it to read again."""
    handing_over: reactive[bool] = reactive(False, init=False)
    """True while the engine is handed to a proxy (the chat pane stops its answer)."""

    def __init__(self, client: LaiClient, *, clock: Callable[[], float] = time.time) -> None:
        super().__init__()
        self.client = client
        self.clock = clock
        self.errors_shown: dict[str, float] = {}
        """Error text -> when it was last shown (see ``notify_error``)."""
        self.pending_conversation: dict[str, Any] | None = None
        """A conversation the chat pane is to continue (set by pane 2, taken by pane 4)."""
        self.handover_dialog: ConfirmScreen | None = None
        """The question put to the operator while a proxy waits for the engine."""
        self.declined_at: float | None = None
        """time.monotonic() of the operator's last no."""

    def on_mount(self) -> None:
        self.start_client()
        self.set_interval(HANDOVER_CHECK_SECONDS, self.check_handover)

    @work(exit_on_error=False, description="Starting")
    async def start_client(self) -> None:
        await self.client.start()

    async def on_unmount(self) -> None:
        await self.client.close()

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        worker = event.worker
        if event.state == WorkerState.ERROR and worker.error is not None:
            notify_error(self, worker.error, worker.description or "Error")

    # -- hand-over to a proxy

    def use_client(self, client: LaiClient) -> None:
        """Talk to ``client`` from now on (started); every pane reads again."""
        self.client = client
        self.errors_shown.clear()
        self.client_epoch += 1

    @work(group="handover-check", exclusive=True, exit_on_error=False,
          description="Hand-over")
    async def check_handover(self) -> None:
        """Put a proxy's hand-over request to the operator, once; close the question
        if the proxy stopped waiting."""
        if self.client.mode != "embedded" or self.handing_over:
            return
        pid = await self.client.handover_request()
        dialog = self.handover_dialog
        if pid is None:
            if dialog is not None:
                self.handover_dialog = None
                dialog.dismiss(False)
                self.notify("The proxy stopped waiting; this TUI keeps its engine.",
                            title="Hand-over", severity="warning", timeout=8)
            return
        if dialog is not None:
            return
        if (self.declined_at is not None
                and time.monotonic() - self.declined_at < DECLINED_QUIET_SECONDS):
            await self.client.decline_handover()
            return
        self.handover_dialog = ConfirmScreen(
            "A proxy wants to start for this config: hand over and attach?",
            f"`lai proxy` (pid {pid}) is waiting for the engine this TUI runs (one engine "
            f"per data dir).\n\nHand over: this TUI stops routing (an answer still "
            f"streaming in the chat pane is stopped), the proxy starts, and this TUI "
            f"attaches to it.\nCancel: the proxy exits with its error and this TUI keeps "
            f"its engine.", yes="Hand over and attach")
        self.push_screen(self.handover_dialog, self._handover_answered)

    def _handover_answered(self, yes: bool | None) -> None:
        if self.handover_dialog is None:
            return  # closed because the proxy gave up
        self.handover_dialog = None
        if yes:
            self.hand_over()
        else:
            self.decline_handover()

    @work(group="handover", exclusive=True, exit_on_error=False, description="Hand-over")
    async def decline_handover(self) -> None:
        self.declined_at = time.monotonic()
        await self.client.decline_handover()
        self.notify("Declined: the proxy exits and this TUI keeps its engine (for 5 min "
                    "further requests are declined without asking).", title="Hand-over",
                    timeout=6)

    @work(group="handover", exclusive=True, exit_on_error=False, description="Hand-over")
    async def hand_over(self) -> None:
        self.handing_over = True
        try:
            self.notify("Handing the engine over to the proxy…", title="Hand-over", timeout=5)
            client = await self.client.hand_over()
        finally:
            self.handing_over = False
        self.use_client(client)
        if client.mode == "attached":
            self.notify(f"Attached to the lai proxy at {client.location}.",
                        title="Hand-over", timeout=8)
        else:
            self.notify("The proxy did not answer; this TUI runs its own engine again.",
                        title="Hand-over", severity="warning", timeout=10)

    # -- actions

    def action_pane(self, pane: str) -> None:
        """Show pane ``board``, ``conversations``, ``keys``, ``chat`` or ``usage``."""
        if pane in PANE_SCREENS and self.current_mode != pane:
            self.switch_mode(pane)

    def continue_conversation(self, conv: dict[str, Any]) -> None:
        """Open ``conv`` (with its ``messages``) in the chat pane, to write its next turn."""
        self.pending_conversation = conv
        if self.current_mode == "chat":
            chat = self.screen
            if isinstance(chat, ChatScreen):
                chat.take_pending_conversation()
        else:
            self.switch_mode("chat")

    def help_sections(self) -> list[HelpSection]:
        """Every binding: the app's, then each pane's, for ``?`` and the docs."""
        bindings = [b for b in self.BINDINGS if isinstance(b, Binding)]
        panes = [b for b in bindings if b.action.startswith("pane(")]
        others = [b for b in bindings if b not in panes]
        general = [("1 2 3 4 5", "Board, Conversations, Keys, Chat, Usage "
                               "(escape first when typing in a box)"),
                   *binding_rows(others),
                   ("ctrl+p", "Command palette: every action by name")]
        sections: list[HelpSection] = [("Everywhere", general)]
        for number, (pane, title) in enumerate(PANES, start=1):
            sections.append((f"{number} {title}", binding_rows(PANE_SCREENS[pane].BINDINGS)))
        return sections

    def action_help(self) -> None:
        if not isinstance(self.screen, HelpScreen):
            self.push_screen(HelpScreen(self.help_sections()))

    def get_system_commands(self, screen: Screen[object]) -> Iterable[SystemCommand]:
        """The palette: every pane, every binding of the current pane, then Textual's own."""
        for number, (pane, title) in enumerate(PANES, start=1):
            yield SystemCommand(f"Go to {title}", f"Show pane {number} ({number})",
                                partial(self.action_pane, pane))
        for binding in screen.BINDINGS:
            if isinstance(binding, Binding) and binding.description:
                yield SystemCommand(binding.description, f"{screen.__class__.__name__[:-6]}: "
                                    f"key {binding.key}",
                                    partial(screen.run_action, binding.action))
        yield SystemCommand("Help", "Every key binding (?)", self.action_help)
        yield from super().get_system_commands(screen)
