"""``SupervisedLink``: what every link shares, the relay's and the brokers' alike.

Theory of operation
-------------------
A link keeps one connection alive per group. Each kind says how to run one connection
(``_run_once``: connect, set up, call ``_connected()`` once established, return or raise when
the connection ends) and how to say goodbye (``_goodbye``); everything around it is here, once:

- ``run_loop``, the one supervisor per link: it runs connections one after the other and
  sleeps between them on the schedule of ``links.backoff.Backoff`` (quick retries while a relay
  or broker restarts, then slower; from the first step again once a connection was
  established; at the cap at once after a refused login or rate limiting);
- ``start``, ``stop`` and ``notify``; the waits (``wait_established``, ``wait_synced``,
  ``wait_caught_up``) over ``status`` and the kind's ``lag()`` and ``_caught_up()``;
- ``seal_events``: every event that leaves, by any link, is sealed here: this device's own
  signed as one batch (``signatures.Signer``), another device's with the proof it came with;
- ``open_envelopes``: every event that arrives, by any link, is opened and checked here, its
  signature included (``signatures.Verifier``); one that fails is counted in ``status.tampered``
  (a forgery also in ``status.forged``) and reported, never applied. The proofs of what opened
  wait in ``proofs`` until the store takes them (``take_proofs``);
- ``channel``, the link's directed channel (``links.channel``): each kind carries its frames
  (``send_direct``, and hands what arrives to ``channel.frame_received``); every call ends when
  the link goes down or is stopped, and a kind ends a device's calls when it hears that the
  device left (``channel.peer_gone``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Final

import msgspec

from switchboard.errors import (
    AuthError,
    ByeCode,
    ForgedEvent,
    Rejected,
    SwitchboardError,
    TamperedEnvelope,
)
from switchboard.events import Event, decode_event, encode_event, now_ts
from switchboard.keyring import KeyMissing, learn_rotation
from switchboard.links.backoff import Backoff
from switchboard.links.channel import DirectChannel, Handlers
from switchboard.links.status import LinkState, LinkStatus
from switchboard.signatures import (
    EventProof,
    SignedEvent,
    Signer,
    Verifier,
    decode_proof,
    decode_signed,
    encode_proof,
    encode_signed,
)

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from switchboard.keyring import Keyring
    from switchboard.proto.frames import Direct, Envelope
    from switchboard.proto.session import Established
    from switchboard.store.log import EventLog

log = logging.getLogger("switchboard.link")

OnPresence = Callable[[str, bool], Awaitable[None]]
OnEstablished = Callable[["Established"], Awaitable[None]]

CANCEL_AGAIN: Final = 0.1  # seconds before a connection's loop that did not end is cancelled again
POLL: Final = 0.01  # seconds between looks at a condition a wait is waiting for
# Proofs of opened events waiting for the store: far more than the receive queues hold, so
# reaching it means events were opened and never stored (a connection dropped under them).
MAX_WAITING_PROOFS: Final = 100_000
# Envelopes kept while the key they are sealed under has not arrived (``open_envelopes``).
MAX_AWAITING_KEY: Final = 10_000
# Events after which the keyring may open or admit envelopes differently (``open_envelopes``).
_KEYRING_EVENTS: Final = frozenset({"group_rekeyed", "forgotten_held"})


def seal_events(
    keys: Keyring,
    signer: Signer,
    events: Iterable[Event],
    proofs: Mapping[tuple[str, int], bytes],
    unserved: set[str] | None = None,
) -> list[Envelope]:
    """Seal events for the wire: only their headers ``(origin, seq)`` stay readable.

    This device's own events are signed together, one signature for the lot; another device's
    carry the proof stored with them (``proofs``). One without (received before signatures
    existed) is left out, no receiver would accept it, and so are its origin's later events
    (one past a hole could not be stored); their origins are added to ``unserved``.
    """
    events = list(events)
    encoded = [encode_event(event) for event in events]
    pairs = list(zip(events, encoded, strict=True))
    own = [(e.seq, data) for e, data in pairs if e.origin == signer.origin]
    signed = iter(signer.sign(signer.origin, own))
    envelopes = []
    holes: set[str] = set()
    for event, data in pairs:
        if event.origin == signer.origin:
            proof = next(signed)
        else:
            stored = proofs.get(event.key)
            if stored is None or event.origin in holes:
                holes.add(event.origin)
                continue
            proof = decode_proof(stored)
        # A rotation, and its author's events before it, travel under the key it replaces.
        kid = rotated_from(event) or keys.sealing_key(event.origin, event.seq)
        envelopes.append(keys.seal(event.origin, event.seq, encode_signed(data, proof), kid))
    if unserved is not None:
        unserved |= holes
    return envelopes


def rotated_from(event: Event) -> bytes | None:
    """The key a ``group_rekeyed`` event replaces (it is sealed under it), else ``None``."""
    if event.type != "group_rekeyed":
        return None
    try:
        return bytes.fromhex(str(event.data.get("previous", "")))
    except ValueError:
        return None


def open_envelope(keys: Keyring, verifier: Verifier, env: Envelope) -> tuple[Event, EventProof]:
    """Open, decode and verify an envelope; its event must carry the header's ``(origin, seq)``.

    Raises:
        KeyMissing: it is sealed under a key of the group this device does not hold (yet).
        TamperedEnvelope: it does not open with the group key, does not decode, or its event
            claims another place in the log than its header.
        ForgedEvent: it opened, but its origin device did not sign it, or the keyring refuses
            it (written by a forgotten device: ``Keyring.admits``).
    """
    event, signed, kid = unseal_envelope(keys, env)
    verifier.verify(env.origin, env.seq, signed.event, signed.proof)
    check_admitted(keys, env, event, kid)
    return event, signed.proof


def unseal_envelope(keys: Keyring, env: Envelope) -> tuple[Event, SignedEvent, bytes]:
    """``open_envelope`` up to its signature: the event, its signed plaintext and the id of
    the key that opened it.

    Raises:
        KeyMissing, TamperedEnvelope: as for ``open_envelope``.
        ForgedEvent: it opened but is not signed.
    """
    plaintext, kid = keys.open_keyed(env)
    try:
        signed = decode_signed(plaintext)
    except msgspec.DecodeError as exc:
        raise ForgedEvent(env.origin, env.seq, "not signed") from exc
    try:
        event = decode_event(signed.event)
    except msgspec.DecodeError as exc:
        raise TamperedEnvelope(env.origin, env.seq) from exc
    if event.origin != env.origin or event.seq != env.seq:
        raise TamperedEnvelope(env.origin, env.seq)
    return event, signed, kid


def check_admitted(keys: Keyring, env: Envelope, event: Event, kid: bytes) -> None:
    """``open_envelope`` after its signature: the keyring admits the event under ``kid``.

    Raises:
        ForgedEvent: written by a forgotten device, or a rotation under another key than it
            names.
    """
    refused = keys.admits(env.origin, env.seq, kid)
    if refused is not None:
        raise ForgedEvent(env.origin, env.seq, refused)
    if event.type == "group_rekeyed" and rotated_from(event) != kid:
        raise ForgedEvent(env.origin, env.seq, "a rotation sealed under another key than it names")


@dataclass(eq=False, kw_only=True)
class SupervisedLink:
    """Base of every link: the supervisor loop, the waits and the envelope opener.

    Class attributes a kind sets:
        kind: names the link in log lines (``relay``, ``mqtt``, ``nats``).
        far_end: names the other end in messages (``relay``, ``broker``).
        goodbye_timeout: seconds ``stop`` gives ``_goodbye``.
    """

    kind: ClassVar[str] = "link"
    far_end: ClassVar[str] = "server"
    goodbye_timeout: ClassVar[float] = 2.0

    log: EventLog
    keys: Keyring
    url: str
    device_id: str
    create: bool = False
    on_presence: OnPresence | None = None
    status: LinkStatus = field(default_factory=LinkStatus)
    # The embedded relay's pinned identity key; brokers have none, so broker links keep None.
    relay_key: bytes | None = None
    # This device's key: it signs what the device writes and its directed frames (and proves
    # the device to a relay).
    identity: Ed25519PrivateKey

    signer: Signer = field(init=False)
    verifier: Verifier = field(init=False)
    # Proofs of events opened and not yet stored, by ``(origin, seq)`` (``take_proofs``).
    proofs: dict[tuple[str, int], bytes] = field(init=False, default_factory=dict)
    # Envelopes under a key not held yet, retried when a rotation brings one.
    awaiting: dict[tuple[str, int], Envelope] = field(init=False, default_factory=dict)
    # A forgotten device's cut-off rose: what was refused for it is asked for again.
    reask: bool = field(init=False, default=False)
    # Origins of which this device holds events it cannot serve (held without a proof).
    unserved: set[str] = field(init=False, default_factory=set)
    # What this device serves on the directed channel (one table for every link of a daemon).
    handlers: Handlers = field(default_factory=Handlers)
    channel: DirectChannel = field(init=False)
    # The other devices of the group this link knows to be connected (relay: its Welcome and
    # Presence; brokers: presence messages).
    online: set[str] = field(init=False, default_factory=set)

    _wake: asyncio.Event = field(init=False, default_factory=asyncio.Event)
    _established: asyncio.Event = field(init=False, default_factory=asyncio.Event)
    _task: asyncio.Task[None] | None = field(init=False, default=None)
    _last_failure: SwitchboardError | None = field(init=False, default=None)
    _stopping: bool = field(init=False, default=False)
    # This connection was established: the backoff starts over after it.
    _up: bool = field(init=False, default=False)

    def __post_init__(self) -> None:
        self.signer = Signer(self.keys.group, self.identity)
        self.verifier = Verifier(self.keys.group)
        self.channel = DirectChannel(
            self.keys, self.identity, self.device_id, self, self.handlers, self.status
        )

    # -- the Link surface ------------------------------------------------------------------------

    def start(self) -> None:
        """Start keeping the link up, in the background."""
        if self._task is None or self._task.done():
            self._stopping = False
            self._task = asyncio.create_task(
                self.run_loop(), name=f"switchboard[{self.url}].run_loop"
            )

    async def stop(self) -> None:
        """Say goodbye (``_goodbye``, bounded by ``goodbye_timeout``) and stop."""
        self._stopping = True
        if self.status.state is LinkState.CONNECTED:
            with contextlib.suppress(SwitchboardError, OSError, TimeoutError):
                await asyncio.wait_for(self._goodbye(), self.goodbye_timeout)
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self.channel.aclose()
        self.status.state = LinkState.OFF

    async def send_direct(self, frame: Direct) -> None:
        """Send a directed frame towards ``frame.recipient`` (``links.channel.Carrier``).

        Raises:
            Unreachable: the link knows the recipient cannot get it (or is not connected).
            TransportError: the connection broke while sending.
        """
        raise NotImplementedError

    async def rekey(
        self, new_auth: Ed25519PrivateKey, members: list[str], forgotten: list[str], timeout: float
    ) -> None:
        """Have the far end admit the group's new key. A broker has no say: it checks its own
        logins, not the group's key, so this does nothing (``RelayLink`` overrides it)."""

    def notify(self) -> None:
        """The log advanced: wake the sender."""
        self._wake.set()

    def lag(self) -> int:
        """Events this device holds that the link is not known to have passed on."""
        raise NotImplementedError

    async def wait_established(self, timeout: float) -> SwitchboardError | None:
        """Wait for the first connection; return the failure that prevented it, if any.

        A refused login (and, from a relay, a refusal) ends the wait at once: retrying will
        not change it.
        """
        return await wait_first_connection(
            self._established,
            lambda: self._last_failure,
            (AuthError, Rejected),
            f"{self.far_end} {self.url}",
            timeout,
        )

    async def wait_synced(self, timeout: float) -> bool:
        """Wait until the link is up and has passed on everything this device holds."""
        return await self._wait_until(
            lambda: self.status.state is LinkState.CONNECTED and self.lag() == 0, timeout
        )

    async def wait_caught_up(self, timeout: float) -> bool:
        """Wait until this device holds what the group held when the link connected.

        Gives up (``False``) when the connection drops meanwhile.
        """
        deadline = asyncio.get_running_loop().time() + timeout
        if await self.wait_established(timeout) is not None:
            return False
        remaining = deadline - asyncio.get_running_loop().time()
        return await self._wait_until(
            self._caught_up,
            remaining,
            unless=lambda: self.status.state is not LinkState.CONNECTED,
        )

    async def _wait_until(
        self,
        done: Callable[[], bool],
        timeout: float,
        *,
        unless: Callable[[], bool] = lambda: False,
    ) -> bool:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not done():
            if loop.time() >= deadline or unless():
                return False
            await asyncio.sleep(POLL)
        return True

    # -- for each kind --------------------------------------------------------------------------

    def _caught_up(self) -> bool:
        raise NotImplementedError

    async def _run_once(self) -> None:
        """Run one connection until it ends (raise why, or return for an orderly end)."""
        raise NotImplementedError

    async def _goodbye(self) -> None:
        """Tell the far end we leave, while still connected."""

    async def _connected(self, far_end: str) -> None:
        """The connection is established (``far_end``: who answered, for ``status``)."""
        log.info("= %s link to %s established (%s)", self.kind, self.url, far_end)
        self.status.state = LinkState.CONNECTED
        self.status.connected_since = now_ts()
        self.status.last_error = None
        self.status.relay = far_end
        self._last_failure = None
        self._up = True
        self.create = False  # registered or created now; a reconnect is an ordinary one
        self._established.set()
        self._wake.set()

    async def _down(self) -> None:
        """A connection ended (not called when the link is stopped)."""
        self.channel.link_down(f"link to {self.url} lost")
        if self.status.state is not LinkState.OFF:
            self.status.state = LinkState.DISCONNECTED

    # -- the supervisor loop ---------------------------------------------------------------------

    async def run_loop(self) -> None:
        """Keep a connection up until stopped, retrying on the schedule of ``Backoff``."""
        backoff = Backoff()
        while not self._stopping:
            self._up = False
            failure: SwitchboardError | None = None
            try:
                await self._run_once()
            except SwitchboardError as exc:
                failure = exc
            except Exception as exc:  # the one supervisor per link (STYLE.md error rule 5)
                log.error("! %s link to %s failed", self.kind, self.url, exc_info=True)
                failure = SwitchboardError(f"internal error: {type(exc).__name__}")
            if failure is not None:
                self._record_failure(failure)
            await self._down()
            if self._stopping:
                break
            if self._up:
                backoff.reset()
            if _retrying_soon_is_pointless(failure):
                backoff.slow_down()
            await asyncio.sleep(backoff.next_delay())

    def _record_failure(self, exc: SwitchboardError) -> None:
        self._last_failure = exc
        self.status.last_error = str(exc)
        log.info("x %s link to %s: %s", self.kind, self.url, exc)

    # -- envelopes -------------------------------------------------------------------------------

    def open_envelopes(self, envelopes: Iterable[Envelope]) -> list[Event]:
        """Open every envelope; skip (count and report) those that fail (``open_envelope``).

        Signatures are checked a run of envelopes at a time (``Verifier.verify_many``: one
        check per whole tree); a run ends after an event that changes what the keyring opens
        or admits (a rotation, ``forgotten_held``), so what follows it is opened as if one at
        a time. Later envelopes of a tampered one's origin are gaps to the log, which drops
        them.
        """
        events: list[Event] = []
        generation = self.keys.generation
        self._open_runs(envelopes, events)
        if self.keys.generation != generation and self.awaiting:
            # A rotation opened here gave a key: what waited for one may open now.
            waiting, self.awaiting = list(self.awaiting.values()), {}
            self._open_runs(waiting, events)
            events.sort(key=lambda e: e.key)  # per-origin order, as the log wants it
        return events

    def _open_runs(self, envelopes: Iterable[Envelope], events: list[Event]) -> None:
        run: list[tuple[Envelope, Event, SignedEvent, bytes]] = []
        for env in envelopes:
            try:
                event, signed, kid = unseal_envelope(self.keys, env)
            except KeyMissing:
                # Not tampered: sealed after a rotation whose event has not reached us yet.
                if len(self.awaiting) < MAX_AWAITING_KEY:
                    self.awaiting[(env.origin, env.seq)] = env
                continue
            except ForgedEvent as exc:
                self.status.forged += 1
                self._tampered(str(exc))
                continue
            except TamperedEnvelope as exc:
                self._tampered(str(exc))
                continue
            run.append((env, event, signed, kid))
            if event.type in _KEYRING_EVENTS:
                self._admit(run, events)
                run = []
        self._admit(run, events)

    def _admit(
        self, run: list[tuple[Envelope, Event, SignedEvent, bytes]], events: list[Event]
    ) -> None:
        """Verify a run of unsealed envelopes, then admit each in order."""
        refusals = self.verifier.verify_many(
            [(env.origin, env.seq, signed.event, signed.proof) for env, _, signed, _ in run]
        )
        for (env, event, signed, kid), refused in zip(run, refusals, strict=True):
            try:
                if refused is not None:
                    raise refused
                check_admitted(self.keys, env, event, kid)
            except ForgedEvent as exc:
                self.status.forged += 1
                self._tampered(str(exc))
                continue
            if event.type == "group_rekeyed":
                learn_rotation(self.keys, self.identity, event)
            elif event.type == "forgotten_held":
                device, seq = event.data.get("device"), event.data.get("seq")
                if isinstance(device, str) and isinstance(seq, int):
                    # Events of it refused here up to ``seq`` are the group's after all: ask
                    # again.
                    self.reask = self.keys.hold_up_to(device, seq) or self.reask
            events.append(event)
            if len(self.proofs) >= MAX_WAITING_PROOFS:
                self.proofs.clear()
            self.proofs[event.key] = encode_proof(signed.proof)

    def seal(self, events: Iterable[Event]) -> list[Envelope]:
        """Seal events for this link's group (``seal_events``)."""
        events = list(events)
        return seal_events(self.keys, self.signer, events, self.log.proofs(events), self.unserved)

    def take_proofs(self, events: Iterable[Event]) -> dict[tuple[str, int], bytes]:
        """Hand the store the proofs of ``events`` (and forget them here)."""
        taken = {}
        for event in events:
            proof = self.proofs.pop(event.key, None)
            if proof is not None:
                taken[event.key] = proof
        return taken

    def _tampered(self, reason: str) -> None:
        self.status.tampered += 1
        self.status.last_error = reason
        log.warning("! %s link: %s", self.kind, reason)


def _retrying_soon_is_pointless(failure: SwitchboardError | None) -> bool:
    """A refused login or a relay's rate limiting: the same answer comes for a while."""
    return isinstance(failure, AuthError) or (
        isinstance(failure, Rejected) and failure.reason_code == ByeCode.RATE_LIMITED
    )


async def run_until_first_ends(coros: dict[str, Coroutine[Any, Any, Any]]) -> None:
    """Run the named loops of one connection until the first ends; cancel the others.

    Raises:
        BaseException: the first failure among the loops that ended.
    """
    tasks = [asyncio.create_task(coro, name=name) for name, coro in coros.items()]
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        # Cancel until each has ended: one cancellation can be lost (Python 3.11's wait_for,
        # which nats-py uses, swallows it when its future completes at the same moment), and a
        # loop that goes on waiting would hold the link on a dead connection for good.
        pending = set(tasks)
        while pending:
            for task in pending:
                task.cancel()
            _, pending = await asyncio.wait(pending, timeout=CANCEL_AGAIN)
        for task in tasks:  # mark their failures seen: they are the first one's fallout
            if not task.cancelled():
                task.exception()
    for task in done:
        exc = task.exception()
        if exc is not None:
            raise exc


async def wait_first_connection(
    established: asyncio.Event,
    failure: Callable[[], SwitchboardError | None],
    fatal: tuple[type[SwitchboardError], ...],
    what: str,
    timeout: float,
) -> SwitchboardError | None:
    """Wait until ``established`` is set; return the failure that prevented it, if any.

    Args:
        established: set once the link first connected.
        failure: returns the link's latest failure.
        fatal: failures that end the wait at once (a refused login, a wrong secret).
        what: names the far end in the timeout message ("relay ws://...").
        timeout: seconds.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not established.is_set():
        last = failure()
        if isinstance(last, fatal):
            return last
        remaining = deadline - loop.time()
        if remaining <= 0:
            return last or SwitchboardError(f"{what} did not answer within {timeout:g} s")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(established.wait(), min(remaining, 0.05))
    return None
