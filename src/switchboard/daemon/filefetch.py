"""Moving a shared file's bytes: the fetch of a blob from the devices that hold it, and the
chunks this device serves (``file.manifest``, ``file.chunks``).

Theory of operation
-------------------
A fetch (``Files.fetch``, one task per blob however many ask) knows the file from its
``file_shared`` row: hash, size, root. It asks a holder (the sharing device first, then the
devices that announced a verified copy with ``file_fetched``) for the chunk list, checks it
against the log's root and keeps it, then streams only the chunks the store lacks. Each chunk
is checked against its hash before it is written (a bad one is dropped and asked again);
when none is missing, the whole blob is verified, the device announces ``file_fetched`` and
the placements waiting for it (a ``want`` file beside the blob: agent downloads, ``-o`` paths)
are written. A cut link, a holder gone or a failed stream moves on to the next holder, and
waits for the group to change before going round again, until ``FETCH_PATIENCE`` passes with
no chunk gained. A daemon killed mid-fetch finds the blob's chunks and its ``want`` file at
start and carries on (``resume``).

Serving checks the asking device against the file's recipients (their devices) and re-checks
every chunk's hash as it reads it: a chunk that rotted is deleted here and the stream fails,
so the asker turns to another holder and this device fetches the chunk again when asked.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import msgspec

from switchboard.errors import (
    Forbidden,
    NotFound,
    RemoteError,
    StoreError,
    SwitchboardError,
    TransportError,
    UserError,
)
from switchboard.events import FileFetched
from switchboard.proto.calls import MAX_BODY
from switchboard.store.blobs import CHUNK_SIZE, BlobStore, Manifest, decode_manifest

if TYPE_CHECKING:
    import sqlite3

    from switchboard.daemon.context import Context

log = logging.getLogger("switchboard.daemon.files")

assert CHUNK_SIZE <= MAX_BODY, "a chunk must fit one directed-channel message"

# A fetch gives up after this long without gaining a chunk from any holder.
FETCH_PATIENCE: Final = 60.0
# One manifest request.
CALL_TIMEOUT: Final = 20.0
# Most chunk ranges one ``file.chunks`` request names (missing chunks are coalesced).
MAX_RANGES: Final = 2000


class ChunksBody(msgspec.Struct, frozen=True):
    """``file.chunks``: which blob, and ``[start, end)`` ranges of its chunks, in order."""

    hash: str
    ranges: list[tuple[int, int]]


@dataclass
class Transfer:
    """One fetch in flight (``status`` lists them)."""

    hash: str
    name: str
    size: int
    chunks: int = 0
    held: int = 0
    source: str = ""
    state: str = "starting"
    chunk_size: int = CHUNK_SIZE
    started: float = field(default_factory=time.time)

    def shown(self) -> dict[str, Any]:
        done = min(self.size, self.held * self.chunk_size)
        return {"hash": self.hash, "name": self.name, "size": self.size,
                "chunks": self.chunks, "held": self.held, "bytes": done,
                "from": self.source, "state": self.state}  # fmt: skip


class Files:
    """The daemon's files part: the blob store, fetches in flight and counters."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.store = BlobStore(ctx.settings.home / "blobs")
        self.transfers: dict[str, Transfer] = {}
        self._jobs: dict[str, asyncio.Task[None]] = {}
        self.fetched_chunks = 0  # chunks written since start
        self.served_chunks = 0  # chunks sent to other devices since start
        self.corrupt_chunks = 0  # chunks refused: wrong hash on arrival or found rotten here
        self.streams = 0  # chunk streams started (more than one per fetch: a resume)
        self.placed: dict[str, set[str]] = {}  # blob -> paths its last fetch wrote it to
        self.changed = asyncio.Event()

    def statistics(self) -> dict[str, int]:
        return {"fetched_chunks": self.fetched_chunks, "served_chunks": self.served_chunks,
                "corrupt_chunks": self.corrupt_chunks, "streams": self.streams}  # fmt: skip

    def busy(self) -> set[str]:
        return set(self._jobs)

    # -- placements waiting for a blob ------------------------------------------------------

    def want(self, blob: str, dest: Path, force: bool) -> None:
        """Remember to write ``blob`` to ``dest`` once held (survives a restart)."""
        folder = self.store.folder(blob)
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        wants = [w for w in self._wants(blob) if w["dest"] != str(dest)]
        wants.append({"dest": str(dest), "force": force})
        (folder / "want").write_text(json.dumps(wants))

    def _wants(self, blob: str) -> list[dict[str, Any]]:
        try:
            found: list[dict[str, Any]] = json.loads((self.store.folder(blob) / "want").read_text())
        except (OSError, ValueError):
            return []
        return found

    def place_wanted(self, blob: str, *, check: bool = True) -> list[str]:
        """Write a held blob wherever it is wanted; return the paths written (``check``: each
        chunk's hash again, unless it was verified just now)."""
        written = []
        for wanted in self._wants(blob):
            dest = Path(wanted["dest"])
            try:
                self.store.copy_out(blob, dest, force=bool(wanted["force"]), check=check)
                written.append(str(dest))
            except UserError as exc:
                log.warning("! file %s not saved: %s", blob[:12], exc)
        with contextlib.suppress(OSError):
            (self.store.folder(blob) / "want").unlink()
        self.placed[blob] = set(written)
        return written

    # -- fetching ---------------------------------------------------------------------------

    def fetch(self, row: dict[str, Any]) -> asyncio.Task[None]:
        """The fetch of the blob of a ``file_shared`` row (started if none runs)."""
        blob = row["hash"]
        job = self._jobs.get(blob)
        if job is None:
            job = asyncio.get_running_loop().create_task(
                self._fetch(row), name=f"switchboard.files[{blob[:12]}].fetch_loop"
            )
            self._jobs[blob] = job
            job.add_done_callback(lambda _: self._done(blob))
        return job

    def _done(self, blob: str) -> None:
        self._jobs.pop(blob, None)
        self.transfers.pop(blob, None)
        self.changed.set()

    async def admit(self, row: dict[str, Any]) -> None:
        """Refuse a file over this device's size limit, or one its quota has no room for.

        Raises:
            UserError: saying which limit, with the numbers.
        """
        blob, size, settings = row["hash"], int(row["size"]), self.ctx.settings
        if size > settings.files_max_size:
            raise UserError(
                f"file of {size} bytes exceeds this device's limit of {settings.files_max_size}"
            )
        infos = await asyncio.to_thread(self.store.blobs)
        used = sum(i.stored_bytes for i in infos if i.hash != blob)
        if used + size > settings.files_quota:
            raise UserError(
                f"file of {size} bytes would take this device's file store past its quota of "
                f"{settings.files_quota} bytes ({used} used): run `switchboard files gc`"
            )

    async def _fetch(self, row: dict[str, Any]) -> None:
        blob, size = row["hash"], int(row["size"])
        await self.admit(row)
        transfer = Transfer(hash=blob, name=row["name"], size=size)
        self.transfers[blob] = transfer
        loop = asyncio.get_running_loop()
        progress_at = started = loop.time()
        verified = False
        errors: list[str] = []
        while True:
            if await asyncio.to_thread(self.store.is_complete, blob):
                break
            manifest = await asyncio.to_thread(self.store.manifest, blob)
            if manifest is not None and not await asyncio.to_thread(
                self.store.missing, blob, manifest
            ):
                fetched = loop.time()
                transfer.state = "verifying"
                bad = await asyncio.to_thread(self.store.verify, blob, recheck=False)
                if not bad:
                    verified = True
                    log.info("= fetched %s: %d bytes in %.2f s, verified in %.2f s", blob[:12],
                             size, fetched - started, loop.time() - fetched)  # fmt: skip
                    break
                self.corrupt_chunks += len(bad)
            mark = self.ctx.changes
            holders = await self.ctx.read(holders_of, blob, self.ctx.device_id)
            gained = False
            for device in holders:
                if self.ctx.device_link(device) is None:
                    continue
                try:
                    gained = await self._from(device, row, transfer) or gained
                except (TransportError, RemoteError, StoreError, Forbidden, NotFound) as exc:
                    errors.append(f"{device[:8]}: {exc}")
                    log.info("! fetch of %s from %s: %s", blob[:12], device[:8], exc)
                if await asyncio.to_thread(self.store.is_complete, blob):
                    break
            if gained:
                progress_at = loop.time()
            elif loop.time() - progress_at > FETCH_PATIENCE:
                last = errors[-1] if errors else "none of them is connected"
                raise UserError(
                    f"could not fetch {row['name'][:60]!r} from the {len(holders)} device(s) "
                    f"holding it ({last})"
                )
            if not gained:
                transfer.state = "waiting for a holder"
                await self.ctx.wait_advanced(1.0, since=mark)
        if row["origin"] != self.ctx.device_id and not await self.ctx.read(
            announced, blob, self.ctx.device_id
        ):
            await self.ctx.log.append("", FileFetched(hash=blob))
        await asyncio.to_thread(self.place_wanted, blob, check=not verified)

    async def _from(self, device: str, row: dict[str, Any], transfer: Transfer) -> bool:
        """Fetch what is missing from one holder; whether any chunk was gained."""
        blob = row["hash"]
        manifest = await asyncio.to_thread(self.store.manifest, blob)
        if manifest is None:
            answer = await self.ctx.call_device(device, "file.manifest", blob.encode(),
                                                timeout=CALL_TIMEOUT)  # fmt: skip
            manifest = decode_manifest(answer)
            await asyncio.to_thread(self.store.save_manifest, blob, manifest, int(row["size"]),
                                    row["root"])  # fmt: skip
        missing = await asyncio.to_thread(self.store.missing, blob, manifest)
        transfer.chunks, transfer.held = manifest.count, manifest.count - len(missing)
        transfer.chunk_size = manifest.chunk_size
        transfer.source, transfer.state = device, "fetching"
        if not missing:
            return False
        ranges = _ranges(missing)[:MAX_RANGES]
        wanted = [n for start, end in ranges for n in range(start, end)]
        body = msgspec.json.encode(ChunksBody(hash=blob, ranges=ranges))
        self.streams += 1
        gained = False
        index = 0
        chunks = self.ctx.stream_device(device, "file.chunks", body)
        try:
            async for data in chunks:
                if index >= len(wanted):
                    raise StoreError(f"device {device[:8]} sent more chunks than asked")
                n = wanted[index]
                index += 1
                if await asyncio.to_thread(self.store.write_chunk, blob, manifest, n, data):
                    self.fetched_chunks += 1
                    transfer.held += 1
                    gained = True
                else:
                    self.corrupt_chunks += 1
                    log.warning(
                        "! chunk %d of %s from %s failed its hash", n, blob[:12], device[:8]
                    )
        finally:
            with contextlib.suppress(Exception):
                await chunks.aclose()  # type: ignore[attr-defined]
        return gained

    def resume(self) -> None:
        """Carry on the fetches a previous run left half done (called once at start)."""
        asyncio.get_running_loop().create_task(self._resume(), name="switchboard.files.resume")

    async def _resume(self) -> None:
        moved = await asyncio.to_thread(self.store.migrate)
        if moved:
            log.info("= moved %d blob(s) into one data file each", moved)
        infos = await asyncio.to_thread(self.store.blobs)
        for info in infos:
            if info.complete:
                continue
            row = await self.ctx.read(shared_row, info.hash)
            if row is None or not (self.store.folder(info.hash) / "want").exists():
                continue
            log.info("= resuming the fetch of %s (%d of %d chunks held)", info.hash[:12],
                     info.held, info.count)  # fmt: skip
            job = self.fetch(row)
            job.add_done_callback(_log_failure)

    # -- serving ----------------------------------------------------------------------------

    async def check_asker(self, blob: str, device: str) -> Manifest:
        """The manifest of a blob held whole here, if ``device`` may have it."""
        allowed = await self.ctx.read(devices_of_file, blob)
        if device not in allowed:
            raise Forbidden(f"file {blob[:12]} was not shared with device {device[:8]}")
        manifest = await asyncio.to_thread(self.store.manifest, blob)
        if manifest is None or not await asyncio.to_thread(self.store.is_complete, blob):
            raise NotFound(f"file {blob[:12]} is not held whole on this device")
        return manifest

    async def serve(self, device: str, asked: ChunksBody) -> AsyncIterator[bytes]:
        manifest = await self.check_asker(asked.hash, device)
        rate = self.ctx.settings.files_max_rate
        started, sent = time.monotonic(), 0
        for start, end in asked.ranges[:MAX_RANGES]:
            if not 0 <= start < end <= manifest.count:
                raise UserError(f"chunks {start}..{end} out of range")
            for n in range(start, end):
                data = await asyncio.to_thread(self.store.read_chunk, asked.hash, manifest, n)
                if data is None:
                    self.corrupt_chunks += 1
                    raise StoreError(f"chunk {n} of {asked.hash[:12]} is damaged on this device")
                if rate:
                    ahead = sent / rate - (time.monotonic() - started)
                    if ahead > 0:
                        await asyncio.sleep(ahead)
                sent += len(data)
                self.served_chunks += 1
                yield data


def files_of(ctx: Context) -> Files:
    return ctx.part(Files)


def _ranges(numbers: list[int]) -> list[tuple[int, int]]:
    ranges: list[tuple[int, int]] = []
    for n in numbers:
        if ranges and ranges[-1][1] == n:
            ranges[-1] = (ranges[-1][0], n + 1)
        else:
            ranges.append((n, n + 1))
    return ranges


def _log_failure(job: asyncio.Task[None]) -> None:
    if not job.cancelled() and isinstance(job.exception(), SwitchboardError):
        log.warning("! resumed fetch failed: %s", job.exception())


# -- reads of the log ----------------------------------------------------------------------------


def shared_rows(conn: sqlite3.Connection, blob: str | None = None) -> list[dict[str, Any]]:
    """Every ``file_shared`` event (of ``blob``), oldest first, as dicts with ``id``,
    ``origin``, ``agent``, ``ts`` and the body's fields."""
    sql = "SELECT id, origin, agent, ts, data FROM events WHERE type = 'file_shared'"
    args: tuple[Any, ...] = ()
    if blob is not None:
        sql += " AND json_extract(data, '$.hash') = ?"
        args = (blob,)
    rows = []
    for row in conn.execute(sql + " ORDER BY id", args):
        data = json.loads(row[4])
        rows.append({**data, "id": row[0], "origin": row[1], "agent": row[2], "ts": row[3]})
    return rows


def shared_row(conn: sqlite3.Connection, blob: str) -> dict[str, Any] | None:
    rows = shared_rows(conn, blob)
    return rows[-1] if rows else None


def holders_of(conn: sqlite3.Connection, blob: str, me: str) -> list[str]:
    """The devices that hold ``blob`` whole, as the log says: its sharers, then the devices
    that announced a copy (most recent first), without this one."""
    found: dict[str, None] = {}
    for row in reversed(shared_rows(conn, blob)):
        found[row["origin"]] = None
    fetched = conn.execute(
        "SELECT origin FROM events WHERE type = 'file_fetched' "
        "AND json_extract(data, '$.hash') = ? ORDER BY id DESC",
        (blob,),
    )
    for (origin,) in fetched:
        found[origin] = None
    found.pop(me, None)
    return list(found)


def announced(conn: sqlite3.Connection, blob: str, me: str) -> bool:
    """Whether this device told the group it holds ``blob`` already."""
    found = conn.execute(
        "SELECT 1 FROM events WHERE type = 'file_fetched' AND origin = ? "
        "AND json_extract(data, '$.hash') = ? LIMIT 1",
        (me, blob),
    ).fetchone()
    return found is not None


def devices_of_file(conn: sqlite3.Connection, blob: str) -> set[str]:
    """The devices a blob was shared with or by: who may fetch it."""
    devices: set[str] = set()
    for row in shared_rows(conn, blob):
        devices.add(row["origin"])
        devices.update(r.rpartition(":")[2] for r in row.get("recipients", []))
    return devices
