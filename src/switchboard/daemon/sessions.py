"""``Sessions``: which agent a harness session or process is, and what its hooks record.

Theory of operation
-------------------
An agent in a harness is found three ways, in this order:

1. ``SWITCHBOARD_AGENT`` (the hook and the MCP server pass it as ``agent``): the user chose.
2. The harness ``session`` id, bound to an agent by a ``session_started`` event (projection
   ``sessions``). This is what survives restarts, ``--resume`` and compaction: the log holds it.
3. The harness *anchor*: the process id (and start time) of the harness process that runs the
   hook or spawned the MCP server. Hooks bind it (local table ``harness_anchors``); the MCP
   server, which never sees a session id, finds its agent through it.

When none applies, a memorable name is picked (``ids.pick_name``) and bound. Whichever of the
hook and the MCP server asks first picks it; the other then finds it through the anchor.

The context an injection goes into is the session's current one: ``harness:session#generation``,
where the generation counts compactions and ``/clear``. Without a session (an MCP-only client)
the caller's own context hint is used.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from switchboard import ids, repos
from switchboard.errors import UserError
from switchboard.events import (
    AgentRegistered,
    Body,
    CommandRun,
    ContextCompacted,
    FileEdited,
    SessionStarted,
    SessionStopped,
    StatusChanged,
    TurnEnded,
    TurnStarted,
    now_ts,
)
from switchboard.store import delivery, projections

if TYPE_CHECKING:
    from switchboard.daemon.context import Context

# A harness name, session id or path longer than this is refused or cut: real ones are far
# shorter, and these strings land in events every device stores.
MAX_FIELD: Final = 512
MAX_COMMAND: Final = 2_000
MAX_FILES: Final = 50


def located(path: str, tool: str, cwd: str) -> FileEdited:
    """A ``file_edited`` with the repository it belongs to (``switchboard.repos``), found here,
    where the file is: other devices key the edit by it."""
    repo, inside = repos.locate(path, cwd)
    return FileEdited(path=path, tool=tool, repo=repo, repo_path=inside)


@dataclass(frozen=True)
class Identity:
    """Who is acting: the agent's name and the context deliveries go into."""

    name: str
    context: str
    session: dict[str, Any] | None


def _field(value: Any, limit: int = MAX_FIELD) -> str:
    return str(value or "")[:limit]


class Sessions:
    """Identity and activity of agents running in harnesses, for one daemon."""

    def __init__(self, ctx: Context) -> None:
        self.d = ctx
        self._anchors: dict[str, tuple[str, str]] = {}
        self._activity: dict[str, tuple[list[str], int]] = {}
        self._picked: set[str] = set()  # names picked here (not chosen), while we run

    # -- identity ---------------------------------------------------------------------------

    async def identify(
        self,
        *,
        harness: str,
        session: str,
        anchor: str,
        agent: str,
        hint: str = "",
        create: bool = True,
    ) -> Identity | None:
        """Resolve (and bind) the acting agent; ``None`` if unknown and ``create`` is off.

        Raises:
            UserError: ``agent`` is not a valid name.
        """
        row = await self._session_row(harness, session)
        bound = await self.d.read(delivery.find_anchor, anchor) if anchor else None
        if agent:
            name = ids.parse_name(agent)
            self._picked.discard(name)
        elif row is not None:
            name = row["name"]
        elif bound is not None:
            name = bound["name"]
        elif create:
            name = await self._pick_name()
            self._picked.add(name)
        else:
            return None
        if anchor and self._anchors.get(anchor) != (name, session):
            await self._bind(anchor, name, harness, session)
        if row is None and not session and bound is not None and bound["session"]:
            row = await self._session_row(bound["harness"], bound["session"])
        return Identity(name, self._context(row, harness, session, anchor, hint), row)

    async def _session_row(self, harness: str, session: str) -> dict[str, Any] | None:
        if not session:
            return None
        row: dict[str, Any] | None = await self.d.read(
            delivery.find_session, self.d.device_id, harness, session
        )
        return row

    def _context(
        self, row: dict[str, Any] | None, harness: str, session: str, anchor: str, hint: str
    ) -> str:
        if row is not None:
            return delivery.context_id(row["harness"], row["session"], row["generation"])
        if session:
            return delivery.context_id(harness, session, 0)
        return hint or f"{harness or 'agent'}:anchor:{anchor or 'none'}"

    async def _bind(self, anchor: str, name: str, harness: str, session: str) -> None:
        ts = now_ts()
        await self.d.write(
            lambda conn: delivery.bind_anchor(
                conn, anchor, name, harness=harness, session=session, ts=ts
            )
        )
        self._anchors[anchor] = (name, session)

    async def _pick_name(self) -> str:
        def taken(conn: Any) -> set[str]:
            local = {
                r["name"]
                for r in projections.list_agents(conn)
                if r["device_id"] == self.d.device_id
            }
            anchored = {r[0] for r in conn.execute("SELECT name FROM harness_anchors")}
            return local | anchored

        names: set[str] = await self.d.read(taken)
        return ids.pick_name(names, secrets.randbelow(1 << 30))

    async def current_context(self, name: str, hint: str, anchor: str = "") -> str:
        """The context of agent ``name``: its anchor's session, its latest session, or ``hint``."""
        bound = await self.d.read(delivery.find_anchor, anchor) if anchor else None
        row = None
        if bound is not None and bound["name"] == name and bound["session"]:
            row = await self._session_row(bound["harness"], bound["session"])
        if row is None or row["ended_ts"]:
            row = await self.d.read(delivery.latest_session, self.d.device_id, name)
        return self._context(row, "", "", anchor, hint)

    async def rebind(self, ident: Identity) -> None:
        """Bind the identity's session to its (new) name: the agent renamed itself."""
        row = ident.session
        assert row is not None
        body = SessionStarted(harness=row["harness"], session=row["session"], source="rename")
        await self.d.log.append(ident.name, body)

    # -- what hooks record ------------------------------------------------------------------

    async def ensure_registered(
        self, name: str, harness: str, cwd: str, pid: int | None, *, force: bool = False
    ) -> None:
        """Register a local agent (with harness and directory) unless it already is."""
        found = await self.d.read(projections.find_agents, name, self.d.device_id)
        if found and not force and found[0]["harness"] == harness and found[0]["cwd"] == cwd:
            return
        summary = found[0]["summary"] if found else ""
        tags = found[0]["tags"] if found else []
        body = AgentRegistered(
            name=name, harness=harness, cwd=cwd, pid=pid, summary=summary, tags=tags,
            picked=name in self._picked,
        )  # fmt: skip
        await self.d.log.append(name, body)

    def activity_events(self, name: str, kind: str, p: Any, ident: Identity) -> list[Body]:
        """The events a hook call records, by its kind (session_start, prompt, tool, ...)."""
        harness, session = _field(p.harness, 64), _field(p.session)
        items: list[Body] = []
        row = ident.session
        if kind == "session_start":
            if p.source == "compact" and row is not None:
                items.append(ContextCompacted(harness=harness, session=session, trigger="auto"))
            else:
                source = _field(p.source, 32) or "startup"
                items.append(
                    SessionStarted(harness=harness, session=session, source=source, cwd=p.cwd)
                )
            items.append(StatusChanged(status="active", reason="session started"))
        elif session and (row is None or row["name"] != name or row["ended_ts"]):
            items.append(
                SessionStarted(harness=harness, session=session, source="implicit", cwd=p.cwd)
            )
        items += self._turn_events(name, kind, p, harness, session)
        return items

    def _turn_events(self, name: str, kind: str, p: Any, harness: str, session: str) -> list[Body]:
        items: list[Body] = []
        if kind == "prompt":
            self._activity[name] = ([], 0)
            prompt = _field(p.prompt, 4_000) if p.prompt else None
            items.append(TurnStarted(harness=harness, session=session, prompt=prompt))
            summary = prompt.strip().split("\n")[0][:120] if prompt else None
            items.append(StatusChanged(status="busy", reason="turn started", summary=summary))
        elif kind == "tool":
            items += self._tool_events(name, p)
        elif kind == "compact":
            items.append(ContextCompacted(harness=harness, session=session, trigger=p.source))
        elif kind == "stop":
            items.append(TurnEnded(harness=harness, session=session))
            items.append(
                StatusChanged(status="idle", reason="turn ended", summary=self._summary(name))
            )
        elif kind == "session_end":
            items.append(SessionStopped(harness=harness, session=session, reason=p.source))
            items.append(StatusChanged(status="offline", reason="session ended"))
        return items

    def _tool_events(self, name: str, p: Any) -> list[Body]:
        files, commands = self._activity.get(name, ([], 0))
        items: list[Body] = []
        tool = _field(p.tool, 64)
        for path in p.files[:MAX_FILES]:
            items.append(located(_field(path), tool, p.cwd))
            if path not in files:
                files.append(path)
        if p.command:
            items.append(CommandRun(command=_field(p.command, MAX_COMMAND), exit_status=p.exit))
            commands += 1
        self._activity[name] = (files, commands)
        return items

    def _summary(self, name: str) -> str | None:
        files, commands = self._activity.pop(name, ([], 0))
        parts = []
        if files:
            shown = ", ".join(path.rsplit("/", 1)[-1] for path in files[:3])
            more = f" and {len(files) - 3} more" if len(files) > 3 else ""
            parts.append(f"edited {shown}{more}")
        if commands:
            parts.append(f"ran {commands} command{'s' if commands > 1 else ''}")
        return ("last turn: " + "; ".join(parts)) if parts else None


def check_kind(kind: str, kinds: frozenset[str]) -> str:
    """Validate a hook kind.

    Raises:
        UserError: not one of ``kinds``.
    """
    if kind not in kinds:
        raise UserError(f"unknown hook kind {kind[:40]!r}: expected one of {sorted(kinds)}")
    return kind
