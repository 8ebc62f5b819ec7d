"""Transcripts: ``transcript.read`` and ``transcript.search`` of an agent's conversation, read
from its harness's own files on the agent's device, and ``transcript.allow|deny``.

Theory of operation
-------------------
The agent's hooks tell this daemon where its harness keeps the session's transcript
(``note_source``, from ``agent.hook``: the payload's ``transcript_path`` or the harness's
session root in the hook's environment; local table ``transcript_sources``). A read finds the
agent's latest session (projection ``sessions``), the file, and parses it with
``transcripts.formats`` into exchanges numbered from 1 (``AGENT#12``).

An agent of another device is read on that device: the request ``transcript.pages`` goes
over the directed channel (it proves the sender), the owner checks its spawn policy
(``policy.may_read_transcript``: by default only the agent's own device may read), and
streams the answer as pages, a header first, then pages of at most ``PAGE_EXCHANGES``
exchanges and ``PAGE_BYTES`` bytes each. Nothing of it is an event: transcripts never enter
the log or a relay's mailbox.
"""

from __future__ import annotations

import asyncio
import threading
from collections import OrderedDict
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Final

import msgspec

from switchboard import ids
from switchboard.daemon.params import Seconds
from switchboard.daemon.registry import Feature
from switchboard.daemon.taskrequest import policy_path, runner
from switchboard.daemon.taskrun import write_private
from switchboard.errors import Forbidden, NotFound, RemoteError, Unreachable, UserError
from switchboard.store import projections
from switchboard.store import transcripts as store
from switchboard.tasks import policy, policyfile
from switchboard.transcripts import formats, locate
from switchboard.transcripts.shapes import Exchange, Hit, Transcript, group, summarised

if TYPE_CHECKING:
    from switchboard.daemon.context import Context

# Most exchanges one read returns; older ones are there to page back to with ``before``.
MAX_LAST: Final = 500
# A page over the directed channel: well under its 256 KiB body limit (proto/calls.MAX_BODY).
PAGE_EXCHANGES: Final = 20
PAGE_BYTES: Final = 192 * 1024
# An exchange too big for a page is cut to this many characters per text.
PAGE_CUT_CHARS: Final = 4000
# Transcripts kept parsed (a 20 MB Claude Code file parses in about a second).
MAX_PARSED: Final = 8
# Search hits one search returns, and the pattern's length.
MAX_HITS: Final = 200
MAX_PATTERN: Final = 200
# Environment variables a hook reports, which place the harnesses' session roots.
ENV_KEYS: Final = ("HOME", "CLAUDE_CONFIG_DIR", "CODEX_HOME", "GEMINI_CLI_HOME",
                   "XDG_DATA_HOME", "PI_CODING_AGENT_DIR")  # fmt: skip

Last = Annotated[int, msgspec.Meta(ge=0, le=MAX_LAST)]
Before = Annotated[int, msgspec.Meta(ge=0)]
Limit = Annotated[int, msgspec.Meta(ge=1, le=MAX_HITS)]
Pattern = Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_PATTERN)]


class ReadParams(msgspec.Struct, forbid_unknown_fields=False):
    target: str
    """The agent: ``name``, ``@name``, ``name:DEV``."""
    last: Last = 20
    """How many exchanges, the most recent (0: all, up to MAX_LAST)."""
    before: Before = 0
    """Only exchanges before this number (0: up to the newest): pages back."""
    full: bool = False
    """Whole texts and tool outputs instead of summaries."""
    session: str = ""
    """One harness session of the agent (default: its most recently active)."""
    timeout: Seconds = 30.0
    """Seconds a remote read may take."""


class SearchParams(msgspec.Struct, forbid_unknown_fields=False):
    pattern: Pattern
    """Text to find (case-insensitive, plain text)."""
    target: str = ""
    """Only this agent (default: every agent of this device)."""
    limit: Limit = 50
    timeout: Seconds = 30.0


class AllowParams(msgspec.Struct, forbid_unknown_fields=False):
    device: str
    """The device: its short id, name or full id."""
    agent: list[str] = msgspec.field(default_factory=lambda: ["*"])
    """Agents of this device (names or globs) whose transcripts it may read."""


class PageBody(msgspec.Struct, frozen=True, forbid_unknown_fields=False):
    """What a device asks another for (``transcript.pages``)."""

    name: str
    last: int = 20
    before: int = 0
    full: bool = False
    session: str = ""
    pattern: str = ""
    limit: int = MAX_HITS


class Header(msgspec.Struct, frozen=True):
    """The first page of a remote read: the transcript without its exchanges."""

    harness: str
    session: str
    total: int


# -- sources (from the hooks) --------------------------------------------------------------------


class Sources:
    """What this daemon recorded per session, so an unchanged source writes nothing."""

    def __init__(self, ctx: Context) -> None:
        self.known: dict[tuple[str, str], str] = {}


async def note_source(
    ctx: Context, name: str, harness: str, session: str, *, path: str, env: dict[str, str]
) -> None:
    """Remember where ``session`` keeps its transcript (``path`` from the payload, else the
    harness's session root in the hook's environment ``env``)."""
    if not session or harness not in formats.READERS:
        return
    source = path
    if not source:
        root = locate.roots(harness, {k: v for k, v in env.items() if k in ENV_KEYS})
        source = str(root) if root is not None else ""
    known = ctx.part(Sources).known
    if not source or known.get((harness, session)) == f"{name}\0{source}":
        return
    known[(harness, session)] = f"{name}\0{source}"
    ts = datetime.now(UTC).isoformat(timespec="milliseconds")
    await ctx.write(lambda conn: store.note_source(conn, harness=harness, session=session,
                                                   name=name, source=source, ts=ts))  # fmt: skip


# -- reading here --------------------------------------------------------------------------------


def _session_of(conn: Any, device_id: str, name: str, session: str) -> dict[str, Any]:
    rows = store.sessions_of(conn, device_id, name)
    if session:
        rows = [r for r in rows if r["session"] == session]
    rows = [r for r in rows if r["harness"] in formats.READERS] or rows
    if not rows:
        raise NotFound(f"agent {name} has no harness session here to read a transcript of")
    row = dict(rows[0])
    row["source"] = store.source_of(conn, row["harness"], row["session"])
    return row


class Parsed:
    """The last few transcripts parsed, by file and session, kept while the file (and an
    SQLite WAL beside it) is unchanged: paging and searching re-read one file many times."""

    def __init__(self, ctx: Context) -> None:
        self.cache: OrderedDict[tuple[str, str], tuple[Any, list[Exchange]]] = OrderedDict()
        self.lock = threading.Lock()  # reads parse in worker threads


def _stamp(path: Path) -> tuple[tuple[int, int], ...]:
    stamps = []
    for each in (path, path.with_name(path.name + "-wal")):
        try:
            st = each.stat()
        except OSError:
            continue
        stamps.append((st.st_size, st.st_mtime_ns))
    return tuple(stamps)


def _parse(parsed: Parsed, harness: str, session: str, source: str
           ) -> tuple[list[Exchange], str]:  # fmt: skip
    path = locate.find(harness, session, source)
    key, stamp = (str(path), session), _stamp(path)
    with parsed.lock:
        held = parsed.cache.get(key)
    if held is not None and held[0] == stamp:
        return held[1], str(path)
    exchanges = group(formats.read(harness, path, session))
    with parsed.lock:
        parsed.cache[key] = (stamp, exchanges)
        parsed.cache.move_to_end(key)
        while len(parsed.cache) > MAX_PARSED:
            parsed.cache.popitem(last=False)
    return exchanges, str(path)


async def local_exchanges(
    ctx: Context, name: str, *, session: str = ""
) -> tuple[dict[str, Any], list[Exchange]]:
    """Every exchange of this device's agent ``name`` (its latest session, or ``session``),
    with the session row (``harness``, ``session``, ``source``: the file read)."""
    row = await ctx.read(_session_of, ctx.device_id, name, session)
    exchanges, path = await asyncio.to_thread(_parse, ctx.part(Parsed), row["harness"],
                                              row["session"], row["source"])  # fmt: skip
    row["source"] = path
    return row, exchanges


def window(exchanges: list[Exchange], last: int, before: int, full: bool) -> list[Exchange]:
    """The ``last`` exchanges before number ``before`` (0: the newest), summarised unless
    ``full``."""
    chosen = [e for e in exchanges if not before or e.n < before]
    if last:
        chosen = chosen[-last:]
    return chosen if full else [summarised(e) for e in chosen]


def matches(exchanges: list[Exchange], agent: str, pattern: str, limit: int) -> list[Hit]:
    """The messages of ``exchanges`` whose text or tool calls contain ``pattern``."""
    wanted = pattern.casefold()
    hits: list[Hit] = []
    for exchange in exchanges:
        for message in exchange.messages:
            texts = [message.text, *(f"{t.name} {t.input} {t.output}" for t in message.tools)]
            for text in texts:
                at = text.casefold().find(wanted)
                if at >= 0:
                    start = max(0, at - 80)
                    snippet = " ".join(text[start : at + len(pattern) + 80].split())
                    hits.append(Hit(agent, exchange.n, message.role, message.ts, snippet))
                    break
            if len(hits) >= limit:
                return hits
    return hits


# -- the methods ---------------------------------------------------------------------------------


async def resolve(ctx: Context, target: str) -> dict[str, Any]:
    """The agent row of ``target`` (``name``, ``@name``, ``name:DEV``): the local one first
    when the name is on several devices.

    Raises:
        NotFound: no such agent is known.
        UserError: the name is on several other devices and no device was given.
    """
    parsed = ids.parse_target(target)
    if not isinstance(parsed, ids.AgentTarget):
        raise UserError(f"{target[:40]!r} is not an agent (name, @name or name:DEV)")
    rows = await ctx.read(projections.find_agents, parsed.name, parsed.device)
    if not rows:
        raise NotFound(f"no agent {target[:40]} is known here")
    local = [r for r in rows if r["device_id"] == ctx.device_id]
    if local:
        return dict(local[0])
    if len(rows) > 1:
        where = ", ".join(f"{r['name']}:{r['short']}" for r in rows)
        raise UserError(f"{len(rows)} agents are named {parsed.name} ({where}): name the device")
    return dict(rows[0])


def _address(agent: dict[str, Any]) -> str:
    return f"{agent['name']}:{agent['short'] or agent['device_id'][:4].upper()}"


async def transcript_read(ctx: Context, p: ReadParams) -> Transcript:
    """An agent's transcript: its ``last`` exchanges (before ``before``), here or remote.

    Raises:
        NotFound: no such agent, session or transcript file.
        Forbidden: the agent's device does not let this one read it.
        Unreachable: the agent's device is not connected.
    """
    agent = await resolve(ctx, p.target)
    body = PageBody(name=agent["name"], last=p.last, before=p.before, full=p.full,
                    session=p.session)  # fmt: skip
    if agent["device_id"] != ctx.device_id:
        return await _remote_read(ctx, agent, body, p.timeout)
    row, exchanges = await local_exchanges(ctx, agent["name"], session=p.session)
    return Transcript(agent=_address(agent), harness=row["harness"], session=row["session"],
                      total=len(exchanges), exchanges=window(exchanges, p.last, p.before, p.full),
                      source=row["source"])  # fmt: skip


async def recent_exchanges(ctx: Context, agent: dict[str, Any] | str, last: int) -> list[Exchange]:
    """The ``last`` exchanges of an agent (its row from ``projections.find_agents``, or a
    reference ``name``/``name:DEV``), in full, local or remote; for a handoff's brief.

    Raises:
        as ``transcript_read``.
    """
    ref = agent if isinstance(agent, str) else _address(agent)
    read = await transcript_read(ctx, ReadParams(target=ref, last=min(last, MAX_LAST), full=True))
    return read.exchanges


async def transcript_search(ctx: Context, p: SearchParams) -> list[Hit]:
    """Messages containing ``pattern``: of one agent (here or remote), or of every agent of
    this device."""
    if p.target:
        agent = await resolve(ctx, p.target)
        if agent["device_id"] != ctx.device_id:
            body = PageBody(name=agent["name"], pattern=p.pattern, limit=p.limit)
            answer = await _call(ctx, agent, "transcript.search", body, p.timeout)
            return msgspec.json.decode(answer, type=list[Hit])
        agents = [agent]
    else:
        agents = [r for r in await ctx.read(projections.list_agents)
                  if r["device_id"] == ctx.device_id]  # fmt: skip
    hits: list[Hit] = []
    for agent in agents:
        try:
            _, exchanges = await local_exchanges(ctx, agent["name"])
        except NotFound:
            if p.target:
                raise
            continue
        hits += matches(exchanges, _address(agent), p.pattern, p.limit - len(hits))
        if len(hits) >= p.limit:
            break
    return hits


async def transcript_allow(ctx: Context, p: AllowParams) -> dict[str, Any]:
    """Let a device read the transcripts of agents of this one (spawn.toml ``transcripts``)."""
    device = await device_of(ctx, p.device)
    if device == ctx.device_id:
        raise UserError("this device reads its own agents' transcripts already")
    names = await ctx.read(projections.list_devices)
    name = next((r["name"] for r in names if r["device_id"] == device), "") or ""
    for pattern in p.agent:
        if not pattern or len(pattern) > 64 or any(ord(c) < 32 for c in pattern):
            raise UserError(f"agent pattern {pattern[:20]!r} is not a name or glob")
    async with runner(ctx).lock:
        text = await asyncio.to_thread(_read_text, policy_path(ctx))
        new = policyfile.allow_transcripts(text, device, agents=p.agent, name=name)
        await asyncio.to_thread(write_private, policy_path(ctx), new.encode())
    return await _grants(ctx, device)


async def transcript_deny(ctx: Context, p: AllowParams) -> dict[str, Any]:
    """Take a device's reading of this device's transcripts away."""
    device = await device_of(ctx, p.device)
    async with runner(ctx).lock:
        text = await asyncio.to_thread(_read_text, policy_path(ctx))
        new, changed = policyfile.deny_transcripts(text, device)
        if changed:
            await asyncio.to_thread(write_private, policy_path(ctx), new.encode())
    return {**await _grants(ctx, device), "changed": changed}


async def _grants(ctx: Context, device: str) -> dict[str, Any]:
    rules = await asyncio.to_thread(policy.load, policy_path(ctx))
    grant = rules.devices.get(device)
    shorts = {r["device_id"]: r["short"] for r in await ctx.read(projections.list_devices)}
    return {"device": shorts.get(device, device[:4].upper()), "id": device,
            "transcripts": list(grant.transcripts) if grant else []}  # fmt: skip


async def device_of(ctx: Context, text: str) -> str:
    rows = await ctx.read(projections.list_devices)
    found = {
        r["device_id"]
        for r in rows
        if text.upper() == r["short"] or text.lower() == r["device_id"] or text == r["name"]
    }
    if not found:
        raise NotFound(f"unknown device {text[:30]}")
    if len(found) > 1:
        raise UserError(f"device name {text[:30]} is ambiguous: use its short id")
    return str(found.pop())


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return ""


# -- across devices ------------------------------------------------------------------------------


async def _call(ctx: Context, agent: dict[str, Any], kind: str, body: PageBody,
                timeout: float) -> bytes:  # fmt: skip
    try:
        return await ctx.call_device(agent["device_id"], kind, msgspec.json.encode(body),
                                     timeout=timeout)  # fmt: skip
    except Unreachable as exc:
        raise Unreachable(agent["short"], exc.reason) from exc
    except RemoteError as exc:
        raise _translated(agent, exc) from exc


def _translated(agent: dict[str, Any], exc: RemoteError) -> Exception:
    """A refusal or a miss on the agent's device, as this device's own error."""
    detail = str(exc).partition(": ")[2]
    kinds: dict[str, type[Exception]] = {"forbidden": Forbidden, "not_found": NotFound}
    kind = kinds.get(exc.remote_code)
    return kind(f"{agent['short']}: {detail}") if kind is not None else exc


async def _remote_read(ctx: Context, agent: dict[str, Any], body: PageBody,
                       timeout: float) -> Transcript:  # fmt: skip
    header: Header | None = None
    exchanges: list[Exchange] = []

    async def pull() -> None:
        nonlocal header
        pages = ctx.stream_device(agent["device_id"], "transcript.pages",
                                  msgspec.json.encode(body), timeout=timeout)  # fmt: skip
        async for page in pages:
            if header is None:
                header = msgspec.json.decode(page, type=Header)
            else:
                exchanges.extend(msgspec.json.decode(page, type=list[Exchange]))

    try:
        await asyncio.wait_for(pull(), timeout)
    except Unreachable as exc:
        raise Unreachable(agent["short"], exc.reason) from exc
    except RemoteError as exc:
        raise _translated(agent, exc) from exc
    if header is None:
        raise NotFound(f"device {agent['short']} sent no transcript of {agent['name']}")
    return Transcript(agent=_address(agent), harness=header.harness, session=header.session,
                      total=header.total, exchanges=exchanges)  # fmt: skip


async def _allowed(ctx: Context, sender: str, body: bytes) -> PageBody:
    try:
        asked = msgspec.json.decode(body, type=PageBody)
    except msgspec.DecodeError as exc:
        raise Forbidden(f"malformed request: {str(exc)[:100]}") from None
    rules = await asyncio.to_thread(policy.load, policy_path(ctx))
    if not policy.may_read_transcript(rules, sender, local=sender == ctx.device_id,
                                      agent=asked.name):  # fmt: skip
        raise Forbidden(f"device {sender[:8]} may not read transcripts of {asked.name[:40]} "
                        "here (transcript allow DEVICE on this device)")  # fmt: skip
    return asked


def pages(exchanges: list[Exchange]) -> list[bytes]:
    """``exchanges`` as pages: at most PAGE_EXCHANGES each and PAGE_BYTES (an exchange too
    big for one page is cut)."""
    out: list[bytes] = []
    current: list[bytes] = []
    size = 0
    for exchange in exchanges:
        data = msgspec.json.encode(exchange)
        if len(data) > PAGE_BYTES:
            data = msgspec.json.encode(summarised(exchange, PAGE_CUT_CHARS))
        if len(data) > PAGE_BYTES:
            data = msgspec.json.encode(summarised(exchange))
        if current and (len(current) >= PAGE_EXCHANGES or size + len(data) > PAGE_BYTES):
            out.append(b"[" + b",".join(current) + b"]")
            current, size = [], 0
        current.append(data)
        size += len(data) + 1
    if current:
        out.append(b"[" + b",".join(current) + b"]")
    return out


async def answer_pages(ctx: Context, sender: str, body: bytes) -> Any:
    """``transcript.pages``: a transcript of an agent of this device, for a device the
    policy lets read it: its header, then its pages."""
    asked = await _allowed(ctx, sender, body)
    row, exchanges = await local_exchanges(ctx, asked.name, session=asked.session)
    chosen = window(exchanges, min(asked.last, MAX_LAST), asked.before, asked.full)
    yield msgspec.json.encode(Header(row["harness"], row["session"], len(exchanges)))
    for page in pages(chosen):
        yield page


async def answer_search(ctx: Context, sender: str, body: bytes) -> bytes:
    """``transcript.search``: the hits in a transcript of an agent of this device."""
    asked = await _allowed(ctx, sender, body)
    if not asked.pattern or len(asked.pattern) > MAX_PATTERN:
        raise Forbidden("a search needs a pattern of 1 to 200 characters")
    _, exchanges = await local_exchanges(ctx, asked.name)
    address = f"{asked.name}:{ctx.short}"
    return msgspec.json.encode(matches(exchanges, address, asked.pattern,
                                       min(asked.limit, MAX_HITS)))  # fmt: skip


FEATURE = Feature(
    "transcripts",
    methods={
        "transcript.read": transcript_read,
        "transcript.search": transcript_search,
        "transcript.allow": transcript_allow,
        "transcript.deny": transcript_deny,
    },
    requests={"transcript.search": answer_search},
    request_streams={"transcript.pages": answer_pages},
)
