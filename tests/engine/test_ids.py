"""Request and conversation ids: unique, the same shape as ever, and in creation order
(so the store appends them to its indexes instead of scattering them)."""

from __future__ import annotations

import re
import time

from lai.engine.types import new_request_id
from lai.proxy.context import new_conversation_id


def test_ids_made_later_sort_later_and_never_repeat() -> None:
    requests: list[str] = []
    conversations: list[str] = []
    for _ in range(5):
        requests += [new_request_id() for _ in range(300)]
        conversations += [new_conversation_id() for _ in range(300)]
        time.sleep(0.003)  # into the next milliseconds
    assert len(set(requests)) == len(requests) and len(set(conversations)) == len(conversations)
    assert all(re.fullmatch(r"req_[0-9a-f]{24}", i) for i in requests)
    assert all(re.fullmatch(r"conv_[0-9a-f]{24}", i) for i in conversations)
    # Ordered by the time part; within one millisecond the random part decides.
    assert [i[:16] for i in requests] == sorted(i[:16] for i in requests)
    assert [i[:17] for i in conversations] == sorted(i[:17] for i in conversations)
    assert requests[0][:16] < requests[-1][:16]


def test_a_forked_child_and_a_seeded_random_do_not_repeat_ids() -> None:
    # A forked worker starts with its parent's state, and a test library may call
    # random.seed before each example: neither may make two processes' ids alike.
    import os
    import random

    from lai.engine.types import time_ordered_hex

    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child
        try:
            random.seed(0)
            os.write(write, "".join(time_ordered_hex()[12:] for _ in range(200)).encode())
        finally:
            os._exit(0)
    os.close(write)
    random.seed(0)
    mine = {time_ordered_hex()[12:] for _ in range(200)}
    data = b""
    while chunk := os.read(read, 65536):
        data += chunk
    os.close(read)
    os.waitpid(pid, 0)
    theirs = {data[i:i + 12].decode() for i in range(0, len(data), 12)}
    assert len(theirs) == len(mine) == 200 and not mine & theirs
