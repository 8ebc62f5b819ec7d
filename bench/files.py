"""``make bench`` (files): a 100 MB shared file between two daemons, beside its floor.

For each link (the embedded relay over a loopback WebSocket, and NATS) two real daemons (own
processes) join one group; A shares a file of ``--size`` bytes with an agent of B, and B's
``file.get`` fetches it: manifest, every chunk over the directed channel (sealed, signed,
flow-controlled), each chunk's hash checked and written to B's blob store, the whole file's
hash verified, then the file copied into B's downloads directory. The figure is MB/s from the
get's call to its answer, beside the floor: the same bytes read from a file, sent over a raw
loopback TCP socket and written to a file by a second thread. The target is >= 50 % of the
floor. The peak resident set size (``VmHWM``) of both daemons is read from ``/proc`` after
the transfer; it stays far below the file's size (a stream holds a window of chunks).

``--chunk`` (bytes, default 256 KiB) sets the sender's chunk size (``SWITCHBOARD_FILES_CHUNK_
SIZE``) to compare chunk sizes; ``--quick`` moves 20 MB. Figures are printed, never asserted.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import signal
import socket
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "tests" / "brokers"), str(ROOT / "tests" / "integration")]

from brokerlab import NatsServer, group_on  # noqa: E402 - needs the paths above
from cluster import Device, Relay  # noqa: E402

from switchboard.daemon.client import Client  # noqa: E402

MB = 1_000_000


def make_file(path: Path, size: int) -> None:
    """``size`` bytes that do not compress (a build artifact, a video)."""
    with open(path, "wb") as out:
        left = size
        while left:
            piece = os.urandom(min(left, 1 << 20))
            out.write(piece)
            left -= len(piece)


def floor_copy(src: Path, dest: Path) -> float:
    """Seconds to copy ``src`` to ``dest`` through a loopback TCP socket (file -> socket ->
    file, reader and writer in two threads)."""
    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]

    def receive() -> None:
        conn, _ = server.accept()
        with conn, open(dest, "wb") as out:
            while data := conn.recv(1 << 20):
                out.write(data)

    reader = threading.Thread(target=receive)
    reader.start()
    start = time.perf_counter()
    with socket.create_connection(("127.0.0.1", port)) as sock, open(src, "rb") as file:
        _send_plain(sock, file)
    reader.join()
    elapsed = time.perf_counter() - start
    server.close()
    return elapsed


def _send_plain(sock: socket.socket, file: Any) -> None:
    while data := file.read(1 << 20):
        sock.sendall(data)


def peak_rss(device: Device) -> int:
    """The daemon's peak resident set size so far, in bytes."""
    assert device.proc is not None
    with open(f"/proc/{device.proc.pid}/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return 0


def transfer(a: Device, b: Device, path: Path, size: int) -> dict[str, Any]:
    """Share ``path`` from A to nova on B and fetch it; the figures."""
    b.call("register", agent="nova")
    deadline = time.monotonic() + 30
    while not any(r["name"] == "nova" for r in a.call("agents")):
        assert time.monotonic() < deadline, "A never saw nova"
        time.sleep(0.05)
    rss_before = (peak_rss(a), peak_rss(b))
    start = time.perf_counter()
    shared = a.call("file.send", agent="luna", to=["@nova"], path=str(path))
    send_s = time.perf_counter() - start
    start = time.perf_counter()
    with Client.open(b.settings.socket_path) as client:
        items = list(client.stream("file.get", {"agent": "nova", "file": shared["hash"]},
                                   duration=600))  # fmt: skip
    get_s = time.perf_counter() - start
    saved = Path(items[-1]["saved"])
    assert saved.stat().st_size == size
    return {
        "send_s": send_s,
        "get_s": get_s,
        "get_mb_s": size / MB / get_s,
        "chunks": shared["chunks"],
        "peak_rss_mb": {"a": peak_rss(a) / MB, "b": peak_rss(b) / MB},
        "rss_before_mb": {"a": rss_before[0] / MB, "b": rss_before[1] / MB},
        "whole_ok": _sha(saved) == shared["hash"],
    }


def _sha(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        while piece := file.read(1 << 20):
            digest.update(piece)
    return digest.hexdigest()


@contextlib.contextmanager
def far_end(kind: str, tmp: Path) -> Iterator[str]:
    if kind == "relay":
        relay = Relay(tmp / "relay").start()
        try:
            yield relay.url
        finally:
            relay.kill(signal.SIGTERM)
    else:
        server = NatsServer(tmp / "nats")
        server.start()
        try:
            yield server.url
        finally:
            server.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=100 * MB, help="bytes to share (100 MB)")
    parser.add_argument("--chunk", type=int, default=256 * 1024, help="sender's chunk size")
    parser.add_argument("--quick", action="store_true", help="20 MB")
    parser.add_argument("--links", default="relay,nats", help="relay,nats")
    args = parser.parse_args(argv)
    size = 20 * MB if args.quick else args.size
    results: dict[str, Any] = {"size": size, "chunk": args.chunk}
    with tempfile.TemporaryDirectory(prefix="sb-files-") as folder:
        tmp = Path(folder)
        source = tmp / "artifact.bin"
        make_file(source, size)
        floors = [floor_copy(source, tmp / f"floor{n}.bin") for n in range(3)]
        floor = size / MB / min(floors)
        results["floor_mb_s"] = floor
        print(f"files: {size / MB:.0f} MB, chunks of {args.chunk // 1024} KiB")
        print(f"  floor: loopback TCP socket, file to file  {floor:8.1f} MB/s")
        for kind in args.links.split(","):
            with far_end(kind, tmp / kind) as url:
                env = {"SWITCHBOARD_FILES_CHUNK_SIZE": str(args.chunk),
                       "SWITCHBOARD_FILES_QUOTA": str(4 * size + MB)}  # fmt: skip
                with group_on(tmp / kind, url, "a", "b", env=env) as (a, b):
                    got = transfer(a, b, source, size)
            results[kind] = got
            print(
                f"  {kind:5}: file.get {got['get_mb_s']:8.1f} MB/s = "
                f"{100 * got['get_mb_s'] / floor:4.0f} % of the floor (target >= 50 %); "
                f"file.send (hash + store) {size / MB / got['send_s']:.0f} MB/s; "
                f"peak RSS A {got['peak_rss_mb']['a']:.0f} MB, B {got['peak_rss_mb']['b']:.0f} MB"
                f"{'' if got['whole_ok'] else '  (BYTES DIFFER)'}"
            )
    out = Path(os.environ.get("SWITCHBOARD_BENCH_FILES_OUT", tempfile.gettempdir()))
    target = out / "switchboard-bench-files.json" if out.is_dir() else out
    target.write_text(json.dumps(results, indent=2) + "\n")
    print(f"(written to {target})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
