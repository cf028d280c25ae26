"""Is a ``lai proxy`` serving this config? Asked before anything heavy is imported."""

from __future__ import annotations

import socket
from pathlib import Path

from lai.config.models import Settings

SOCKET_NAME = "lai.sock"


def socket_path(settings: Settings) -> Path:
    """Where a proxy for these settings keeps its admin socket."""
    return settings.server.data_dir / SOCKET_NAME


def proxy_answers(path: Path, timeout: float = 0.5) -> bool:
    """True when something answers ``GET /health`` with 200 on the unix socket ``path``.

    A bare socket and one HTTP/1.0 request: this runs before the first frame, so it must
    not pay for importing an HTTP client.
    """
    if not path.exists():
        return False
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(timeout)
            sock.connect(str(path))
            sock.sendall(b"GET /health HTTP/1.0\r\nHost: lai\r\n\r\n")
            head = sock.recv(64)
    except OSError:
        return False
    return head.startswith((b"HTTP/1.0 200", b"HTTP/1.1 200"))
