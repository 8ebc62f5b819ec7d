"""Shared files under faults: a link cut mid-transfer at a proxy, a daemon killed with SIGKILL
mid-transfer, and a byte flipped on the wire. Each transfer resumes with the chunks it holds
(counted: none is fetched twice) and delivers exactly the bytes that were shared."""

from __future__ import annotations

import contextlib
import hashlib
import signal
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from cluster import Device, Proxy, Relay, timeout
from filekit import chunks_held, downloads, get, payload, share, wait_for, write

from switchboard.store.blobs import CHUNK_SIZE

SIZE = 8_000_000  # 31 chunks
CHUNKS = -(-SIZE // CHUNK_SIZE)
# The sender serves this fast, so that a test can act in the middle of a transfer.
RATE = {"SWITCHBOARD_FILES_MAX_RATE": "2000000"}


class FlippingProxy(Proxy):
    """A proxy that flips one byte of what the relay sends a client, once that connection
    has carried ``after`` bytes towards the client."""

    def __init__(self, target_port: int, after: int) -> None:
        self.after = after
        self.flipped = 0
        super().__init__(target_port)

    def _pipe(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            towards_client = src.getpeername()[1] == self.target_port
        except OSError:
            return
        carried = 0
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                carried += len(data)
                if towards_client and not self.flipped and carried > self.after and len(data) > 256:
                    middle = len(data) // 2
                    data = data[:middle] + bytes([data[middle] ^ 0x20]) + data[middle + 1 :]
                    self.flipped += 1
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (src, dst):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)


@contextlib.contextmanager
def behind(tmp: Path, proxy_of: Any, env_a: dict[str, str]) -> Iterator[tuple[Device, Device, Any]]:
    relay = Relay(tmp / "relay").start()
    proxy = proxy_of(relay.port)
    a, b = Device(tmp / "a", "laptop"), Device(tmp / "b", "server")
    a.env.update(env_a)
    b.env.update({"SWITCHBOARD_FILES_AUTO_FETCH": "0"})
    try:
        a.start(), b.start()
        invite = a.call("group.create", name="files", relay=proxy.url)["invite"]
        b.call("join", invite=invite)
        b.call("register", agent="nova")
        wait_for(lambda: any(r["name"] == "nova" for r in a.call("agents")), 30)
        yield a, b, proxy
    finally:
        for device in (a, b):
            device.kill(signal.SIGTERM)
        proxy.close()
        relay.kill(signal.SIGTERM)


def in_thread(fn: Any, *args: Any) -> tuple[threading.Thread, dict[str, Any]]:
    box: dict[str, Any] = {}

    def run() -> None:
        try:
            box["result"] = fn(*args)
        except Exception as exc:  # the test looks at it
            box["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, box


def test_files_cut_link_resumes_without_fetching_a_chunk_twice(tmp_path: Path) -> None:
    """Every connection is reset at the proxy a quarter of the way through: the fetch goes on
    with the chunks it holds; each chunk is written once, and the sender serves less than the
    file twice over."""
    with behind(tmp_path, Proxy, RATE) as (a, b, proxy):
        data = payload(SIZE, seed=1)
        blob = share(a, write(tmp_path, "cut.bin", data), "@nova")["hash"]
        thread, box = in_thread(get, b, blob)
        wait_for(lambda: chunks_held(b, blob) >= CHUNKS // 4, 60, "the transfer never started")
        held_at_cut = chunks_held(b, blob)
        proxy.cut()
        thread.join(timeout(120))
        assert "error" not in box, box.get("error")
        assert held_at_cut < CHUNKS
        saved = Path(box["result"][-1]["saved"])
        assert hashlib.sha256(saved.read_bytes()).digest() == hashlib.sha256(data).digest()
        fetched = b.call("status")["files"]
        served = a.call("status")["files"]["served_chunks"]
        assert fetched["fetched_chunks"] == CHUNKS, "a chunk was fetched twice"
        assert fetched["streams"] >= 2, "the cut did not interrupt the stream"
        assert served < 2 * CHUNKS, f"the sender served {served} chunks for {CHUNKS}"


def test_files_daemon_killed_mid_transfer_resumes_after_restart(tmp_path: Path) -> None:
    """The receiving daemon is SIGKILLed mid-transfer; restarted, it carries the fetch on by
    itself, fetches exactly the chunks it lacked and saves the file where it was asked."""
    with behind(tmp_path, Proxy, RATE) as (a, b, _):
        data = payload(SIZE, seed=2)
        blob = share(a, write(tmp_path, "kill.bin", data), "@nova")["hash"]
        _, box = in_thread(get, b, blob)
        wait_for(lambda: chunks_held(b, blob) >= CHUNKS // 3, 60, "the transfer never started")
        b.kill(signal.SIGKILL)
        held = chunks_held(b, blob)
        assert 0 < held < CHUNKS
        b.start()
        landed = downloads(b) / "kill.bin"
        wait_for(landed.exists, 120, "the fetch did not resume after the restart")
        assert hashlib.sha256(landed.read_bytes()).digest() == hashlib.sha256(data).digest()
        assert b.call("status")["files"]["fetched_chunks"] == CHUNKS - held
        assert "error" in box  # the first get's connection died with its daemon


def test_files_byte_flipped_on_the_wire_is_never_delivered(tmp_path: Path) -> None:
    """A byte flipped in the middle of the transfer (at the proxy, relay to recipient) is
    caught (the seal, or a chunk's hash), the chunk is fetched again, and the file arrives
    exactly as shared, each chunk written once."""
    with behind(tmp_path, lambda port: FlippingProxy(port, 2_000_000), {}) as (a, b, proxy):
        data = payload(SIZE, seed=3)
        blob = share(a, write(tmp_path, "flip.bin", data), "@nova")["hash"]
        saved = Path(get(b, blob)[-1]["saved"])
        assert proxy.flipped == 1
        assert hashlib.sha256(saved.read_bytes()).digest() == hashlib.sha256(data).digest()
        assert b.call("status")["files"]["fetched_chunks"] == CHUNKS
