"""``lai proxy`` under tracemalloc, for ``bench/memory.py --tracemalloc DIR`` (diagnosis).

Runs ``lai.cli`` with the arguments given, tracing allocations (10 frames); each
SIGUSR1 writes a snapshot to ``$LAI_TRACEMALLOC_DIR/snapshot-N.pickle`` (N = 1, 2, ...)
and then the file ``snapshot-N.done``. Tracing slows the proxy and adds its own memory:
read the differences between snapshots, not the RSS.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import tracemalloc
from pathlib import Path

from lai.cli import main


def _install() -> None:
    out = Path(os.environ["LAI_TRACEMALLOC_DIR"])
    taken = 0
    lock = threading.Lock()

    def snapshot() -> None:
        nonlocal taken
        with lock:
            taken += 1
            path = out / f"snapshot-{taken}.pickle"
            tracemalloc.take_snapshot().dump(str(path))
            path.with_suffix(".done").touch()

    def on_signal(_sig: int, _frame: object) -> None:
        # Off the handler: the event loop keeps serving while the snapshot is written.
        threading.Thread(target=snapshot, name="tracemalloc-snapshot").start()

    signal.signal(signal.SIGUSR1, on_signal)


if __name__ == "__main__":
    tracemalloc.start(10)
    _install()
    sys.exit(main(sys.argv[1:]))
