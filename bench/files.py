"""``make bench`` (files): a 100 MB shared file between two daemons, beside its floors.

For each link (the embedded relay over a loopback WebSocket, and NATS) two real daemons (own
processes) join one group; A shares a file of ``--size`` bytes with an agent of B, and B's
``file.get`` fetches it: manifest, every chunk over the directed channel (sealed, signed,
flow-controlled), each chunk's hash checked and written to B's blob store, the whole file's
hash checked, then the file copied into B's downloads directory. The figure is MB/s from the
get's call to its answer, beside three floors measured in the same run:

- **raw**: the same bytes read from a file, sent over a raw loopback TCP socket and written to
  a file by a second thread (the target is >= 50 % of it);
- **two hops**: the same, through a middle process that forwards the raw bytes, as the relay
  and the NATS server do;
- **crypto**: what every chunk costs in CPU whatever the transport: the holder's hash check
  on read, the seal and signature (``seal_direct``), the recipient's ``open_direct``, its
  chunk hash check and the whole-file hash, one after the other on one core (and the slower
  of the two sides alone, as when each daemon has a core of its own).

For each daemon (and the relay or NATS server) the CPU it spent per MB moved (user + system,
from ``/proc``) and its peak resident set size (``VmHWM``): it stays far below the file's size
(a stream holds a window of chunks).

``--chunk`` (bytes, default 256 KiB) sets the sender's chunk size (``SWITCHBOARD_FILES_CHUNK_
SIZE``); ``--quick`` moves 20 MB; ``--profile DIR`` runs both daemons under cProfile and writes
``DIR/<link>-<a|b>.prof`` (the event loop's thread). Figures are printed, never asserted.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import multiprocessing
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "tests" / "brokers"), str(ROOT / "tests" / "integration")]

from brokerlab import NatsServer  # noqa: E402 - needs the paths above
from cluster import PY, Device, Relay, _Lines  # noqa: E402
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey  # noqa: E402

from switchboard.crypto import GroupKeys, device_id_from_public_key, public_bytes  # noqa: E402
from switchboard.daemon.client import Client  # noqa: E402

MB = 1_000_000
TICKS = os.sysconf("SC_CLK_TCK")


def make_file(path: Path, size: int) -> None:
    """``size`` bytes that do not compress (a build artifact, a video)."""
    with open(path, "wb") as out:
        left = size
        while left:
            piece = os.urandom(min(left, 1 << 20))
            out.write(piece)
            left -= len(piece)


# -- floors -------------------------------------------------------------------------------------


def floor_copy(src: Path, dest: Path, *, hops: int = 1) -> float:
    """Seconds to copy ``src`` to ``dest`` through loopback TCP (file -> socket -> file, reader
    and writer in two threads); with ``hops=2`` through a forwarding middle process."""
    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]

    def receive() -> None:
        conn, _ = server.accept()
        with conn, open(dest, "wb") as out:
            while data := conn.recv(1 << 20):
                out.write(data)

    reader = threading.Thread(target=receive)
    reader.start()
    middle = None
    if hops == 2:
        front = socket.create_server(("127.0.0.1", 0))
        middle = multiprocessing.get_context("fork").Process(target=_forward, args=(front, port))
        middle.start()
        port = front.getsockname()[1]
        front.close()
    start = time.perf_counter()
    with socket.create_connection(("127.0.0.1", port)) as sock, open(src, "rb") as file:
        while data := file.read(1 << 20):
            sock.sendall(data)
    reader.join()
    elapsed = time.perf_counter() - start
    if middle is not None:
        middle.join()
    server.close()
    return elapsed


def _forward(front: socket.socket, port: int) -> None:
    conn, _ = front.accept()
    with conn, socket.create_connection(("127.0.0.1", port)) as out:
        while data := conn.recv(1 << 20):
            out.sendall(data)


def floor_crypto(src: Path, chunk: int) -> tuple[float, float]:
    """Seconds of CPU the per-chunk crypto of a transfer costs the holder and the recipient
    (see the module docstring)."""
    keys = GroupKeys.derive("g" * 16, os.urandom(32))
    identity = Ed25519PrivateKey.generate()
    recipient = device_id_from_public_key(public_bytes(Ed25519PrivateKey.generate()))
    whole = hashlib.sha256()
    holder = taker = 0.0
    with open(src, "rb") as file:
        while piece := file.read(chunk):
            start = time.process_time()
            hashlib.sha256(piece).digest()  # the holder's check as it reads
            frame = keys.seal_direct(identity, recipient, 1, piece)
            middle = time.process_time()
            data = keys.open_direct(frame, recipient)
            hashlib.sha256(data).digest()  # the recipient's check before it writes
            whole.update(data)
            holder, taker = holder + middle - start, taker + time.process_time() - middle
    return holder, taker


# -- the daemons ---------------------------------------------------------------------------------


class Daemon(Device):
    """A ``Device`` whose daemon may run under cProfile."""

    profile: Path | None = None

    def start(self) -> Daemon:
        self.home.mkdir(parents=True, exist_ok=True)
        run = ["-m", "switchboard", "daemon", "run"]
        if self.profile is not None:
            run = ["-m", "cProfile", "-o", str(self.profile), *run]
        self.proc = subprocess.Popen([PY, *run], env=self.env, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE, text=True)  # fmt: skip
        self._log = _Lines(self.proc.stderr)
        self._log.wait_for(r" ready on ", 20)
        return self


@contextlib.contextmanager
def group(tmp: Path, url: str, env: dict[str, str], profile: Path | None) -> Iterator[list[Daemon]]:
    devices = [Daemon(tmp / name, name) for name in ("a", "b")]
    try:
        for device in devices:
            device.env.update(env)
            if profile is not None:
                device.profile = profile.with_name(f"{profile.name}-{device.name}.prof")
            device.start()
            device.call("init", name=device.name)
        created = devices[0].call("group.create", name="bench", relay=url)
        devices[1].call("join", invite=created["invite"])
        yield devices
    finally:
        for device in devices:
            device.kill(signal.SIGTERM)


def peak_rss(pid: int) -> int:
    """A process's peak resident set size so far, in bytes."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return 0


def cpu_seconds(pid: int) -> tuple[float, float]:
    """The user and the system CPU a process used so far."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rpartition(")")[2].split()
    return int(fields[11]) / TICKS, int(fields[12]) / TICKS


def transfer(a: Device, b: Device, far: int, path: Path, size: int) -> dict[str, Any]:
    """Share ``path`` from A to nova on B and fetch it; the figures."""
    b.call("register", agent="nova")
    deadline = time.monotonic() + 30
    while not any(r["name"] == "nova" for r in a.call("agents")):
        assert time.monotonic() < deadline, "A never saw nova"
        time.sleep(0.05)
    assert a.proc is not None and b.proc is not None
    pids = {"a": a.proc.pid, "b": b.proc.pid, "far": far}
    start = time.perf_counter()
    shared = a.call("file.send", agent="luna", to=["@nova"], path=str(path))
    send_s = time.perf_counter() - start
    cpu = {name: cpu_seconds(pid) for name, pid in pids.items()}
    start = time.perf_counter()
    with Client.open(b.settings.socket_path) as client:
        items = list(client.stream("file.get", {"agent": "nova", "file": shared["hash"]},
                                   duration=600))  # fmt: skip
    get_s = time.perf_counter() - start
    spent = {name: [now - then for now, then in zip(cpu_seconds(pid), cpu[name], strict=True)]
             for name, pid in pids.items()}  # fmt: skip
    saved = Path(items[-1]["saved"])
    assert saved.stat().st_size == size
    return {
        "send_s": send_s,
        "get_s": get_s,
        "get_mb_s": size / MB / get_s,
        "chunks": shared["chunks"],
        "cpu_ms_per_mb": {name: 1000 * sum(s) / (size / MB) for name, s in spent.items()},
        "sys_ms_per_mb": {name: 1000 * s[1] / (size / MB) for name, s in spent.items()},
        "peak_rss_mb": {"a": peak_rss(pids["a"]) / MB, "b": peak_rss(pids["b"]) / MB},
        "whole_ok": _sha(saved) == shared["hash"],
    }


def _sha(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        while piece := file.read(1 << 20):
            digest.update(piece)
    return digest.hexdigest()


@contextlib.contextmanager
def far_end(kind: str, tmp: Path) -> Iterator[tuple[str, int]]:
    """The relay or NATS server: its URL and process id."""
    if kind == "relay":
        relay = Relay(tmp / "relay").start()
        assert relay.proc is not None
        try:
            yield relay.url, relay.proc.pid
        finally:
            relay.kill(signal.SIGTERM)
    else:
        server = NatsServer(tmp / "nats")
        server.start()
        try:
            yield server.url, server.proc.pid
        finally:
            server.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=100 * MB, help="bytes to share (100 MB)")
    parser.add_argument("--chunk", type=int, default=256 * 1024, help="sender's chunk size")
    parser.add_argument("--quick", action="store_true", help="20 MB")
    parser.add_argument("--links", default="relay,nats", help="relay,nats")
    parser.add_argument("--profile", type=Path, help="cProfile both daemons into this folder")
    args = parser.parse_args(argv)
    size = 20 * MB if args.quick else args.size
    results: dict[str, Any] = {"size": size, "chunk": args.chunk}
    with tempfile.TemporaryDirectory(prefix="sb-files-") as folder:
        tmp = Path(folder)
        source = tmp / "artifact.bin"
        make_file(source, size)
        raw = size / MB / min(floor_copy(source, tmp / f"raw{n}.bin") for n in range(3))
        hops = size / MB / min(floor_copy(source, tmp / f"hop{n}.bin", hops=2) for n in range(3))
        sides = min((floor_crypto(source, args.chunk) for n in range(2)), key=sum)
        crypto, parallel = size / MB / sum(sides), size / MB / max(sides)
        results["floors_mb_s"] = {"raw": raw, "two_hops": hops, "crypto": crypto,
                                  "crypto_two_cores": parallel}  # fmt: skip
        print(f"files: {size / MB:.0f} MB, chunks of {args.chunk // 1024} KiB")
        print(f"  floor raw:      loopback TCP socket, file to file   {raw:8.1f} MB/s")
        print(f"  floor two hops: through a forwarding process        {hops:8.1f} MB/s "
              f"= {100 * hops / raw:3.0f} % of raw")  # fmt: skip
        print(f"  floor crypto:   hash, seal+sign, open+check, hashes {crypto:8.1f} MB/s "
              f"= {100 * crypto / raw:3.0f} % of raw (one core; holder and recipient each "
              f"on its own {parallel:.0f} MB/s = {100 * parallel / raw:.0f} %)")  # fmt: skip
        for kind in args.links.split(","):
            with far_end(kind, tmp / kind) as (url, far):
                env = {"SWITCHBOARD_FILES_CHUNK_SIZE": str(args.chunk),
                       "SWITCHBOARD_FILES_QUOTA": str(4 * size + MB)}  # fmt: skip
                profile = None
                if args.profile is not None:
                    args.profile.mkdir(parents=True, exist_ok=True)
                    profile = args.profile.resolve() / kind
                with group(tmp / kind, url, env, profile) as (a, b):
                    got = transfer(a, b, far, source, size)
            results[kind] = got
            cpu, sys_ = got["cpu_ms_per_mb"], got["sys_ms_per_mb"]
            print(
                f"  {kind:5}: file.get {got['get_mb_s']:7.1f} MB/s = "
                f"{100 * got['get_mb_s'] / raw:3.0f} % of raw (target >= 50 %), "
                f"{100 * got['get_mb_s'] / hops:3.0f} % of two hops, "
                f"{100 * got['get_mb_s'] / crypto:3.0f} % of crypto; "
                f"file.send {size / MB / got['send_s']:.0f} MB/s; "
                f"CPU ms/MB (of it system) A {cpu['a']:.1f} ({sys_['a']:.1f}), "
                f"B {cpu['b']:.1f} ({sys_['b']:.1f}), {kind} {cpu['far']:.1f} ({sys_['far']:.1f}); "
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
