"""Helpers of the shared-file suite: bytes to share, waits on a daemon's transfers, and the
place a file lands."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

from cluster import Device, timeout, wait_until

from switchboard.daemon.client import Client
from switchboard.store.blobs import BlobStore


def payload(size: int, seed: int = 0) -> bytes:
    """``size`` bytes that are random-looking and different for each seed."""
    out = bytearray()
    counter = 0
    while len(out) < size:
        out += hashlib.sha256(b"%d/%d" % (seed, counter)).digest() * 64
        counter += 1
    return bytes(out[:size])


def write(tmp: Path, name: str, data: bytes) -> Path:
    path = tmp / "outbox" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def share(device: Device, path: Path, *to: str, agent: str = "luna", **extra: Any) -> Any:
    return device.call("file.send", agent=agent, to=list(to), path=str(path), **extra)


def get(device: Device, file: str, agent: str = "nova", **extra: Any) -> list[Any]:
    """``file.get`` to its end: the progress items and the last (saved) item."""
    with Client.open(device.settings.socket_path) as client:
        return list(client.stream("file.get", {"agent": agent, "file": file, **extra},
                                  duration=timeout(240)))  # fmt: skip


def wait_for(what: Any, seconds: float = 60, message: str = "") -> Any:
    """Poll ``what()`` until it is truthy (a daemon's state changing, seen through its API)."""
    return wait_until(what, seconds, message or f"{what}")


def chunks_held(device: Device, blob: str) -> int:
    return len(BlobStore(device.home / "blobs").held(blob))


def rot(device: Device, blob: str, n: int) -> None:
    """Flip a byte in the middle of chunk ``n`` of a device's stored copy."""
    store = BlobStore(device.home / "blobs")
    manifest = store.manifest(blob)
    assert manifest is not None
    with open(store.data_path(blob), "r+b") as data:
        data.seek(n * manifest.chunk_size + manifest.chunk_length(n) // 2)
        byte = data.read(1)[0]
        data.seek(-1, os.SEEK_CUR)
        data.write(bytes([byte ^ 0x01]))


def downloads(device: Device, agent: str = "nova") -> Path:
    return device.home / "downloads" / agent
