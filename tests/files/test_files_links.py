"""Shared files between two real daemons over each kind of link: the relay, Mosquitto, NATS.

Every size that sits on a chunk boundary (0 B, 1 B, one chunk, one chunk and a byte) and a
20 MB file arrive byte for byte, fetched over the directed channel; neither the relay's store
nor any device's log holds a byte of them.
"""

from __future__ import annotations

import contextlib
import hashlib
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest
from brokerlab import Mosquitto, NatsServer, group_on
from cluster import Device, Relay
from filekit import downloads, get, payload, share, wait_for, write

from switchboard.store.blobs import CHUNK_SIZE

SIZES = [0, 1, CHUNK_SIZE, CHUNK_SIZE + 1]
BIG = 20_000_000


@pytest.fixture(params=["relay", "mosquitto", "nats"])
def link(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, Path | None]]:
    """The far end of each kind of link: the URL, and the relay's data directory (if any)."""
    if request.param == "relay":
        relay = Relay(tmp_path / "relay").start()
        try:
            yield relay.url, relay.data
        finally:
            relay.kill(signal.SIGTERM)
    elif request.param == "mosquitto":
        broker: Mosquitto = request.getfixturevalue("mosquitto")
        yield broker.url, None
    else:
        server: NatsServer = request.getfixturevalue("nats_server")
        yield server.url, None


@contextlib.contextmanager
def pair(tmp: Path, url: str) -> Iterator[tuple[Device, Device]]:
    with group_on(tmp, url, "laptop", "server") as (a, b):
        b.call("register", agent="nova")
        wait_for(lambda: any(r["name"] == "nova" for r in a.call("agents")), 30)
        yield a, b


def stored_bytes(folder: Path) -> bytes:
    """Every file under ``folder`` (a store, a log: SQLite and its WAL), one after the other."""
    return b"".join(p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file())


def holds_any_of(blob: bytes, data: bytes, probes: int = 8) -> bool:
    """Whether ``blob`` contains any of ``probes`` 64-byte pieces of ``data``."""
    step = max(1, (len(data) - 64) // probes)
    return any(data[i : i + 64] in blob for i in range(0, max(1, len(data) - 63), step))


def test_files_every_boundary_size_and_20_mb_arrive_whole_over_every_link(
    link: tuple[str, Path | None], tmp_path: Path
) -> None:
    """0 B, 1 B, a chunk, a chunk and a byte (fetched on receipt) and 20 MB (on demand) reach
    the recipient's downloads byte for byte, and no store or log holds a byte of them."""
    url, relay_data = link
    with pair(tmp_path, url) as (a, b):
        sent = {}
        for n, size in enumerate(SIZES):
            data = payload(size, seed=n)
            path = write(tmp_path, f"f{n}.bin", data)
            result = share(a, path, "@nova", note=f"size {size}")
            assert result["hash"] == hashlib.sha256(data).hexdigest()
            assert result["message"]["recipients"][0]["address"].startswith("nova:")
            sent[f"f{n}.bin"] = data
        for name, data in sent.items():  # auto-fetched: all are under 1 MiB
            landed = downloads(b) / name
            wait_for(lambda landed=landed: landed.exists(), 60, f"{name} never landed")
            assert landed.read_bytes() == data
        big = payload(BIG, seed=99)
        result = share(a, write(tmp_path, "big.bin", big), "@nova")
        listed = {f["hash"]: f for f in b.call("files", agent="nova")}
        assert listed[result["hash"]]["held"] is False  # over the threshold: on demand
        items = get(b, result["hash"][:12])
        saved = items[-1]
        assert Path(saved["saved"]) == downloads(b) / "big.bin"
        assert (
            hashlib.sha256(Path(saved["saved"]).read_bytes()).digest()
            == hashlib.sha256(big).digest()
        )
        inbox = b.call("inbox", agent="nova")
        texts = [m["text"] for m in inbox]
        assert any(result["hash"] in t and "big.bin" in t and str(BIG) in t for t in texts)
        assert b.call("files", agent="nova")[-1]["held"] is True
        small_chunks = sum(-(-size // CHUNK_SIZE) for size in SIZES)
        assert b.call("status")["files"]["fetched_chunks"] == -(-BIG // CHUNK_SIZE) + small_chunks
        for device in (a, b):
            log = b"".join(
                (device.home / name).read_bytes()
                for name in ("switchboard.db", "switchboard.db-wal")
                if (device.home / name).exists()
            )
            assert not holds_any_of(log, big), f"{device.name}'s log holds file bytes"
            for data in sent.values():
                if len(data) >= 64:
                    assert not holds_any_of(log, data)
        if relay_data is not None:
            assert not holds_any_of(stored_bytes(relay_data), big), "the relay holds file bytes"
