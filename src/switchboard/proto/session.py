"""``SyncSession``: one side of one sync connection, without I/O.

Theory of operation
-------------------
Two sides replicate *sealed envelopes*. A device and a relay, or two devices, run the same
session; only the handshake differs by role. The session never touches a socket, a clock, a
random source or a database:

- bytes come in through ``receive_frame(data)`` and ``receive_eof()``;
- frames to write come out of ``frames_to_send()``, to be called after every input;
- what happened comes out of ``events_received()`` (``Established``, ``BatchReceived``, ...);
- the adapter tells the time with ``tick(now)`` and asks ``next_deadline()`` when to do so;
- randomness (the handshake nonce) is passed to the constructor.

Handshake (``docs/protocol.md`` §2)::

    client                                          server
    Hello(group, device, nonce, key, device_key) ->
                                                    <- Challenge(nonce', server, key', sig')
    Proof(sig, device_sig)                       ->
                                                    <- Welcome(online)

The client proves both group membership (``sig``, by the group auth key) and possession of its
device key (``device_sig``); the server refuses a ``Hello`` whose device id is not the one
derived from ``device_key``. So a member connects only as a device whose private key it holds.

After ``Welcome`` both sides are ``OPEN`` and exchange ``Have`` (what I hold), ``Batch``
(envelopes), ``Ack`` (what I have stored), ``Ping``/``Pong``, and from a relay ``Presence``.
Beside replication, an open session carries ``Direct`` frames: sealed payloads for one device
of the group, which a relay forwards to that device's session and never stores, answering
``Undelivered`` when it cannot (``docs/protocol.md`` §9; what is inside is ``proto.channel``'s).

Replication (``docs/protocol.md`` §3): each side tracks ``peer_vector``, the highest seq per
origin the peer is known to hold or has been sent. ``offer()`` sends only envelopes beyond it,
so live forwarding never repeats itself; a ``Have`` from the peer resets it to the truth, which
is how a receiver asks for a resend after a gap. Whether an envelope is new, a duplicate or
after a gap is decided by the log holder (``proto.cursors.classify``), never here.

Peer input never raises out of ``receive_*``: a bad frame fails the session, which queues
``Bye(code, reason)``, moves to ``CLOSED`` and keeps the cause in ``cause``.

What the session reports (``Established``, ``BatchReceived``, ...) is defined in
``proto.session_events`` and imported from here.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Final

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from switchboard.crypto import public_bytes
from switchboard.errors import (
    AuthError,
    ByeCode,
    ConnectionLost,
    LocalProtocolError,
    ProtocolError,
    Rejected,
    RemoteProtocolError,
    SwitchboardError,
    TransportTimeout,
)
from switchboard.ids import device_id_from_public_key
from switchboard.proto import handshake
from switchboard.proto.frames import (
    DEFAULT_MAX_FRAME_SIZE,
    MAX_BATCH_ENVELOPES,
    PROTOCOL_VERSION,
    Ack,
    Batch,
    Bye,
    Challenge,
    Direct,
    Envelope,
    Frame,
    Have,
    Hello,
    Ping,
    Pong,
    Presence,
    Presences,
    Proof,
    Undelivered,
    Welcome,
    decode_frame,
    encode_frame,
)
from switchboard.proto.session_events import (
    AckReceived,
    BatchReceived,
    Closed,
    DirectReceived,
    Established,
    HaveReceived,
    HelloReceived,
    PresenceReceived,
    SessionEvent,
    SessionStatistics,
    UndeliveredReceived,
)

__all__ = [
    "DEFAULT_HANDSHAKE_TIMEOUT",
    "DEFAULT_IDLE_TIMEOUT",
    "DEFAULT_MAX_BATCH_BYTES",
    "DEFAULT_PING_INTERVAL",
    "AckReceived",
    "BatchReceived",
    "Closed",
    "DirectReceived",
    "Established",
    "HaveReceived",
    "HelloReceived",
    "PresenceReceived",
    "Role",
    "SessionEvent",
    "SessionStatistics",
    "State",
    "SyncSession",
    "UndeliveredReceived",
    "encode_presences",
    "transition_table",
]  # fmt: skip

# Send a Ping after this long without sending anything: keeps NAT and proxies from dropping an
# idle link and lets the peer notice a dead one.
DEFAULT_PING_INTERVAL: Final = 5.0
# Give up on a peer we have heard nothing from for this long (three missed pings).
DEFAULT_IDLE_TIMEOUT: Final = 15.0
# A handshake that has not finished after this long is abandoned (slowloris guard on relays).
DEFAULT_HANDSHAKE_TIMEOUT: Final = 10.0
# Bytes of envelopes packed into one Batch frame before starting another; leaves headroom
# under the frame limit for the frame's own encoding.
DEFAULT_MAX_BATCH_BYTES: Final = 512 * 1024


class Role(enum.Enum):
    """Which end of the connection this session is."""

    CLIENT = "client"
    SERVER = "server"


class State(enum.Enum):
    """Where a session is in its life."""

    IDLE = "idle"  # client, before start()
    HELLO_SENT = "hello_sent"  # client
    AWAIT_HELLO = "await_hello"  # server
    VERIFYING = "verifying"  # server, waiting for the adapter's accept_hello()/reject()
    CHALLENGE_SENT = "challenge_sent"  # server
    PROOF_SENT = "proof_sent"  # client
    WELCOMING = "welcoming"  # server, proof checked, waiting for send_welcome()
    OPEN = "open"
    CLOSED = "closed"


# -- the transition table ------------------------------------------------------------------------
# (role, state, frame type) -> handler. Anything missing is a protocol error. Bye is accepted in
# every state but CLOSED and handled before the table is consulted.

_TABLE: Final[dict[tuple[Role, State, type[Frame]], str]] = {
    (Role.SERVER, State.AWAIT_HELLO, Hello): "_on_hello",
    (Role.CLIENT, State.HELLO_SENT, Challenge): "_on_challenge",
    (Role.SERVER, State.CHALLENGE_SENT, Proof): "_on_proof",
    (Role.CLIENT, State.PROOF_SENT, Welcome): "_on_welcome",
    **{(role, State.OPEN, Have): "_on_have" for role in Role},
    **{(role, State.OPEN, Batch): "_on_batch" for role in Role},
    **{(role, State.OPEN, Ack): "_on_ack" for role in Role},
    **{(role, State.OPEN, Ping): "_on_ping" for role in Role},
    **{(role, State.OPEN, Pong): "_on_pong" for role in Role},
    (Role.CLIENT, State.OPEN, Presence): "_on_presence",
    (Role.CLIENT, State.OPEN, Presences): "_on_presences",
    **{(role, State.OPEN, Direct): "_on_direct" for role in Role},
    (Role.CLIENT, State.OPEN, Undelivered): "_on_undelivered",
}

#: Which local calls are allowed in which states (the adapter's side of the table).
_SENDABLE: Final[dict[str, frozenset[State]]] = {
    "start": frozenset({State.IDLE}),
    "accept_hello": frozenset({State.VERIFYING}),
    "send_welcome": frozenset({State.WELCOMING}),
    "open": frozenset({State.OPEN}),
}


def encode_presences(online: Iterable[str], offline: Iterable[str]) -> bytes:
    """Encode a ``Presences`` frame once, for ``SyncSession.send_presences`` on many sessions."""
    return encode_frame(Presences(online=list(online), offline=list(offline)))


def transition_table() -> dict[tuple[str, str, str], str]:
    """Return the transition table in plain strings (for docs and tests)."""
    return {
        (role.value, state.value, frame.__struct_config__.tag): handler  # type: ignore[misc]
        for (role, state, frame), handler in _TABLE.items()
    }


@dataclass(slots=True)  # a relay holds one per device: no __dict__ each
class SyncSession:
    """One side of a sync connection. See the module docstring.

    Args:
        role: ``Role.CLIENT`` (opens) or ``Role.SERVER`` (accepts).
        local_id: this side's device id (client; the one derived from ``identity``) or
            server id (server).
        nonce: 32 fresh random bytes from the adapter.
        now: the adapter's clock reading at creation.
        group: client only: the group to join.
        group_auth: client only: the group auth key (``GroupKeys.auth``).
        identity: this side's Ed25519 identity key: the device key (client) or the server's
            key (server).
        pinned_server_key: client only: the server identity key to insist on, if known.
        create: client only: ask a relay to register the group.
        max_frame_size: security limit for incoming frames.
    """

    role: Role
    local_id: str
    nonce: bytes
    now: float
    group: str = ""
    group_auth: Ed25519PrivateKey | None = None
    identity: Ed25519PrivateKey | None = None
    pinned_server_key: bytes | None = None
    create: bool = False
    max_frame_size: int = DEFAULT_MAX_FRAME_SIZE
    max_batch_bytes: int = DEFAULT_MAX_BATCH_BYTES
    ping_interval: float = DEFAULT_PING_INTERVAL
    idle_timeout: float = DEFAULT_IDLE_TIMEOUT
    handshake_timeout: float = DEFAULT_HANDSHAKE_TIMEOUT

    state: State = field(init=False)
    cause: SwitchboardError | None = field(init=False, default=None)
    peer: str = field(init=False, default="")
    peer_key: bytes = field(init=False, default=b"")
    peer_vector: dict[str, int] = field(init=False, default_factory=dict)
    acked_vector: dict[str, int] = field(init=False, default_factory=dict)

    _out: list[bytes] = field(init=False, default_factory=list, repr=False)
    _events: list[SessionEvent] = field(init=False, default_factory=list, repr=False)
    _hello: Hello | None = field(init=False, default=None, repr=False)
    _challenge: Challenge | None = field(init=False, default=None, repr=False)
    _started: float = field(init=False, default=0.0)
    _last_rx: float = field(init=False, default=0.0)
    _last_tx: float = field(init=False, default=0.0)
    _rx_since_tick: bool = field(init=False, default=False)
    _tx_since_tick: bool = field(init=False, default=False)
    _ping_n: int = field(init=False, default=0)
    # The counters of ``statistics()``: plain slots, not a dict (a relay holds one per device).
    _frames_in: int = field(init=False, default=0, repr=False)
    _frames_out: int = field(init=False, default=0, repr=False)
    _bytes_in: int = field(init=False, default=0, repr=False)
    _bytes_out: int = field(init=False, default=0, repr=False)
    _envelopes_in: int = field(init=False, default=0, repr=False)
    _envelopes_out: int = field(init=False, default=0, repr=False)
    _directs_in: int = field(init=False, default=0, repr=False)
    _directs_out: int = field(init=False, default=0, repr=False)

    def __post_init__(self) -> None:
        assert len(self.nonce) >= 16, "nonce must be at least 16 random bytes"
        if self.role is Role.CLIENT:
            assert self.group and self.group_auth is not None, "a client needs its group"
            assert self.identity is not None, "a client needs its device identity key"
            assert self.local_id == device_id_from_public_key(public_bytes(self.identity)), (
                "a client's local_id must be the device id of its identity key"
            )
            self.state = State.IDLE
        else:
            assert self.identity is not None, "a server needs its identity key"
            self.state = State.AWAIT_HELLO
        self._started = self._last_rx = self._last_tx = self.now

    # -- output drains ---------------------------------------------------------------------

    def frames_to_send(self) -> list[bytes]:
        """Return and forget the frames queued for the wire."""
        out, self._out = self._out, []
        return out

    def events_received(self) -> list[SessionEvent]:
        """Return and forget what happened since the last call."""
        events, self._events = self._events, []
        return events

    def close_expected(self) -> bool:
        """Whether the adapter should close the transport once ``frames_to_send`` is written."""
        return self.state is State.CLOSED

    @property
    def is_open(self) -> bool:
        """Whether the handshake is done and the session not closed."""
        return self.state is State.OPEN

    def statistics(self) -> SessionStatistics:
        """Return this session's counters."""
        return SessionStatistics(
            self._frames_in, self._frames_out, self._bytes_in, self._bytes_out,
            self._envelopes_in, self._envelopes_out, self._directs_in, self._directs_out,
        )  # fmt: skip

    # -- input -------------------------------------------------------------------------------

    def receive_frame(self, data: bytes) -> None:
        """Take one frame from the peer. Never raises on bad peer input."""
        if self.state is State.CLOSED:
            return  # discard: the session already failed or closed
        self._frames_in += 1
        self._bytes_in += len(data)
        self._rx_since_tick = True
        try:
            frame = decode_frame(data, self.max_frame_size)
            if isinstance(frame, Bye):
                self._on_bye(frame)
                return
            handler = _TABLE.get((self.role, self.state, type(frame)))
            if handler is None:
                raise RemoteProtocolError(
                    f"unexpected {frame.__struct_config__.tag} frame in state {self.state.value}"
                )
            getattr(self, handler)(frame)
        except LocalProtocolError as exc:
            # Our own rule, broken while handling peer input: that is the peer's fault here
            # (h11 converts Local to Remote at its one input boundary the same way).
            self._fail(RemoteProtocolError(str(exc)))
        except (RemoteProtocolError, AuthError) as exc:
            self._fail(exc)

    def receive_eof(self) -> None:
        """The transport ended. A session that was not closed by a ``Bye`` records the loss."""
        if self.state is State.CLOSED:
            return
        self.cause = ConnectionLost("connection closed by peer without goodbye")
        self.state = State.CLOSED
        self._events.append(Closed(ByeCode.GOING_AWAY, "connection lost", self.cause))

    def tick(self, now: float) -> None:
        """Learn the time: send heartbeats, expire a silent peer or a slow handshake."""
        if self.state is State.CLOSED:
            return
        if self._rx_since_tick:
            self._last_rx, self._rx_since_tick = now, False
        if self._tx_since_tick:
            self._last_tx, self._tx_since_tick = now, False
        if self.state is not State.OPEN:
            if now - self._started >= self.handshake_timeout:
                self._fail(TransportTimeout("handshake did not finish in time"), ByeCode.TIMEOUT)
            return
        if now - self._last_rx >= self.idle_timeout:
            self._fail(
                TransportTimeout(f"no frame from peer for {self.idle_timeout:g} s"),
                ByeCode.TIMEOUT,
            )
            return
        if now - self._last_tx >= self.ping_interval:
            self._ping_n += 1
            self._send(Ping(self._ping_n))
            self._last_tx, self._tx_since_tick = now, False

    def next_deadline(self) -> float | None:
        """When ``tick`` must next be called, on the adapter's clock (``None``: never)."""
        if self.state is State.CLOSED:
            return None
        if self.state is not State.OPEN:
            return self._started + self.handshake_timeout
        return min(self._last_rx + self.idle_timeout, self._last_tx + self.ping_interval)

    # -- local calls -------------------------------------------------------------------------

    def start(self) -> None:
        """Client: open the handshake."""
        self._require("start")
        assert self.group_auth is not None and self.identity is not None
        self._hello = Hello(
            version=PROTOCOL_VERSION,
            group=self.group,
            device=self.local_id,
            nonce=self.nonce,
            group_key=public_bytes(self.group_auth),
            device_key=public_bytes(self.identity),
            create=self.create,
        )
        self._send(self._hello)
        self.state = State.HELLO_SENT

    def accept_hello(self, group_key: bytes) -> None:
        """Server: the adapter looked up the group; ``group_key`` is the key registered for it."""
        self._require("accept_hello")
        assert self._hello is not None and self.identity is not None
        if group_key != self._hello.group_key:
            self._fail(AuthError("authentication failed: wrong group secret"), ByeCode.AUTH_FAILED)
            return
        server_key = public_bytes(self.identity)
        data = handshake.transcript(self._hello, self.nonce, self.local_id, server_key)
        self._challenge = Challenge(
            nonce=self.nonce,
            server=self.local_id,
            server_key=server_key,
            proof=handshake.server_proof(self.identity, data),
        )
        self._send(self._challenge)
        self.state = State.CHALLENGE_SENT

    def reject(self, code: ByeCode, reason: str) -> None:
        """Server: refuse the client (unknown group, rate limited, overloaded)."""
        self._fail(Rejected(reason, code), code)

    def send_welcome(self, online: Iterable[str]) -> None:
        """Server: admit the authenticated client."""
        self._require("send_welcome")
        self._send(Welcome(online=sorted(online)))
        self.state = State.OPEN
        self._hello = self._challenge = None  # the handshake is over: a relay holds many

    def send_have(self, vector: dict[str, int]) -> None:
        """Tell the peer what we hold; it answers with what we lack."""
        self._require("open")
        self._send(Have(vector=dict(vector)))

    def send_ack(self, vector: dict[str, int]) -> None:
        """Tell the peer what we have durably stored."""
        self._require("open")
        self._send(Ack(vector=dict(vector)))

    def send_presence(self, device: str, online: bool) -> None:
        """Server: tell the client a device of its group connected or disconnected."""
        self._require("open")
        assert self.role is Role.SERVER
        self._send(Presence(device=device, online=online))

    def send_presences(self, encoded: bytes) -> None:
        """Server: send a ``Presences`` frame, encoded once by ``encode_presences``.

        A relay announces one round of changes to every connection of a group with the same
        bytes, so it encodes the frame once, not once per connection.
        """
        self._require("open")
        assert self.role is Role.SERVER
        self._send_encoded(encoded)

    def offer(self, envelopes: Iterable[Envelope]) -> int:
        """Send the envelopes that come next for the peer; return how many were queued.

        An envelope is sent only if the peer holds (or was sent) every earlier seq of its
        origin: one it holds is a duplicate, and one past a hole could not be stored there.
        ``envelopes`` come in per-origin order. Whoever offers compares ``peer_vector`` with
        what it offered to see whether the peer still lacks some (then it catches up).
        """
        self._require("open")
        next_seq: dict[str, int] = {}
        fresh: list[Envelope] = []
        for env in envelopes:
            expected = next_seq.get(env.origin, self.peer_vector.get(env.origin, 0) + 1)
            if env.seq == expected:
                fresh.append(env)
                next_seq[env.origin] = expected + 1
        self.send_batch(fresh)
        return len(fresh)

    def send_batch(self, envelopes: Iterable[Envelope]) -> None:
        """Send envelopes (in per-origin order), split into frames under the size limits."""
        self._require("open")
        chunk: list[Envelope] = []
        size = 0
        for env in envelopes:
            env_size = len(env.box) + len(env.origin) + 32
            if chunk and (
                size + env_size > self.max_batch_bytes or len(chunk) >= MAX_BATCH_ENVELOPES
            ):
                self._send_chunk(chunk)
                chunk, size = [], 0
            chunk.append(env)
            size += env_size
        if chunk:
            self._send_chunk(chunk)

    def send_direct(self, frame: Direct) -> None:
        """Send a sealed directed frame (a device: its own; a relay: one it forwards)."""
        self._require("open")
        self._send(frame)
        self._directs_out += 1

    def send_undelivered(self, recipient: str, ref: int, code: int, reason: str) -> None:
        """Server: tell the client its directed frame ``ref`` for ``recipient`` went nowhere."""
        self._require("open")
        assert self.role is Role.SERVER
        self._send(Undelivered(recipient=recipient, ref=ref, code=code, reason=reason[:200]))

    def send_bye(self, code: ByeCode = ByeCode.NORMAL, reason: str = "goodbye") -> None:
        """Close the session politely."""
        if self.state is State.CLOSED:
            return
        self._send(Bye(code=int(code), reason=reason))
        self.state = State.CLOSED
        self._events.append(Closed(int(code), reason))

    # -- handlers (peer input; raise Remote errors, the boundary turns them into Bye) --------

    def _on_hello(self, frame: Hello) -> None:
        if frame.version != PROTOCOL_VERSION:
            raise RemoteProtocolError(
                f"unsupported protocol version {frame.version}, this side speaks "
                f"{PROTOCOL_VERSION}",
                ByeCode.UNSUPPORTED_VERSION,
            )
        # protocol.md §2: a device id is the one derived from the key the client proves it holds.
        if frame.device != device_id_from_public_key(frame.device_key):
            raise AuthError("authentication failed: device id does not match its key")
        self._hello = frame
        self.peer = frame.device
        self.state = State.VERIFYING
        self._events.append(HelloReceived(frame.group, frame.device, frame.group_key, frame.create))

    def _on_challenge(self, frame: Challenge) -> None:
        assert self._hello is not None and self.group_auth is not None
        assert self.identity is not None
        if self.pinned_server_key is not None and frame.server_key != self.pinned_server_key:
            raise AuthError(
                f"relay {frame.server[:12]} presented an identity key other than the pinned one"
            )
        if not handshake.check_server_proof(self._hello, frame):
            raise AuthError("relay proof of identity is invalid")
        self._challenge = frame
        self.peer, self.peer_key = frame.server, frame.server_key
        data = handshake.transcript(self._hello, frame.nonce, frame.server, frame.server_key)
        self._send(
            Proof(
                proof=handshake.client_proof(self.group_auth, data),
                device_proof=handshake.device_proof(self.identity, data),
            )
        )
        self.state = State.PROOF_SENT

    def _on_proof(self, frame: Proof) -> None:
        assert self._hello is not None and self._challenge is not None
        # protocol.md §2: the client proves both group membership and its device key.
        if not handshake.check_client_proof(self._hello, self._challenge, frame.proof):
            raise AuthError("authentication failed: wrong group secret")
        if not handshake.check_device_proof(self._hello, self._challenge, frame.device_proof):
            raise AuthError("authentication failed: device key proof is invalid")
        self.state = State.WELCOMING
        self._events.append(Established(self._hello.device, self._hello.device_key))

    def _on_welcome(self, frame: Welcome) -> None:
        self.state = State.OPEN
        self._hello = self._challenge = None  # the handshake is over
        self._events.append(Established(self.peer, self.peer_key, tuple(frame.online)))

    def _on_have(self, frame: Have) -> None:
        # The peer's own word replaces what we assumed: a lower value asks for a resend.
        self.peer_vector = dict(frame.vector)
        self._events.append(HaveReceived(dict(frame.vector)))

    def _on_batch(self, frame: Batch) -> None:
        last: dict[str, int] = {}
        for env in frame.envelopes:
            if env.seq <= last.get(env.origin, 0):
                raise RemoteProtocolError(
                    f"batch out of order: seq {env.seq} after {last[env.origin]} for one origin"
                )
            last[env.origin] = env.seq
        # Whoever sent an envelope holds it: never offer it back (protocol.md §3).
        for origin, seq in last.items():
            if seq > self.peer_vector.get(origin, 0):
                self.peer_vector[origin] = seq
        self._envelopes_in += len(frame.envelopes)
        self._events.append(BatchReceived(tuple(frame.envelopes)))

    def _on_ack(self, frame: Ack) -> None:
        for origin, seq in frame.vector.items():
            if seq > self.acked_vector.get(origin, 0):
                self.acked_vector[origin] = seq
            if seq > self.peer_vector.get(origin, 0):
                self.peer_vector[origin] = seq
        self._events.append(AckReceived(dict(frame.vector)))

    def _on_ping(self, frame: Ping) -> None:
        self._send(Pong(frame.n))

    def _on_pong(self, frame: Pong) -> None:
        return  # receiving it already counted as life (see tick)

    def _on_presence(self, frame: Presence) -> None:
        self._events.append(PresenceReceived(frame.device, frame.online))

    def _on_presences(self, frame: Presences) -> None:
        self._events.extend(PresenceReceived(device, True) for device in frame.online)
        self._events.extend(PresenceReceived(device, False) for device in frame.offline)

    def _on_direct(self, frame: Direct) -> None:
        self._directs_in += 1
        self._events.append(DirectReceived(frame))

    def _on_undelivered(self, frame: Undelivered) -> None:
        self._events.append(
            UndeliveredReceived(frame.recipient, frame.ref, frame.code, frame.reason)
        )

    def _on_bye(self, frame: Bye) -> None:
        self.state = State.CLOSED
        error: SwitchboardError | None = None
        if frame.code == ByeCode.AUTH_FAILED:
            error = AuthError(f"relay refused: {frame.reason}")
        elif frame.code not in (ByeCode.NORMAL, ByeCode.GOING_AWAY):
            error = Rejected(f"peer closed: {frame.reason}", frame.code)
        self.cause = error
        self._events.append(Closed(frame.code, frame.reason, error))

    # -- internals ---------------------------------------------------------------------------

    def _require(self, call: str) -> None:
        allowed = _SENDABLE[call]
        if self.state not in allowed:
            raise LocalProtocolError(f"cannot {call} in state {self.state.value}")

    def _send(self, frame: Frame) -> None:
        self._send_encoded(encode_frame(frame))

    def _send_encoded(self, data: bytes) -> None:
        self._out.append(data)
        self._frames_out += 1
        self._bytes_out += len(data)
        self._tx_since_tick = True

    def _send_chunk(self, chunk: list[Envelope]) -> None:
        self._send(Batch(envelopes=chunk))
        self._envelopes_out += len(chunk)
        for env in chunk:
            if env.seq > self.peer_vector.get(env.origin, 0):
                self.peer_vector[env.origin] = env.seq

    def _fail(self, exc: SwitchboardError, code: ByeCode | int | None = None) -> None:
        if self.state is State.CLOSED:
            return
        if code is None:
            code = exc.bye_code if isinstance(exc, ProtocolError) else ByeCode.AUTH_FAILED
        self.cause = exc
        # The reason is our own message: lowercase facts, never payload bytes or secrets.
        reason = str(exc)[:200]
        self._send(Bye(code=int(code), reason=reason))
        self.state = State.CLOSED
        self._events.append(Closed(int(code), reason, exc))
