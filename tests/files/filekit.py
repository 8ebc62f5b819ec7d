"""Helpers of the shared-file suite: bytes to share, waits on a daemon's transfers, and the
place a file lands."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

from cluster import Device, timeout, wait_until

from switchboard.daemon.client import Client


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
    folder = device.home / "blobs" / blob[:2] / blob
    try:
        return sum(1 for name in os.listdir(folder) if name.isdigit())
    except OSError:
        return 0


def downloads(device: Device, agent: str = "nova") -> Path:
    return device.home / "downloads" / agent
