"""The directed channel's core: calls, streams under credit, losses repaired, replays refused."""

from __future__ import annotations

import random

import pytest
from channel_pair import CHUNK, A, B, ChannelPair, chunk_data
from hypothesis import given, settings
from hypothesis import strategies as st

from switchboard.errors import (
    LocalProtocolError,
    RemoteError,
    RemoteProtocolError,
    TransportTimeout,
    Unreachable,
    UserError,
)
from switchboard.proto import calls as m
from switchboard.proto.channel import DEFAULT_IDLE_TIMEOUT, Channel, Side
from switchboard.proto.frames import UndeliveredCode


def test_channel_call_gets_its_reply() -> None:
    """A call is answered once, and both sides forget it."""
    pair = ChannelPair()
    call = pair.call("echo", b"hello")
    pair.run()
    assert pair.outcomes[call].reply == b"HELLO"
    assert pair.runs == {call: 1}
    assert not pair.a.has_call(B, call)
    assert pair.a.next_deadline() is None and pair.b.next_deadline() is None  # linger ended


def test_channel_failure_reaches_the_caller_as_remote_error() -> None:
    """A responder's failure becomes RemoteError with its code."""
    pair = ChannelPair()
    call = pair.call("nothing-here")
    pair.run()
    error = pair.outcomes[call].error
    assert isinstance(error, RemoteError) and error.remote_code == "not_found"


def test_channel_stream_delivers_every_chunk_in_order_within_the_window() -> None:
    """A stream of 100 chunks arrives whole, in order; neither side holds more than a window."""
    pair = ChannelPair()
    call = pair.call("count", b"100", stream=True)
    pair.run()
    outcome = pair.outcomes[call]
    assert outcome.ended and outcome.error is None
    assert outcome.chunks == [chunk_data(n) for n in range(100)]
    assert pair.b.statistics().max_held_bytes <= pair.a.window * CHUNK
    assert pair.b.statistics().held_bytes == 0
    assert not pair.b.has_call(A, call, Side.RESPONDER)  # acknowledged: forgotten at once


def test_channel_empty_stream_ends() -> None:
    """A stream with no chunks ends."""
    pair = ChannelPair()
    call = pair.call("count", b"0", stream=True)
    pair.run()
    assert pair.outcomes[call].ended and pair.outcomes[call].chunks == []


def test_channel_slow_consumer_stalls_the_stream_without_failing_it() -> None:
    """A consumer that takes nothing holds the responder at one window, for longer than the
    idle timeout, and the stream carries on once it consumes again."""
    pair = ChannelPair(consuming=False)
    call = pair.call("count", b"50", stream=True)
    pair.run(max_seconds=3 * DEFAULT_IDLE_TIMEOUT)
    assert len(pair.outcomes[call].chunks) == pair.a.window
    assert pair.max_unconsumed == pair.a.window
    assert pair.outcomes[call].error is None and not pair.cancelled
    pair.consuming = True
    pair.run()
    assert pair.outcomes[call].ended
    assert pair.outcomes[call].chunks == [chunk_data(n) for n in range(50)]


@pytest.mark.parametrize("tag", ["call", "reply", "chunk", "end", "credit"])
def test_channel_lost_message_is_repaired(tag: str) -> None:
    """The first message of each kind lost on the way is sent again and the call completes."""
    lost: set[str] = set()

    def drop_first(sender: str, message: m.AnyMessage) -> bool:
        name = m.message_name(message)
        if name == tag and name not in lost:
            lost.add(name)
            return True
        return False

    pair = ChannelPair(drop_if=drop_first)
    unary = pair.call("echo", b"x")
    stream = pair.call("count", b"40", stream=True)
    pair.run()
    assert lost == {tag}
    assert pair.outcomes[unary].reply == b"X"
    assert pair.outcomes[stream].chunks == [chunk_data(n) for n in range(40)]
    assert pair.outcomes[stream].ended
    assert pair.runs == {unary: 1, stream: 1}  # repaired, never run twice


def test_channel_lost_reply_is_answered_from_the_cache_not_run_again() -> None:
    """A repeated call whose answer was lost gets the kept answer: the handler runs once."""
    replies = 0

    def drop_first_reply(sender: str, message: m.AnyMessage) -> bool:
        nonlocal replies
        replies += isinstance(message, m.Reply)
        return isinstance(message, m.Reply) and replies == 1

    pair = ChannelPair(drop_if=drop_first_reply)
    call = pair.call("echo", b"once")
    pair.run()
    assert pair.outcomes[call].reply == b"ONCE" and pair.runs == {call: 1} and replies == 2


def test_channel_peer_silent_fails_the_call_and_the_responder_cancels() -> None:
    """When the link goes silent mid-stream, the caller fails after the idle timeout with a
    timeout naming the device, and the responder cancels its side."""
    pair = ChannelPair(consuming=True)
    call = pair.call("count", b"1000", stream=True)
    for _ in range(5):
        pair.step()
    pair.cut = True
    pair.run(max_seconds=DEFAULT_IDLE_TIMEOUT * 3)
    error = pair.outcomes[call].error
    assert isinstance(error, TransportTimeout) and "stopped answering 'count'" in str(error)
    assert [c.id for c in pair.cancelled] == [call]
    assert pair.b.statistics().held_bytes == 0
    assert pair.a.next_deadline() is None and pair.b.next_deadline() is None


def test_channel_undelivered_fails_the_call_at_once() -> None:
    """An Undelivered (not connected) fails the call with Unreachable; BUSY is only a loss."""
    pair = ChannelPair(cut=True)
    call = pair.call("echo", b"x")
    pair.a.receive_undelivered(B, call, UndeliveredCode.BUSY, "queue full")
    assert pair.a.has_call(B, call)
    pair.a.receive_undelivered(B, call, UndeliveredCode.NOT_CONNECTED, "not connected")
    pair.step()
    error = pair.outcomes[call].error
    assert isinstance(error, Unreachable) and "not connected" in str(error)


def test_channel_peer_gone_ends_calls_both_ways() -> None:
    """A peer that left fails our calls of it and cancels the calls we serve for it."""
    pair = ChannelPair(consuming=False)
    ours = pair.call("count", b"100", stream=True)
    pair.run(max_seconds=1)
    theirs = 99
    pair.b.call(A, theirs, "echo", b"", now=pair.now, wall=pair.wall)
    pair.a.receive(B, theirs, pair.b.messages_to_send()[0][2], pair.now, pair.wall)
    assert [e.id for e in pair.a.events_received() if isinstance(e, m.CallReceived)] == [theirs]
    pair.b.peer_gone(A, "device left")
    pair.a.peer_gone(B, "device left")
    pair.step()
    assert isinstance(pair.outcomes[ours].error, Unreachable)
    assert isinstance(pair.outcomes[theirs].error, Unreachable)
    assert sorted(c.id for c in pair.cancelled) == [ours, theirs]  # b served ours, a theirs
    assert pair.b.statistics().held_bytes == 0


def test_channel_link_down_ends_every_call() -> None:
    """The link going down fails every open call."""
    pair = ChannelPair(cut=True)
    calls = [pair.call("echo"), pair.call("count", b"5", stream=True)]
    pair.a.link_down("link to relay lost")
    pair.step()
    assert all(isinstance(pair.outcomes[c].error, Unreachable) for c in calls)


def test_channel_replayed_call_runs_once() -> None:
    """A recorded call played again runs nothing: within the window it gets the kept answer or
    "expired", beyond it "stale"."""
    pair = ChannelPair()
    call = pair.call("echo", b"pay")
    pair.run(max_seconds=1)  # answered; its answer still kept (linger)
    recorded = next(w for w in pair.wire if isinstance(m.decode_message(w[3]), m.Call))
    for advance, expected in ((0.0, m.Reply), (60.0, m.Failure), (700.0, m.Failure)):
        pair.advance(advance)
        pair.b.tick(pair.now)
        pair.b.receive(A, recorded[2], recorded[3], pair.now, pair.wall)
        (out,) = pair.b.messages_to_send()
        answer = m.decode_message(out[2])
        assert isinstance(answer, expected)
        if isinstance(answer, m.Failure):
            assert answer.code == ("expired" if advance == 60.0 else "stale")
    assert pair.runs == {call: 1}
    assert not [e for e in pair.b.events_received() if isinstance(e, m.CallReceived)]


def test_channel_forgotten_ids_raise_the_floor() -> None:
    """Past max_remembered, the oldest ids are forgotten and calls not newer refused."""
    b = Channel(B, max_remembered=2)
    for n, ts in enumerate((100.0, 101.0, 102.0)):
        call = m.Call(n, "echo", b"", False, 1, ts)
        b.receive(A, n, m.encode_message(call), 0.0, 100.0)
    assert len(b.events_received()) == 3
    for n in range(3):
        b.reply(A, n, b"", 0.0)
    b.tick(100.0)  # answers forgotten after linger; ids 1 and 2 still remembered
    b.messages_to_send()
    b.receive(A, 0, m.encode_message(m.Call(0, "echo", b"", False, 1, 100.0)), 100.0, 100.0)
    (out,) = b.messages_to_send()
    failure = m.decode_message(out[2])
    assert isinstance(failure, m.Failure) and failure.code == "stale"


def test_channel_refuses_calls_beyond_max_incoming() -> None:
    """A responder serving max_incoming calls refuses the next as busy."""
    pair = ChannelPair(b=Channel(B, max_incoming=1))
    pair.call("count", b"1000", stream=True)
    pair.consuming = False
    pair.run(max_seconds=1)
    second = pair.call("echo")
    pair.run(max_seconds=1)
    error = pair.outcomes[second].error
    assert isinstance(error, RemoteError) and error.remote_code == "busy"


def test_channel_responder_breaking_flow_control_fails_the_call() -> None:
    """A chunk beyond the credit granted is a protocol error: the call fails, the peer is told."""
    a = Channel(A, window=2)
    a.call(B, 1, "count", b"", now=0.0, wall=0.0, stream=True)
    a.messages_to_send()
    a.receive(B, 1, m.encode_message(m.Chunk(1, 5, b"x")), 0.0, 0.0)
    events = a.events_received()
    assert isinstance(events[-1], m.CallFailed)
    assert isinstance(events[-1].error, RemoteProtocolError)
    assert [type(m.decode_message(d)) for _, _, d in a.messages_to_send()] == [m.Cancel]


def test_channel_rejects_malformed_and_mismatched_messages() -> None:
    """Garbage and a message whose id is not the frame's ref are reported, never raised."""
    b = Channel(B)
    b.receive(A, 1, b"\xc1garbage", 0.0, 0.0)
    b.receive(A, 2, m.encode_message(m.Call(1, "echo", b"", False, 1, 0.0)), 0.0, 0.0)
    events = b.events_received()
    assert [type(e) for e in events] == [m.MessageRejected, m.MessageRejected]
    assert "for call 1 in a frame for call 2" in events[1].reason
    assert b.statistics().rejected == 2


def test_channel_late_messages_for_unknown_calls_are_ignored() -> None:
    """Replies and chunks for calls we no longer have change nothing and fail nothing."""
    a = Channel(A)
    for message in (m.Reply(5, b""), m.Chunk(5, 0, b""), m.End(5, 0), m.Progress(5, 0)):
        a.receive(B, 5, m.encode_message(message), 0.0, 0.0)
    b = Channel(B)
    b.receive(A, 5, m.encode_message(m.Credit(5, 0, 1)), 0.0, 0.0)
    b.receive(A, 5, m.encode_message(m.Cancel(5)), 0.0, 0.0)
    assert not a.events_received() and not a.messages_to_send()
    assert not b.events_received() and not b.messages_to_send()


def test_channel_limits_are_local_errors() -> None:
    """Bodies over MAX_BODY and chunks without credit are refused on our side."""
    a = Channel(A)
    with pytest.raises(UserError, match="exceeds limit"):
        a.call(B, 1, "echo", b"x" * (m.MAX_BODY + 1), now=0.0, wall=0.0)
    with pytest.raises(UserError, match="kind"):
        a.call(B, 1, "", b"", now=0.0, wall=0.0)
    with pytest.raises(LocalProtocolError):
        a.send_chunk(B, 1, b"x")


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 2**32),
    loss=st.sampled_from([0.0, 0.05, 0.2]),
    duplicate=st.sampled_from([0.0, 0.1, 0.3]),
    reorder=st.sampled_from([0.0, 0.2, 0.5]),
    chunks=st.integers(0, 60),
    window=st.integers(1, 8),
)
def test_channel_converges_under_random_faults(
    seed: int, loss: float, duplicate: float, reorder: float, chunks: int, window: int
) -> None:
    """Under loss, duplication and reordering a stream and a call still complete: every chunk
    once, in order; each handler ran once; neither side ever held more than a window."""
    pair = ChannelPair(
        a=Channel(A, window=window),
        rng=random.Random(seed),
        loss=loss,
        duplicate=duplicate,
        reorder=reorder,
    )
    stream = pair.call("count", str(chunks).encode(), stream=True)
    unary = pair.call("echo", b"q")
    pair.run(max_seconds=3600)
    outcome = pair.outcomes[stream]
    if outcome.error is not None:  # only a loss streak longer than the idle timeout fails it
        assert isinstance(outcome.error, TransportTimeout)
    else:
        assert outcome.ended
        assert outcome.chunks == [chunk_data(n) for n in range(chunks)]
    assert pair.outcomes[unary].reply == b"Q" or isinstance(
        pair.outcomes[unary].error, TransportTimeout
    )
    assert all(runs == 1 for runs in pair.runs.values())
    assert pair.max_unconsumed <= window
    assert pair.b.statistics().max_held_bytes <= window * CHUNK
    assert pair.b.statistics().held_bytes == 0


def _caller_of(stream: bool) -> Channel:
    a = Channel(A, window=4)
    a.call(B, 1, "k", b"", now=0.0, wall=0.0, stream=stream)
    a.messages_to_send()
    return a


@pytest.mark.parametrize(
    ("stream", "message", "what"),
    [
        (True, m.Reply(1, b""), "a reply to a stream"),
        (False, m.Chunk(1, 0, b""), "a chunk to a call that does not stream"),
        (False, m.End(1, 0), "a end to a call that does not stream"),
        (True, m.End(1, 9), "end after 9 chunks, 0 received"),
    ],
)
def test_channel_answer_of_the_wrong_kind_fails_the_call(
    stream: bool, message: m.AnyMessage, what: str
) -> None:
    """A reply to a stream, a chunk or end to a plain call, or an end past the credit is a
    protocol error naming what came: the call fails and the responder is told to stop."""
    a = _caller_of(stream)
    a.receive(B, 1, m.encode_message(message), 0.0, 0.0)
    rejected, failed = a.events_received()
    assert isinstance(rejected, m.MessageRejected) and what in rejected.reason
    assert isinstance(failed, m.CallFailed) and isinstance(failed.error, RemoteProtocolError)
    assert [type(m.decode_message(d)) for _, _, d in a.messages_to_send()] == [m.Cancel]


def test_channel_progress_ahead_of_us_asks_for_the_rest() -> None:
    """Progress saying more was sent than we hold makes the caller ask for a resend."""
    a = _caller_of(True)
    a.receive(B, 1, m.encode_message(m.Progress(1, 3)), 0.0, 0.0)
    (out,) = a.messages_to_send()
    assert m.decode_message(out[2]) == m.Credit(1, 0, 4, resend=True)


def test_channel_credit_out_of_order_fails_the_served_call() -> None:
    """A credit for chunks never sent, or any credit for a plain call, breaks the rules."""
    for stream in (True, False):
        b = Channel(B)
        b.receive(A, 1, m.encode_message(m.Call(1, "k", b"", stream, 4, 0.0)), 0.0, 0.0)
        b.events_received()
        b.receive(A, 1, m.encode_message(m.Credit(1, 5, 9)), 0.0, 0.0)
        assert isinstance(b.events_received()[0], m.MessageRejected)
        (out,) = b.messages_to_send()[-1:]
        failure = m.decode_message(out[2])
        assert isinstance(failure, m.Failure) and failure.code == "protocol_error"


def test_channel_long_running_call_is_kept_alive_by_progress() -> None:
    """A handler that takes longer than the idle timeout is asked about and answers Progress,
    so the call survives until its reply; the handler still runs once."""
    pair = ChannelPair()
    call_id = pair.call("slow")
    pair.run(max_seconds=3 * DEFAULT_IDLE_TIMEOUT)
    assert pair.a.has_call(B, call_id) and pair.b.has_call(A, call_id, Side.RESPONDER)
    pair.b.reply(A, call_id, b"done at last", pair.now)
    pair.run()
    assert pair.outcomes[call_id].reply == b"done at last"


def test_channel_abandon_tells_the_responder_and_answers_stay_bounded() -> None:
    """Abandoning a call sends Cancel (the responder stops); answers kept for retries stay
    under max_cached_bytes; oversized replies and chunks are refused locally."""
    pair = ChannelPair(b=Channel(B, max_cached_bytes=2500))
    stream = pair.call("count", b"1000", stream=True)
    pair.consuming = False
    pair.run(max_seconds=1)
    pair.a.abandon(B, stream)
    pair.a.abandon(B, stream)  # twice is once
    pair.run(max_seconds=1)
    assert [c.id for c in pair.cancelled] == [stream]
    for _ in range(5):
        pair.call("echo", b"x" * 1000)
    pair.run(max_seconds=1)
    assert pair.b.statistics().cached_bytes <= 2500
    b = Channel(B)
    b.receive(A, 7, m.encode_message(m.Call(7, "k", b"", True, 4, 0.0)), 0.0, 0.0)
    with pytest.raises(UserError, match="exceeds limit"):
        b.send_chunk(A, 7, b"x" * (m.MAX_BODY + 1))
    with pytest.raises(UserError, match="exceeds limit"):
        b.reply(A, 7, b"x" * (m.MAX_BODY + 1), 0.0)


def test_channel_undelivered_to_a_caller_cancels_what_we_serve_it() -> None:
    """A frame of a call we serve that cannot reach its caller cancels the call here."""
    b = Channel(B)
    b.receive(A, 3, m.encode_message(m.Call(3, "k", b"", True, 4, 0.0)), 0.0, 0.0)
    b.events_received()
    b.receive_undelivered(A, 3, UndeliveredCode.NOT_CONNECTED, "not connected")
    (cancelled,) = b.events_received()
    assert isinstance(cancelled, m.CallCancelled) and "not connected" in cancelled.reason
    assert not b.has_call(A, 3, Side.RESPONDER)
