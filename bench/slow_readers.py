"""Memory of ``lai proxy`` with clients that never read their streamed answer.

Starts a fake upstream (``tests/fakes/upstream.py``) that streams ``--stream-mb`` MB of
content per answer as fast as the socket takes it, and ``lai proxy`` as a subprocess
(auth off, the store on SQLite, one local box with a slot for every client). Then
``--clients`` raw-socket clients each send a streamed request and never read a byte.
Prints the proxy's RSS idle, with the clients connected (once it has settled), and
after they close, plus the active requests ``/v1/providers`` shows meanwhile.

    python bench/slow_readers.py                      # 50 clients, 4 MB each; ~20 s
    python bench/slow_readers.py --clients 10 --settle 1   # quicker

See bench/README.md ("Clients that do not read").
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import socket
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from run import Proc, rss_mib, spawn  # noqa: E402

MIB = 1024 * 1024


def config(path: Path, upstream: str, clients: int) -> None:
    path.write_text(textwrap.dedent(f"""\
        [server]
        host = "127.0.0.1"
        database_url = "sqlite:///data/lai.db"
        data_dir = "data"
        auth = false
        queue_max_size = 1000

        [[providers]]
        id = "box"
        type = "local"
        endpoint = "{upstream}"
        max_concurrent = {clients + 4}
        health_check_interval = 30

        [[models]]
        id = "m"
        provider_id = "box"
        context_window = 32768
    """))


async def get(host: str, port: int, path: str) -> bytes:
    reader, writer = await asyncio.open_connection(host, port)
    writer.write(f"GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
    data = await reader.read()
    writer.close()
    return data.partition(b"\r\n\r\n")[2]


async def active(host: str, port: int) -> int:
    body = json.loads(await get(host, port, "/v1/providers"))
    return sum(p["active_requests"] for p in body["data"])


async def settle(pid: int, seconds: float) -> float | None:
    """RSS once it stops growing (two reads ``seconds`` apart within 0.5 MiB)."""
    last = rss_mib(pid)
    for _ in range(30):
        await asyncio.sleep(seconds)
        now = rss_mib(pid)
        if now is None or last is None or abs(now - last) < 0.5:
            return now
        last = now
    return last


async def measure(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    py = sys.executable
    procs: list[Proc] = []
    try:
        fake, upstream = spawn("fake", [py, "-m", "tests.fakes.upstream", "--port", "0",
                                        "--stream-bytes", str(int(args.stream_mb * 1e6))],
                               workdir, "listening on")
        procs.append(fake)
        cfg = workdir / "config.toml"
        config(cfg, upstream, args.clients)
        lai, url = spawn("lai", [py, "-m", "lai.cli", "proxy", "--config", str(cfg),
                                 "--port", "0"], workdir, "lai proxy listening on")
        procs.append(lai)
        host, port = url.removeprefix("http://").rstrip("/").split(":")
        iport = int(port)
        # One full answer read first, so pools, caches and arenas are warm in "idle".
        t = time.monotonic()
        warm = await stream_once(host, iport)
        print(f"warm-up: one {warm / MIB:.1f} MiB stream read in "
              f"{time.monotonic() - t:.2f} s", file=sys.stderr)
        idle = await settle(lai.pid, args.settle)
        body = json.dumps({"model": "m", "stream": True,
                           "messages": [{"role": "user", "content": "hi"}]}).encode()
        request = (b"POST /v1/chat/completions HTTP/1.1\r\nHost: %s\r\n"
                   b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
                   % (host.encode(), len(body), body))
        rounds = []
        for _ in range(args.rounds):
            # Plain sockets: an asyncio stream would read ahead into its own buffer.
            clients = []
            for _ in range(args.clients):
                sock = socket.create_connection((host, iport))
                if args.client_rcvbuf:
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, args.client_rcvbuf)
                sock.sendall(request)
                clients.append(sock)
            connected = await settle(lai.pid, args.settle)
            in_flight = await active(host, iport)
            for sock in clients:
                sock.close()
            await asyncio.sleep(args.settle)
            rounds.append({"connected_mib": connected, "active_connected": in_flight,
                           "after_close_mib": await settle(lai.pid, args.settle),
                           "active_after": await active(host, iport)})
        return {"clients": args.clients, "stream_mb": args.stream_mb, "idle_mib": idle,
                "rounds": rounds}
    finally:
        for proc in reversed(procs):
            proc.stop(10)


async def stream_once(host: str, port: int) -> int:
    body = json.dumps({"model": "m", "stream": True,
                       "messages": [{"role": "user", "content": "hi"}]}).encode()
    reader, writer = await asyncio.open_connection(host, port)
    writer.write(b"POST /v1/chat/completions HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n"
                 b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
                 % (host.encode(), len(body), body))
    n = 0
    while chunk := await reader.read(1 << 20):
        n += len(chunk)
    writer.close()
    return n


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--clients", type=int, default=50)
    p.add_argument("--stream-mb", type=float, default=4.0, help="MB of content per answer")
    p.add_argument("--settle", type=float, default=2.0,
                   help="seconds between RSS reads until it stops changing")
    p.add_argument("--rounds", type=int, default=2,
                   help="connect and close the clients this many times (growth = a leak)")
    p.add_argument("--client-rcvbuf", type=int, default=0,
                   help="SO_RCVBUF of each client socket (0: the system's default)")
    p.add_argument("--keep", action="store_true", help="keep the work directory (logs)")
    args = p.parse_args(argv)
    workdir = Path(tempfile.mkdtemp(prefix="lai-slow-"))
    try:
        res = asyncio.run(measure(args, workdir))
    finally:
        if args.keep:
            print(f"work directory kept: {workdir}", file=sys.stderr)
        else:
            shutil.rmtree(workdir, ignore_errors=True)

    def mib(v: float | None) -> str:
        return "n/a" if v is None else f"{v:.1f} MiB"

    idle = res["idle_mib"]

    def grown(v: float | None) -> str:
        return f"  (+{v - idle:.1f})" if v is not None and idle is not None else ""

    print(f"{res['clients']} clients not reading a {res['stream_mb']:g} MB stream")
    print(f"  RSS idle                        {mib(idle)}")
    for n, r in enumerate(res["rounds"], 1):
        print(f"  round {n}: clients connected    {mib(r['connected_mib'])}"
              f"{grown(r['connected_mib'])}  active requests {r['active_connected']}")
        print(f"  round {n}: after they closed    {mib(r['after_close_mib'])}"
              f"{grown(r['after_close_mib'])}  active requests {r['active_after']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
