"""The event model: one append-only log of small facts per device.

An ``Event`` is the unit that is stored, replicated and shown. Its id is ``(origin, seq)``: the
device where it happened and its gap-free sequence number there. ``type`` is a past-tense
snake_case tag and ``data`` its body.

Bodies are typed: each tag has a frozen msgspec Struct below (``MessagePosted`` for
``"message_posted"``), used to build events and to read them in projections. Replication
itself never needs the body's type, so a device stores and forwards events of types it does
not know yet.

Schema evolution rules:

1. A tag is never renamed or reused; a new meaning gets a new tag.
2. Fields may be added with defaults; none is removed or renamed or changes type.
3. Readers ignore fields they do not know (msgspec's default) and tags they do not know
   (``body_of`` returns ``None``).
"""

from __future__ import annotations

import datetime as _dt
import time
from typing import Any, Final

import msgspec

#: Statuses an agent can be in.
STATUSES: Final = ("active", "idle", "busy", "blocked", "offline")


class Event(msgspec.Struct, frozen=True, kw_only=True):
    """One fact in a device's log."""

    origin: str
    seq: int
    ts: str
    type: str
    agent: str
    data: dict[str, Any]

    @property
    def key(self) -> tuple[str, int]:
        """``(origin, seq)``, the event's global id."""
        return (self.origin, self.seq)


class Body(msgspec.Struct, frozen=True, kw_only=True, tag_field="type"):
    """Base of typed event bodies. Subclasses set ``tag``."""


class DeviceJoined(Body, frozen=True, tag="device_joined"):
    """``device_joined``: a device entered the group (first event it writes there)."""

    name: str
    public_key: str
    group: str


class GroupRekeyed(Body, frozen=True, tag="group_rekeyed"):
    """``group_rekeyed``: the group's secret was replaced, leaving ``forgotten`` devices out.

    Sealed under the key it replaces (``keyring``), so devices that held that one open it.
    ``key`` and ``previous`` are key ids (hex); ``secrets`` the new secret sealed to each
    remaining device's key (hex, by device id); ``forgotten`` each removed device's last seq
    kept in the log (its later events are refused).
    """

    group: str
    key: str
    previous: str
    secrets: dict[str, str]
    forgotten: dict[str, int]


class ForgottenHeld(Body, frozen=True, tag="forgotten_held"):
    """``forgotten_held``: this device stored events of a forgotten device up to ``seq``
    before it learned of the rotation; the group keeps them (the cut-off rises to ``seq``)."""

    group: str
    device: str
    seq: int


class AgentRegistered(Body, frozen=True, tag="agent_registered"):
    """``agent_registered``: an agent appeared on its device, or updated its profile."""

    name: str
    harness: str = "shell"
    cwd: str = ""
    pid: int | None = None
    summary: str = ""
    tags: list[str] = []
    #: The name was picked for it (``ids.pick_name``), not chosen by anyone: such an agent
    #: that never does anything is not listed once gone (daemon/presence.py).
    picked: bool = False


class StatusChanged(Body, frozen=True, tag="status_changed"):
    """``status_changed``: an agent's status changed (active, idle, busy, blocked or offline)."""

    status: str
    reason: str = ""
    summary: str | None = None


class MessagePosted(Body, frozen=True, tag="message_posted"):
    """``message_posted``: an agent sent a message.

    ``to`` keeps the targets as written (``@nova``, ``#room``, ``@all``); ``recipients`` the
    agent addresses they resolved to on the sending device.
    """

    to: list[str]
    recipients: list[str]
    text: str
    thread: str | None = None
    intent: str | None = None  # one of INTENTS
    reply_to: str | None = None  # ``origin/seq`` of the message this one answers
    priority: str = "normal"  # "normal" or "urgent" (urgent interrupts where a harness can)


class MessageDelivered(Body, frozen=True, tag="message_delivered"):
    """``message_delivered``: a message reached its recipients' device and inboxes."""

    message: str
    recipients: list[str]


class MessageRead(Body, frozen=True, tag="message_read"):
    """``message_read``: a recipient read a message."""

    message: str
    reader: str


class FileEdited(Body, frozen=True, tag="file_edited"):
    """``file_edited``: an agent edited a file: ``path`` as the agent named it; ``repo`` and
    ``repo_path`` (``switchboard.repos``) where the editing device found its repository."""

    path: str
    tool: str = ""
    repo: str = ""
    repo_path: str = ""


class CommandRun(Body, frozen=True, tag="command_run"):
    """``command_run``: an agent ran a shell command."""

    command: str
    exit_status: int | None = None


# -- rooms, presence, notices and leases (coordination; projected by store/rooms.py & co) --------

#: Room kinds: public (listed, anyone joins and reads), private (listed, join by invitation,
#: members read), secret (invisible to non-members, join by invitation, members read).
ROOM_KINDS: Final = ("public", "private", "secret")
#: Agent visibility: listed and reachable; reachable by exact address only; neither.
VISIBILITIES: Final = ("visible", "hidden", "ghost")
#: What a message asks of its recipients (``MessagePosted.intent``).
INTENTS: Final = ("request", "inform", "ack")


class RoomCreated(Body, frozen=True, tag="room_created"):
    """``room_created``: an agent created a room (and is its first member)."""

    room: str
    kind: str = "public"
    description: str = ""


class RoomJoined(Body, frozen=True, tag="room_joined"):
    """``room_joined``: an agent joined a room."""

    room: str


class RoomLeft(Body, frozen=True, tag="room_left"):
    """``room_left``: an agent left a room."""

    room: str


class RoomInvited(Body, frozen=True, tag="room_invited"):
    """``room_invited``: a member invited an agent (internal address) into a room."""

    room: str
    invitee: str


class RoomKicked(Body, frozen=True, tag="room_kicked"):
    """``room_kicked``: a room's creator removed a member (internal address) and its invitation."""

    room: str
    member: str


class RoomRead(Body, frozen=True, tag="room_read"):
    """``room_read``: an agent read a room up to a message (``origin/seq``): its cursor."""

    room: str
    last: str


class VisibilityChanged(Body, frozen=True, tag="visibility_changed"):
    """``visibility_changed``: an agent became visible, hidden or a ghost."""

    visibility: str


class NoticePosted(Body, frozen=True, tag="notice_posted"):
    """``notice_posted``: the device told agents (internal addresses) of something.

    ``kind`` says what: ``member_joined``, ``member_left``, ``member_status``, ``invited``,
    ``watch_fired``, ``edit_conflict``. ``subject`` is the agent it is about, ``ref`` the
    message it concerns (watches).
    """

    kind: str
    recipients: list[str]
    text: str
    to: list[str] = []
    room: str | None = None
    subject: str = ""
    path: str = ""
    ref: str | None = None


class LeaseAcquired(Body, frozen=True, tag="lease_acquired"):
    """``lease_acquired``: an agent announced it works on paths (globs) of a repository."""

    paths: list[str]
    expires: str
    repo: str = ""
    exclusive: bool = False
    reason: str = ""


class LeaseReleased(Body, frozen=True, tag="lease_released"):
    """``lease_released``: an agent released its leases on paths (none named: all of them)."""

    paths: list[str] = []
    repo: str = ""


# -- agents in harnesses: context delivery and session lifecycle (store/delivery.py) -------------


class MessageInjected(Body, frozen=True, tag="message_injected"):
    """``message_injected``: a message was placed into a recipient agent's context.

    Written by the recipient's device when a hook, an MCP channel or a tool result put the
    message in front of the model. ``recipient`` is the internal address, ``context`` names the
    model context it went into (a harness session and its compaction generation), ``via`` the
    path (``hook:claude:PostToolUse``, ``channel``, ``tool:send``).
    """

    message: str
    recipient: str
    context: str
    via: str = ""


class InjectionFailed(Body, frozen=True, tag="injection_failed"):
    """``injection_failed``: messages due for an agent were handed to its harness, which did
    not take them (an error, or no turn started); they stay unread and are offered again.

    Written by the recipient's device, once per context and error (not at every retry).
    ``messages`` are refs (``origin/seq``), ``recipient`` the internal address, ``via`` the
    path (``hook:pi:poll``), ``error`` what the harness or plugin said.
    """

    messages: list[str]
    recipient: str
    context: str
    via: str = ""
    error: str = ""


class SessionStarted(Body, frozen=True, tag="session_started"):
    """``session_started``: an agent's harness session started, resumed or was cleared.

    Binds harness ``session`` to the acting agent; ``source`` is ``startup``, ``resume``,
    ``clear``, ``compact`` or ``implicit`` (first seen mid-session).
    """

    harness: str
    session: str
    source: str = "startup"
    cwd: str = ""


class SessionStopped(Body, frozen=True, tag="session_stopped"):
    """``session_stopped``: an agent's harness session ended."""

    harness: str
    session: str
    reason: str = ""


class ContextCompacted(Body, frozen=True, tag="context_compacted"):
    """``context_compacted``: the harness compacted the session's context (a new context)."""

    harness: str
    session: str
    trigger: str = ""


class TurnStarted(Body, frozen=True, tag="turn_started"):
    """``turn_started``: a turn began (a prompt was submitted).

    ``prompt`` holds the prompt text only when the user turned recording on.
    """

    harness: str
    session: str
    prompt: str | None = None


class TurnEnded(Body, frozen=True, tag="turn_ended"):
    """``turn_ended``: the agent finished its turn and stopped."""

    harness: str
    session: str


# -- delegation: tasks (the receiving device writes them all; tasks/lifecycle.py) -------------


class TaskRequested(Body, frozen=True, tag="task_requested"):
    """``task_requested``: a device was asked to run a task (written by that device).

    ``requester`` is the asking agent's internal address; ``dir`` the directory as asked
    (``""``: the policy's default), ``name`` the agent name asked for.
    """

    task: str
    requester: str
    harness: str
    text: str
    dir: str = ""
    name: str = ""
    tags: list[str] = []
    terminal: bool = False


class TaskAccepted(Body, frozen=True, tag="task_accepted"):
    """``task_accepted``: the policy allows the task; ``agent`` is the name it will run as,
    ``dir`` the resolved directory."""

    task: str
    agent: str
    dir: str
    max_runtime: float


class TaskRefused(Body, frozen=True, tag="task_refused"):
    """``task_refused``: the policy (or a limit) refused the task, and why."""

    task: str
    reason: str


class TaskStarted(Body, frozen=True, tag="task_started"):
    """``task_started``: the task's process runs: ``pid`` and its start time (``started``,
    from ``/proc``), so a restarted daemon can tell it from a recycled pid; ``window`` is the
    tmux window of a ``--terminal`` task."""

    task: str
    pid: int
    started: str
    agent: str
    window: str = ""


class TaskBlocked(Body, frozen=True, tag="task_blocked"):
    """``task_blocked``: the task's agent waits on a permission prompt (``prompt`` its id)."""

    task: str
    prompt: str
    tool: str = ""
    detail: str = ""  # the command, or the path, it asks for


class TaskUnblocked(Body, frozen=True, tag="task_unblocked"):
    """``task_unblocked``: a permission prompt was answered (``allow``, ``deny`` or
    ``timeout``), by whom (an internal address) and why."""

    task: str
    prompt: str
    answer: str
    by: str = ""
    reason: str = ""


class PermissionAsked(Body, frozen=True, tag="permission_asked"):
    """``permission_asked``: an agent that runs no task here (started by hand, its harness's
    hook asking us) waits on a permission prompt (``prompt`` its id); ``agent`` is the asker."""

    prompt: str
    tool: str = ""
    detail: str = ""  # the command, or the path, it asks for
    harness: str = ""


class PermissionAnswered(Body, frozen=True, tag="permission_answered"):
    """``permission_answered``: an agent's permission prompt was settled: ``allow`` or
    ``deny`` (by whom, an internal address, and why), ``timeout`` (nobody answered in time:
    the harness decides itself) or ``expired`` (answered at the harness's own prompt, or the
    daemon restarted)."""

    prompt: str
    answer: str
    by: str = ""
    reason: str = ""


class TaskProgress(Body, frozen=True, tag="task_progress"):
    """``task_progress``: the latest line of the task's output (rate-limited)."""

    task: str
    text: str


class TaskInterrupted(Body, frozen=True, tag="task_interrupted"):
    """``task_interrupted``: a stop or kill was asked (``how``: ``stop``, ``kill`` or
    ``max_runtime``), by whom."""

    task: str
    how: str
    by: str = ""


class TaskEnded(Body, frozen=True, tag="task_ended"):
    """``task_ended``: the task ended: ``state`` is ``completed``, ``failed``, ``stopped``,
    ``killed`` or ``lost``; ``result`` the output's tail, ``diff_stat`` of a git directory."""

    task: str
    state: str
    exit_status: int | None = None
    reason: str = ""
    result: str = ""
    diff_stat: str = ""
    runtime: float = 0.0


class AgentHandedOff(Body, frozen=True, tag="agent_handed_off"):
    """``agent_handed_off``: agent ``name`` of the origin device handed its work to
    ``successor`` (an internal address), started as ``task``; messages to it are offered to
    the successor from now on."""

    name: str
    successor: str
    task: str
    applied: str = ""
    """The ``diff --stat`` of the uncommitted changes applied on the successor's checkout."""


class FileShared(Body, frozen=True, tag="file_shared"):
    """``file_shared``: an agent shared a file; the bytes stay in the blob stores of the devices
    that hold them and travel over the directed channel (docs/files.md), never in the log.

    ``hash`` is the SHA-256 (hex) of the bytes, ``root`` the SHA-256 of the chunk list (every
    chunk's SHA-256 in order) a holder serves; ``to`` the targets as written, ``recipients``
    the agent addresses they resolved to on the sending device."""

    hash: str
    size: int
    name: str
    mime: str
    root: str
    chunk_size: int
    to: list[str]
    recipients: list[str]
    note: str = ""


class FileFetched(Body, frozen=True, tag="file_fetched"):
    """``file_fetched``: this device now holds a verified copy of the file ``hash`` and serves
    it to the file's other recipients (written by the device, agent ``""``)."""

    hash: str


# -- delegation: plans (task graphs; the requesting device writes them; tasks/plan.py) ---------


class PlanStep(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=False):
    """One task of a plan as ``plan_started`` records it: ``device`` is the internal id of
    the device it runs on (this plan's origin for a local one), ``depends_on`` the names of
    the tasks that must complete first."""

    name: str
    prompt: str
    harness: str = "claude"
    dir: str = ""
    device: str = ""
    depends_on: list[str] = []


class PlanStarted(Body, frozen=True, tag="plan_started"):
    """``plan_started``: a device runs a plan (a task graph) for its agent (``Event.agent``):
    ``steps`` in the plan file's order, devices resolved."""

    plan: str
    name: str
    steps: list[PlanStep]


class PlanStepStarted(Body, frozen=True, tag="plan_step_started"):
    """``plan_step_started``: a plan's step was requested as task ``task`` of its device."""

    plan: str
    step: str
    task: str


class PlanStepEnded(Body, frozen=True, tag="plan_step_ended"):
    """``plan_step_ended``: a plan's step ended: ``state`` is its task's final state
    (``completed``, ``failed``, ``refused``, ``stopped``, ``killed``, ``lost``) or ``skipped``
    (a dependency did not complete), and why."""

    plan: str
    step: str
    state: str
    task: str = ""
    reason: str = ""


class PlanEnded(Body, frozen=True, tag="plan_ended"):
    """``plan_ended``: every step of a plan ended: ``completed`` when all of them completed,
    else ``failed``."""

    plan: str
    state: str


class TerminalTyped(Body, frozen=True, tag="terminal_typed"):
    """``terminal_typed``: keystrokes were injected into a local agent's terminal (``switchboard
    term AGENT --type``), written by the agent's device, ``agent`` ``""``. ``target`` is the
    agent's name here, ``by`` the typist's internal address (its device proved by the channel
    the request came over), ``text`` what was typed (cut at 200 characters; ``""`` when the
    typist marked it secret), ``length`` its whole length, ``keys`` the named keys pressed
    after it (``Enter``, ``Escape``, ``C-c`` ...)."""

    target: str
    by: str
    text: str = ""
    length: int = 0
    keys: list[str] = []
    secret: bool = False


AnyBody = (
    DeviceJoined
    | GroupRekeyed
    | ForgottenHeld
    | AgentRegistered
    | StatusChanged
    | MessagePosted
    | MessageDelivered
    | MessageRead
    | FileEdited
    | CommandRun
    | RoomCreated
    | RoomJoined
    | RoomLeft
    | RoomInvited
    | RoomKicked
    | RoomRead
    | VisibilityChanged
    | NoticePosted
    | LeaseAcquired
    | LeaseReleased
    | MessageInjected
    | InjectionFailed
    | SessionStarted
    | SessionStopped
    | ContextCompacted
    | TurnStarted
    | TurnEnded
    | TaskRequested
    | TaskAccepted
    | TaskRefused
    | TaskStarted
    | TaskBlocked
    | TaskUnblocked
    | PermissionAsked
    | PermissionAnswered
    | TaskProgress
    | TaskInterrupted
    | TaskEnded
    | AgentHandedOff
    | FileShared
    | FileFetched
    | PlanStarted
    | PlanStepStarted
    | PlanStepEnded
    | PlanEnded
    | TerminalTyped
)

BODY_TYPES: Final[dict[str, type[Body]]] = {
    cls.__struct_config__.tag: cls  # type: ignore[misc]
    for cls in (
        DeviceJoined,
        GroupRekeyed,
        ForgottenHeld,
        AgentRegistered,
        StatusChanged,
        MessagePosted,
        MessageDelivered,
        MessageRead,
        FileEdited,
        CommandRun,
        RoomCreated,
        RoomJoined,
        RoomLeft,
        RoomInvited,
        RoomKicked,
        RoomRead,
        VisibilityChanged,
        NoticePosted,
        LeaseAcquired,
        LeaseReleased,
        MessageInjected,
        InjectionFailed,
        SessionStarted,
        SessionStopped,
        ContextCompacted,
        TurnStarted,
        TurnEnded,
        TaskRequested,
        TaskAccepted,
        TaskRefused,
        TaskStarted,
        TaskBlocked,
        TaskUnblocked,
        PermissionAsked,
        PermissionAnswered,
        TaskProgress,
        TaskInterrupted,
        TaskEnded,
        AgentHandedOff,
        FileShared,
        FileFetched,
        PlanStarted,
        PlanStepStarted,
        PlanStepEnded,
        PlanEnded,
        TerminalTyped,
    )
}

_event_encoder: Final = msgspec.msgpack.Encoder()
_event_decoder: Final = msgspec.msgpack.Decoder(Event)
_json_encoder: Final = msgspec.json.Encoder()


def tag_of(body: Body) -> str:
    """Return the wire tag of a body (``"message_posted"``)."""
    tag = body.__struct_config__.tag
    assert isinstance(tag, str)
    return tag


def data_of(body: Body) -> dict[str, Any]:
    """Return a body as the plain ``data`` dict of an event (without its tag)."""
    data: dict[str, Any] = msgspec.to_builtins(body)
    data.pop("type", None)
    return data


def body_of(event: Event) -> AnyBody | None:
    """Return the typed body of an event, or ``None`` for a type this version does not know.

    Raises:
        msgspec.ValidationError: the data does not fit the known type.
    """
    cls = BODY_TYPES.get(event.type)
    if cls is None:
        return None
    body: AnyBody = msgspec.convert(event.data, cls)  # type: ignore[assignment]
    return body


def encode_event(event: Event) -> bytes:
    """Encode an event for sealing and replication (MessagePack)."""
    return _event_encoder.encode(event)


def decode_event(data: bytes) -> Event:
    """Decode an event encoded by ``encode_event``.

    Raises:
        msgspec.DecodeError: the bytes are not a valid event.
    """
    try:
        return _event_decoder.decode(data)
    except UnicodeDecodeError as exc:
        # msgspec reports invalid UTF-8 in a string this way; keep the documented exception.
        raise msgspec.DecodeError("invalid utf-8 in an event string") from exc
    except RecursionError as exc:
        # ``data`` is typed Any, so nesting is unbounded; keep the documented exception.
        raise msgspec.DecodeError("event nested too deeply") from exc


def encode_data_json(data: dict[str, Any]) -> str:
    """Render an event's data as compact JSON (how the store keeps it)."""
    return _json_encoder.encode(data).decode()


# An event timestamp: this (UTC, to the second), then the milliseconds and a ``Z``.
_TS_SECOND: Final = "%Y-%m-%dT%H:%M:%S."


def format_ts(moment: _dt.datetime) -> str:
    """Render a UTC timestamp as ISO 8601 with milliseconds and a ``Z``."""
    utc = moment.astimezone(_dt.UTC)
    return f"{utc.strftime(_TS_SECOND)}{utc.microsecond // 1000:03d}Z"


# The second of the last ``now_ts`` and its rendering up to the milliseconds: every event
# appended is stamped, and rendering a datetime costs several times the rest of the stamp.
_second: tuple[int, str] = (-1, "")


def now_ts() -> str:
    """Return the current time as an event timestamp (``format_ts`` of now)."""
    global _second  # noqa: PLW0603 - a one-entry cache, replaced whole (thread-safe)
    second, rest = divmod(time.time_ns(), 1_000_000_000)
    cached = _second
    if cached[0] != second:
        cached = _second = (second, time.strftime(_TS_SECOND, time.gmtime(second)))
    return f"{cached[1]}{rest // 1_000_000:03d}Z"
