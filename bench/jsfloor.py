"""Floors for ``bench/run.py`` measured in its own run: a JetStream publish and a raw SQLite insert.

1. **JetStream publish floor** (``jetstream_rate``): a nats-server with JetStream (file store,
   started here) and one nats-py client publishing ``count`` payloads of one sealed event's
   size to a stream, acknowledgements awaited in windows of ``WINDOW`` (``publish_async``, then
   all of the window's acks). A message is then stored by a broker that fsyncs on its own
   schedule, with nothing sealed, signed or projected: what relay throughput is compared with.
2. **SQLite insert floor** (``sqlite_insert_rate``): the rows B stores for the same events,
   inserted with ``executemany`` into the ``events`` table of a fresh store (the same schema,
   indexes and triggers, ``synchronous=NORMAL`` in WAL as B's writer), ``CHUNK`` rows per
   transaction: what catch-up is compared with (no opening, verifying or projections).

Run alone (``python bench/jsfloor.py``) it prints both.
"""

from __future__ import annotations

import asyncio
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "tests" / d) for d in ("brokers", "integration")] + [str(ROOT / "src")]

import nats  # noqa: E402
from brokerlab import NatsServer  # noqa: E402
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey  # noqa: E402

from switchboard.crypto import new_group_secret  # noqa: E402
from switchboard.events import Event, encode_data_json  # noqa: E402
from switchboard.keyring import Keyring  # noqa: E402
from switchboard.links.supervisor import seal_events  # noqa: E402
from switchboard.proto.frames import Batch, encode_frame  # noqa: E402
from switchboard.signatures import Signer  # noqa: E402
from switchboard.store.db import Database  # noqa: E402

WINDOW = 256  # JetStream publishes in flight before their acks are awaited
CHUNK = 1000  # rows per SQLite transaction (as the bench appends in thousands)
TS = "2026-12-07T07:00:00.000000Z"


def file_edits(origin: str, count: int) -> list[Event]:
    """The bench's events (``FileEdited`` of ``src/file<n>.py``) as B stores them."""
    return [
        Event(
            origin=origin,
            seq=n,
            ts=TS,
            type="file_edited",
            agent="luna",
            data={"path": f"src/file{n}.py", "tool": "Edit"},
        )
        for n in range(1, count + 1)
    ]


def sealed_size() -> int:
    """Bytes of one such event on the wire: a one-envelope batch frame, its proof of a full
    tree included."""
    signer = Signer("bench", Ed25519PrivateKey.generate())
    events = file_edits(signer.origin, 16)
    envelopes = seal_events(Keyring.single("bench", new_group_secret()), signer, events, {})
    return len(encode_frame(Batch(envelopes=(envelopes[7],))))


async def _publish(url: str, count: int, size: int) -> float:
    nc = await nats.connect(url)
    try:
        js = nc.jetstream()
        await js.add_stream(name="floor", subjects=["floor.x"])
        payload = b"x" * size
        start = time.perf_counter()
        for first in range(0, count, WINDOW):
            acks = [
                await js.publish_async("floor.x", payload)
                for _ in range(min(WINDOW, count - first))
            ]
            await asyncio.gather(*acks)
        return count / (time.perf_counter() - start)
    finally:
        await nc.close()


def jetstream_rate(count: int, size: int) -> float:
    """Acknowledged JetStream publishes per second, on a nats-server started for it."""
    with tempfile.TemporaryDirectory(prefix="switchboard-jsfloor-") as tmp:
        server = NatsServer(Path(tmp) / "nats")
        server.start()
        try:
            return asyncio.run(_publish(server.url, count, size))
        finally:
            server.stop()


def sqlite_insert_rate(count: int, directory: Path) -> float:
    """Rows per second of a raw ``executemany`` of the bench's events into a store's table."""
    path = directory / "floor.db"
    Database(path).close()  # the store's schema, made by its migrations
    rows = [
        (n, e.origin, e.seq, e.ts, e.type, e.agent, encode_data_json(e.data))
        for n, e in enumerate(file_edits("f" * 26, count), 1)
    ]
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        start = time.perf_counter()
        for first in range(0, count, CHUNK):
            conn.execute("BEGIN")
            conn.executemany(
                "INSERT INTO events (id, origin, seq, ts, type, agent, data)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                rows[first : first + CHUNK],
            )
            conn.execute("COMMIT")
        return count / (time.perf_counter() - start)
    finally:
        conn.close()


if __name__ == "__main__":
    size = sealed_size()
    print(f"JetStream publish floor  {jetstream_rate(50_000, size):,.0f} msg/s ({size} B each)")
    with tempfile.TemporaryDirectory() as tmp:
        print(f"SQLite insert floor      {sqlite_insert_rate(100_000, Path(tmp)):,.0f} rows/s")
