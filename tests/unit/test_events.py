"""The event model: round trips, typed bodies, timestamps."""

from __future__ import annotations

import contextlib
import datetime as dt

import msgspec
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from strategies import events

from switchboard.events import (
    BODY_TYPES,
    AgentHandedOff,
    AgentRegistered,
    Body,
    CommandRun,
    ContextCompacted,
    DeviceJoined,
    Event,
    FileEdited,
    FileFetched,
    FileShared,
    ForgottenHeld,
    GroupRekeyed,
    InjectionFailed,
    LeaseAcquired,
    LeaseReleased,
    MessageDelivered,
    MessageInjected,
    MessagePosted,
    MessageRead,
    NoticePosted,
    PermissionAnswered,
    PermissionAsked,
    PlanEnded,
    PlanStarted,
    PlanStep,
    PlanStepEnded,
    PlanStepStarted,
    RoomCreated,
    RoomInvited,
    RoomJoined,
    RoomKicked,
    RoomLeft,
    RoomRead,
    SessionStarted,
    SessionStopped,
    StatusChanged,
    TaskAccepted,
    TaskBlocked,
    TaskEnded,
    TaskInterrupted,
    TaskProgress,
    TaskRefused,
    TaskRequested,
    TaskStarted,
    TaskUnblocked,
    TerminalTyped,
    TurnEnded,
    TurnStarted,
    VisibilityChanged,
    body_of,
    data_of,
    decode_event,
    encode_data_json,
    encode_event,
    format_ts,
    now_ts,
    tag_of,
)

BODIES: list[Body] = [
    DeviceJoined(name="box", public_key="k", group="g"),
    GroupRekeyed(
        group="g", key="0a0b0c0d", previous="01020304", secrets={"d": "ab"}, forgotten={"x": 3}
    ),
    ForgottenHeld(group="g", device="x", seq=4),
    AgentRegistered(name="luna", pid=12, tags=["a", "b"]),
    StatusChanged(status="busy", summary=None),
    MessagePosted(to=["@nova"], recipients=["nova:abcd"], text="hi", thread="t"),
    MessageDelivered(message="o/1", recipients=["nova:abcd"]),
    MessageRead(message="o/1", reader="nova:abcd"),
    FileEdited(path="a.py", tool="edit"),
    CommandRun(command="ls", exit_status=0),
    RoomCreated(room="dev", kind="secret", description="d"),
    RoomJoined(room="dev"),
    RoomLeft(room="dev"),
    RoomInvited(room="dev", invitee="nova:abcd"),
    RoomKicked(room="dev", member="nova:abcd"),
    RoomRead(room="dev", last="o/1"),
    VisibilityChanged(visibility="ghost"),
    NoticePosted(kind="member_joined", recipients=["nova:abcd"], text="t", room="dev"),
    LeaseAcquired(paths=["src/*.py"], expires="t", repo="r", exclusive=True, reason="x"),
    LeaseReleased(paths=["src/*.py"], repo="r"),
    MessageInjected(message="o/1", recipient="nova:abcd", context="claude:s#0", via="hook"),
    InjectionFailed(
        messages=["o/1"],
        recipient="nova:abcd",
        context="pi:s#0",
        via="hook:pi:poll",
        error="no key",
    ),
    SessionStarted(harness="claude", session="s", source="resume", cwd="/r"),
    SessionStopped(harness="claude", session="s", reason="exit"),
    ContextCompacted(harness="claude", session="s", trigger="auto"),
    TurnStarted(harness="codex", session="s", prompt=None),
    TurnEnded(harness="codex", session="s"),
    TaskRequested(task="k7m2qx9a", requester="luna:abcd", harness="claude", text="fix it"),
    TaskAccepted(task="k7m2qx9a", agent="nova", dir="/r", max_runtime=60.0),
    TaskRefused(task="k7m2qx9a", reason="not allowed"),
    TaskStarted(task="k7m2qx9a", pid=42, started="123", agent="nova"),
    TaskBlocked(task="k7m2qx9a", prompt="p1", tool="Bash", detail="rm -rf build"),
    TaskUnblocked(task="k7m2qx9a", prompt="p1", answer="allow", by="luna:abcd"),
    PermissionAsked(prompt="p2", tool="Bash", detail="rm -rf build", harness="claude"),
    PermissionAnswered(prompt="p2", answer="deny", by="luna:abcd", reason="not on main"),
    TaskProgress(task="k7m2qx9a", text="step 1"),
    TaskInterrupted(task="k7m2qx9a", how="stop", by="luna:abcd"),
    TaskEnded(task="k7m2qx9a", state="failed", exit_status=3, result="tail", runtime=1.5),
    AgentHandedOff(name="luna", successor="luna:abcd", task="k7m2qx9a", applied=" a | 1 +"),
    FileShared(
        hash="ab" * 32,
        size=3,
        name="a.txt",
        mime="text/plain",
        root="cd" * 32,
        chunk_size=262144,
        to=["@nova"],
        recipients=["nova:abcd"],
        note="n",
    ),
    FileFetched(hash="ab" * 32),
    PlanStarted(plan="p1", name="ship", steps=[PlanStep(name="a", prompt="x", depends_on=["b"])]),
    PlanStepStarted(plan="p1", step="a", task="k7m2qx9a"),
    PlanStepEnded(plan="p1", step="a", state="skipped", reason="b failed"),
    PlanEnded(plan="p1", state="failed"),
    TerminalTyped(target="luna", by="boss:abcd", text="y", length=1, keys=["Enter"]),
]


def event_of(body: Body, seq: int = 1) -> Event:
    """Wrap a body in an event."""
    return Event(origin="o", seq=seq, ts="t", type=tag_of(body), agent="luna", data=data_of(body))


@settings(max_examples=200)
@given(events)
def test_events_round_trip(event: Event) -> None:
    """Every event decodes to an equal event."""
    assert decode_event(encode_event(event)) == event


def test_events_body_types_cover_every_body() -> None:
    """BODY_TYPES maps each tag to its class, and the sample bodies cover them all."""
    assert {tag_of(body) for body in BODIES} == set(BODY_TYPES)
    for tag, cls in BODY_TYPES.items():
        assert cls.__struct_config__.tag == tag


@pytest.mark.parametrize("body", BODIES, ids=tag_of)
def test_events_body_round_trips_through_event(body: Body) -> None:
    """A body put into an event's data comes back equal through encoding and body_of."""
    event = decode_event(encode_event(event_of(body)))
    assert "type" not in event.data
    assert body_of(event) == body


def test_events_body_of_unknown_type_is_none() -> None:
    """An event of a type this version does not know has no typed body."""
    event = Event(origin="o", seq=1, ts="t", type="from_the_future", agent="", data={"x": 1})
    assert body_of(event) is None


def test_events_body_of_bad_data_raises_validation_error() -> None:
    """Data that does not fit the known type raises msgspec.ValidationError."""
    event = Event(origin="o", seq=1, ts="t", type="message_posted", agent="", data={"text": 1})
    with pytest.raises(msgspec.ValidationError):
        body_of(event)


def test_events_readers_ignore_unknown_fields() -> None:
    """A body with a field added by a later version still reads (schema rule 3)."""
    data = {**data_of(FileEdited(path="a.py")), "added_later": True}
    event = Event(origin="o", seq=1, ts="t", type="file_edited", agent="", data=data)
    assert body_of(event) == FileEdited(path="a.py")


def test_events_key_is_origin_and_seq() -> None:
    """An event's key is its global id."""
    assert event_of(BODIES[0], seq=7).key == ("o", 7)


@settings(max_examples=200)
@given(st.binary(max_size=200))
@example(b"\x81\xa4data" + b"\x91" * 100_000 + b"\x00")
@example(
    encode_event(Event(origin="abc", seq=1, ts="t", type="x", agent="", data={})).replace(
        b"abc", b"a\xffc"
    )
)
def test_events_decode_garbage_raises_decode_error(data: bytes) -> None:
    """Bytes that are not an event raise msgspec.DecodeError, even too deep or bad UTF-8."""
    with contextlib.suppress(msgspec.DecodeError):
        decode_event(data)


def test_events_decode_deep_data_raises_decode_error() -> None:
    """Data nested past the interpreter's limit raises msgspec.DecodeError, not RecursionError."""
    good = encode_event(Event(origin="o", seq=1, ts="t", type="x", agent="", data={"k": 0}))
    deep = good[:-1] + b"\x91" * 100_000 + b"\x00"
    with pytest.raises(msgspec.DecodeError, match="nested too deeply"):
        decode_event(deep)


def test_events_encode_data_json_is_compact() -> None:
    """Data renders as compact JSON text."""
    assert encode_data_json({"a": [1, "é"]}) == '{"a":[1,"é"]}'


def test_events_format_ts_is_utc_milliseconds() -> None:
    """Timestamps are UTC ISO 8601 with milliseconds and a Z, whatever the input zone."""
    moment = dt.datetime(2025, 3, 4, 5, 6, 7, 891_234, tzinfo=dt.timezone(dt.timedelta(hours=2)))
    assert format_ts(moment) == "2025-03-04T03:06:07.891Z"


def test_events_now_ts_has_the_event_format() -> None:
    """now_ts returns a timestamp that parses back as UTC."""
    text = now_ts()
    assert text.endswith("Z") and len(text) == len("2025-03-04T03:06:07.891Z")
    assert dt.datetime.fromisoformat(text).tzinfo == dt.UTC


def test_events_now_ts_is_format_ts_of_now() -> None:
    """now_ts (which caches its second's rendering) lies between format_ts just before and
    just after it, across many calls (second boundaries included, over time)."""
    for _ in range(2000):
        before = format_ts(dt.datetime.now(dt.UTC))
        text = now_ts()
        after = format_ts(dt.datetime.now(dt.UTC))
        assert before <= text <= after
