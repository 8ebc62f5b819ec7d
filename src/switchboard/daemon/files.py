"""Shared files: ``file.send``, ``files``, ``file.get`` (streaming progress), ``files.gc``; the
auto-fetch of small files shared with this device's agents; and the requests a holder answers
(``file.manifest``, the stream ``file.chunks``).

``file.send`` copies the file into this device's blob store (``store/blobs.py``), appends one
small ``file_shared`` event (hash, size, name, type, chunk list root, recipients, note) and
sends the recipients a message naming the file, resolved as ``send`` resolves its targets
(rooms too). The bytes never enter the log: a recipient's device fetches them over the
directed channel from a device that holds them (``daemon/filefetch.py``); files up to
``files_auto_fetch`` bytes at once, into each local recipient's downloads directory
(``<home>/downloads/<agent>/``), bigger ones when ``file.get`` asks. docs/files.md.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import msgspec

from switchboard import ids
from switchboard.daemon.agents import agent_name, ensure_agent
from switchboard.daemon.filefetch import (
    ChunksBody,
    files_of,
    shared_row,
    shared_rows,
)
from switchboard.daemon.filenames import check_name, mime_of, safe_name
from switchboard.daemon.messages import MAX_TEXT_LENGTH, SendParams, resolve_targets, send
from switchboard.daemon.params import AgentParams, Seconds
from switchboard.daemon.registry import Feature, after_commit
from switchboard.errors import NotFound, StoreError, UserError
from switchboard.events import Event, FileShared
from switchboard.store import projections
from switchboard.store.blobs import check_hash, encode_manifest, sha256_of

if TYPE_CHECKING:
    import sqlite3

    from switchboard.daemon.context import Context

Stored = tuple[int, Event]

# How often ``file.get`` reports progress while a fetch runs.
PROGRESS_INTERVAL: Final = 0.25
# GC drops files shared longer ago than this (their event stays in the log; a holder may serve
# them again once fetched anew).
DEFAULT_GC_MAX_AGE: Final = 30 * 24 * 3600.0
# The shortest hash prefix ``file get`` takes.
MIN_PREFIX: Final = 6


class FileSendParams(AgentParams):
    to: list[str] = msgspec.field(default_factory=list)
    path: str = ""
    """The file to share: an absolute path on this machine."""
    name: str | None = None
    """The name it is shared under (default: the file's own)."""
    note: str = ""
    wait: Seconds = 2.0


class FilesParams(AgentParams):
    all: bool = False
    """Every file shared in the group, not only those shared with or by the acting agent."""


class FileGetParams(AgentParams):
    file: str = ""
    """A file's SHA-256 (or a prefix of at least 6 hex digits) or its name."""
    output: str | None = None
    """An absolute path (or an existing directory) to save it to, instead of the downloads."""
    force: bool = False
    """Replace a file of another content at the destination."""
    wait: Seconds = 0.0
    """``file.fetch``: give up after this many seconds (0: no limit)."""


class GcParams(msgspec.Struct):
    keep_bytes: int | None = None
    """Keep at most this many bytes of blobs (default: the quota)."""
    max_age: Seconds = DEFAULT_GC_MAX_AGE
    """Drop the blobs of files shared longer ago than this many seconds."""


# -- file.send --------------------------------------------------------------------------------


async def file_send(ctx: Context, p: FileSendParams) -> dict[str, Any]:
    """Share a file: store it, append ``file_shared``, message the recipients."""
    if not p.to:
        raise UserError("no recipient: give @name, @name:DEVICE, #room, +tag or @all")
    path = Path(p.path)
    if not p.path or not path.is_absolute():
        raise UserError("give the file to share as an absolute path")
    name = check_name(p.name if p.name is not None else path.name)
    if len(p.note) > MAX_TEXT_LENGTH // 2:
        raise UserError(f"note of {len(p.note)} characters exceeds {MAX_TEXT_LENGTH // 2}")
    targets = [ids.parse_target(t) for t in p.to]
    sender = await ensure_agent(ctx, p.agent)
    recipients = await ctx.read(resolve_targets, ctx.device_id, targets, sender)
    files = files_of(ctx)
    blob, manifest = await asyncio.to_thread(
        files.store.import_file,
        path,
        max_size=ctx.settings.files_max_size,
        chunk_size=ctx.settings.files_chunk_size,
    )
    mime = mime_of(name)
    body = FileShared(hash=blob, size=manifest.size, name=name, mime=mime, root=manifest.root,
                      chunk_size=manifest.chunk_size, to=[str(t) for t in targets],
                      recipients=recipients, note=p.note)  # fmt: skip
    event_id, _ = await ctx.log.append(sender, body)
    text = (
        f"shared a file: {name} ({manifest.size} bytes, {mime}, sha256 {blob}); "
        f"get it with `switchboard file get {blob[:12]}` or the get_file tool"
    )
    if p.note.strip():
        text += f"\n\n{p.note.strip()}"
    result = await send(ctx, SendParams(agent=sender, to=p.to, text=text, wait=p.wait))
    return {"id": event_id, "hash": blob, "name": name, "size": manifest.size, "mime": mime,
            "chunks": manifest.count, "message": result}  # fmt: skip


# -- files ------------------------------------------------------------------------------------


async def files_list(ctx: Context, p: FilesParams) -> list[dict[str, Any]]:
    """The files shared with or by the acting agent (``all``: in the whole group)."""
    me = agent_name(p.agent) if p.agent else ""
    rows = await ctx.read(_visible, ctx.device_id, me, p.all)
    shorts = await ctx.read(projections.device_shorts)
    store = files_of(ctx).store
    infos = {i.hash: i for i in await asyncio.to_thread(store.blobs)}
    out = []
    for row in rows:
        info = infos.get(row["hash"])
        place = _downloads(ctx, me or "", row) if me else None
        out.append({
            "id": row["id"], "ts": row["ts"], "hash": row["hash"], "name": row["name"],
            "size": row["size"], "mime": row["mime"],
            "from": f"{row['agent']}:{shorts.get(row['origin'], row['origin'][:4].upper())}",
            "to": row["to"], "note": row.get("note", ""),
            "held": bool(info and info.complete),
            "chunks_held": info.held if info else 0,
            "path": str(place) if place is not None and place.exists() else None,
        })  # fmt: skip
    return out


def _visible(conn: sqlite3.Connection, device: str, me: str, everything: bool) -> list[Any]:
    address = f"{me}:{device}"
    return [
        row
        for row in shared_rows(conn)
        if everything
        or (row["origin"] == device and row["agent"] == me)
        or address in row.get("recipients", [])
    ]


def _downloads(ctx: Context, agent: str, row: dict[str, Any]) -> Path:
    folder = ctx.settings.home / "downloads" / agent_name(agent)
    return folder / safe_name(str(row["name"]), str(row["hash"])[:16])


# -- file.get ---------------------------------------------------------------------------------


async def file_get(ctx: Context, p: FileGetParams) -> AsyncIterator[dict[str, Any]]:
    """Fetch a file (if not held) and save it; yield progress, then where it was saved."""
    agent = await ensure_agent(ctx, p.agent)
    row = await ctx.read(_find, p.file.strip(), ctx.device_id, agent)
    dest = _destination(ctx, agent, row, p.output)
    files = files_of(ctx)
    blob = row["hash"]
    if dest.exists() and not p.force and not await asyncio.to_thread(_same, files, blob, dest):
        raise UserError(f"{dest} exists with other content: use --force to replace it")
    for attempt in range(3):
        if not await asyncio.to_thread(files.store.is_complete, blob):
            await files.admit(row)
            await asyncio.to_thread(files.want, blob, dest, p.force)
            job = files.fetch(row)
            while not job.done():
                await asyncio.wait({job}, timeout=PROGRESS_INTERVAL)
                transfer = files.transfers.get(blob)
                if transfer is not None and not job.done():
                    yield {"progress": transfer.shown()}
            job.result()  # its error, if it failed
        if str(dest) in files.placed.pop(blob, ()):
            break  # the fetch wrote it there
        try:
            await asyncio.to_thread(files.store.copy_out, blob, dest, force=p.force)
            break
        except StoreError:  # a chunk went bad since it was verified: fetch it again
            files.corrupt_chunks += 1
            if attempt == 2:
                raise
    yield {"saved": str(dest), "hash": blob, "name": row["name"], "size": row["size"],
           "mime": row["mime"]}  # fmt: skip


async def file_fetch(ctx: Context, p: FileGetParams) -> dict[str, Any]:
    """``file.get`` without the progress: where the file was saved (the MCP tool)."""
    saved: dict[str, Any] = {}
    async with asyncio.timeout(p.wait or None):
        async for item in file_get(ctx, p):
            saved = item
    return saved


def _same(files: Any, blob: str, dest: Path) -> bool:
    try:
        return sha256_of(dest) == blob
    except OSError:
        return False


def _destination(ctx: Context, agent: str, row: dict[str, Any], output: str | None) -> Path:
    if output is None:
        return _downloads(ctx, agent, row)
    dest = Path(output)
    if not dest.is_absolute():
        raise UserError("give the output as an absolute path")
    if dest.is_dir():
        return dest / safe_name(str(row["name"]), row["hash"][:16])
    if not dest.parent.is_dir():
        raise UserError(f"no directory {dest.parent} to save into")
    return dest


def _find(conn: sqlite3.Connection, text: str, device: str, agent: str) -> dict[str, Any]:
    if not text:
        raise UserError("name the file: its SHA-256, a prefix of it, or its name")
    rows = _visible(conn, device, agent, False) or []
    mine = rows
    rows_all = shared_rows(conn)
    lowered = text.lower()
    for pool in (mine, rows_all):
        if len(lowered) >= MIN_PREFIX and set(lowered) <= set("0123456789abcdef"):
            found = [r for r in pool if r["hash"].startswith(lowered)]
            if len({r["hash"] for r in found}) > 1:
                raise UserError(f"{len(found)} files start with {text[:20]}: give more digits")
            if found:
                return found[-1]
        named = [r for r in pool if r["name"] == text]
        if named:
            return named[-1]  # the latest file of that name
    raise NotFound(f"no file {text[:64]!r} was shared with this device")


# -- files.gc ---------------------------------------------------------------------------------


async def files_gc(ctx: Context, p: GcParams) -> dict[str, Any]:
    """Drop blobs nothing refers to any more, then the oldest beyond ``keep_bytes``."""
    cutoff = time.time() - p.max_age
    rows = await ctx.read(shared_rows)
    referenced = {r["hash"] for r in rows if _epoch(r["ts"]) >= cutoff}
    files = files_of(ctx)
    keep = ctx.settings.files_quota if p.keep_bytes is None else max(0, p.keep_bytes)
    done = await asyncio.to_thread(files.store.gc, referenced, max_bytes=keep, busy=files.busy())
    return {"removed": done.removed, "freed_bytes": done.freed_bytes,
            "kept_bytes": done.kept_bytes}  # fmt: skip


def _epoch(ts: str) -> float:
    import datetime as dt  # noqa: PLC0415 - only for GC

    try:
        return dt.datetime.fromisoformat(ts.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return 0.0


# -- status -----------------------------------------------------------------------------------


def transfers_of(ctx: Context) -> tuple[list[dict[str, Any]], dict[str, int]]:
    """The fetches in flight and the counters, for ``status``."""
    files = files_of(ctx)
    return [t.shown() for t in files.transfers.values()], files.statistics()


# -- what holders answer --------------------------------------------------------------------------


async def answer_manifest(ctx: Context, sender: str, payload: bytes) -> bytes:
    """``file.manifest``: a held blob's chunk list, for a device it was shared with."""
    blob = check_hash(payload.decode(errors="replace"))
    return encode_manifest(await files_of(ctx).check_asker(blob, sender))


async def answer_chunks(ctx: Context, sender: str, payload: bytes) -> AsyncIterator[bytes]:
    """``file.chunks``: the chunks asked for, in order, each checked on the way out."""
    try:
        asked = msgspec.json.decode(payload, type=ChunksBody)
    except msgspec.DecodeError as exc:
        raise UserError(f"malformed chunk request: {str(exc)[:80]}") from None
    check_hash(asked.hash)
    async for data in files_of(ctx).serve(sender, asked):
        yield data


# -- reactions ----------------------------------------------------------------------------------


def _auto_fetch(ctx: Context, stored: list[Stored]) -> None:
    """Fetch small files shared with this device's agents as soon as they are announced."""
    limit = min(ctx.settings.files_auto_fetch, ctx.settings.files_max_size)
    suffix = ":" + ctx.device_id
    for _, event in stored:
        data = event.data
        if event.origin == ctx.device_id or not isinstance(data.get("size"), int):
            continue
        agents = [r[: -len(suffix)] for r in data.get("recipients", []) if r.endswith(suffix)]
        if agents and data["size"] <= limit:
            asyncio.get_running_loop().create_task(
                _fetch_for(ctx, data["hash"], agents), name="switchboard.files.auto_fetch"
            )


async def _fetch_for(ctx: Context, blob: str, agents: list[str]) -> None:
    import logging  # noqa: PLC0415 - only when a file arrives

    files = files_of(ctx)
    try:
        check_hash(blob)
        row = await ctx.read(shared_row, blob)
        if row is None:
            return
        await files.admit(row)
        for agent in agents:
            dest = _downloads(ctx, agent, row)
            dest = await asyncio.to_thread(_free_name, files, blob, dest)
            await asyncio.to_thread(files.want, blob, dest, False)
        await files.fetch(row)
    except (UserError, StoreError, OSError) as exc:
        logging.getLogger("switchboard.daemon.files").warning(
            "! file %s not fetched: %s", blob[:12], exc
        )


def _free_name(files: Any, blob: str, dest: Path) -> Path:
    """``dest``, or beside it a name with the hash in it when another file holds ``dest``."""
    if not dest.exists() or _same(files, blob, dest):
        return dest
    return dest.with_name(f"{dest.stem}-{blob[:8]}{dest.suffix}")


def _start(ctx: Context) -> None:
    files_of(ctx).resume()


FEATURE = Feature(
    "files",
    methods={
        "file.send": file_send,
        "files": files_list,
        "file.fetch": file_fetch,
        "files.gc": files_gc,
    },
    streams={"file.get": file_get},
    reactions=[after_commit(_auto_fetch, "file_shared")],
    requests={"file.manifest": answer_manifest},
    request_streams={"file.chunks": answer_chunks},
    start=_start,
)
