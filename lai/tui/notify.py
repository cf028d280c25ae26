"""The one place an error becomes something the operator reads: a notification.

Never a traceback: a ClientError or LaiError shows its OpenAI-shaped ``message``, an
OSError its reason, anything else its class and text (and the log has the rest).
"""

from __future__ import annotations

import logging
import time

from textual.dom import DOMNode

from lai.errors import LaiError
from lai.tui.client import ClientError

log = logging.getLogger("lai.tui")


def error_text(exc: BaseException) -> str:
    """What the operator should read about ``exc``."""
    if isinstance(exc, ClientError | LaiError):
        return exc.message
    if isinstance(exc, OSError):
        where = f"{exc.filename}: " if exc.filename else ""
        return f"{where}{exc.strerror or exc}"
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


REPEAT_AFTER = 30.0
"""Seconds before the same error is shown again (a poll failing every second must not
bury the screen in identical notifications)."""


def notify_error(node: DOMNode, exc: BaseException, title: str = "Error") -> None:
    """Show ``exc`` as an error notification titled ``title`` (once per REPEAT_AFTER)."""
    if not isinstance(exc, ClientError | LaiError):
        log.error("%s", title, exc_info=exc)
    text = error_text(exc)
    shown: dict[str, float] | None = getattr(node.app, "errors_shown", None)
    if shown is not None:
        now = time.monotonic()
        if now - shown.get(text, -REPEAT_AFTER) < REPEAT_AFTER:
            return
        shown[text] = now
    node.app.notify(text, title=title, severity="error", timeout=8)
