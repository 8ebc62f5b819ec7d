"""``CatchUp``: how devices on a broker without history catch each other up, without I/O.

Theory of operation
-------------------
An MQTT broker forwards live and keeps nothing, so the devices of a group keep the history and
fill each other's gaps (``links.mqtt`` runs this over a broker; ``links.mqtt_topics`` has the
topics). Every device runs one ``CatchUp``; it never touches a socket, a clock, a random source
or the log:

- what arrives comes in through ``receive_have``, ``receive_batch`` and ``receive_presence``,
  a new connection through ``connect``, the time through ``tick(now, mine)``, and what an
  answer sent through ``answer_sent`` / ``answer_done``;
- what to do comes out of ``actions_to_take()``: ``SendHave`` (publish what we hold) and
  ``SendAnswer(device, want)`` (publish to ``device`` our events after ``want``'s seqs);
- ``next_deadline()`` says when to call ``tick`` next; ``uniform(a, b)``, passed in, draws the
  random delays.

``mine`` is always the log's vector (highest contiguous seq per origin) at the time of the call.

The rules:

- **Announce**: a device sends its ``Have`` on connecting, after each answer it received, after
  a gap, when another device's ``Have`` shows it is behind (after a random delay of up to
  ``answer_spread / 2``, and only if still behind then), and every ``have_period`` (jittered by
  a fifth). Requests within ``have_debounce`` go out as one.
- **Answer**: a device that holds more of an origin *O* than an asker answers it when *O* is
  itself (at once) or *O* is offline (after a random delay of up to ``answer_spread``). When
  the delay is over it looks again at the asker's latest ``Have``, and at what it sent the
  asker in the last ``sent_memory`` seconds: the asker announces each answer it got, so when
  several devices could answer, the first one's answer is visible and the others send only
  what is still missing (usually nothing). One answer per asker is under way at a time.
- **Caught up** (``is_caught_up``): our ``Have`` went out, ``answer_spread + quiet`` passed,
  and no batch arrived for ``quiet`` seconds. Nobody knows the whole group's log here, so this
  is the best a device can know.

Convergence: the log drops duplicates and gaps, so any order and any repetition of batches is
safe; a device behind on an origin keeps announcing (gaps, the periodic ``Have``) until the
origin, or while it is offline any device holding more of it, answers. An origin's events are
unreachable only while the origin and every holder are offline, as with any peer-to-peer log.
``tests/unit/test_catchup_stateful.py`` checks this under dropped, duplicated and reordered
messages, cut connections and restarted devices.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final

from switchboard.proto import cursors

# Every device announces what it holds this often (the convergence guarantee's period).
DEFAULT_HAVE_PERIOD: Final = 30.0
# Longest random delay before answering for an offline origin: long enough that the first
# answer is usually seen by the others before they send theirs, short enough to catch up fast.
DEFAULT_ANSWER_SPREAD: Final = 1.0
# Announcements asked for within this window go out as one.
DEFAULT_HAVE_DEBOUNCE: Final = 0.05
# No batch for this long after the answer window: caught up.
DEFAULT_QUIET: Final = 0.5
# What we answered counts as held by the asker for this long (its Have catches up meanwhile).
DEFAULT_SENT_MEMORY: Final = 5.0
# The periodic announcement comes within this fraction of ``have_period`` either way.
PERIOD_JITTER: Final = 0.2


@dataclass(frozen=True)
class SendHave:
    """Announce what we hold (publish ``Have(mine)``)."""


@dataclass(frozen=True)
class SendAnswer:
    """Send ``device`` our events after ``want[origin]`` of each origin in ``want``.

    Report each part sent with ``answer_sent`` and the end with ``answer_done``.
    """

    device: str
    want: dict[str, int]


Action = SendHave | SendAnswer


@dataclass
class CatchUp:
    """One device's side of the catch-up protocol. See the module docstring.

    Args:
        device_id: this device.
        now: the adapter's clock reading at creation.
        uniform: draws a number between its two arguments (``random.uniform``).
    """

    device_id: str
    now: float
    uniform: Callable[[float, float], float]
    have_period: float = DEFAULT_HAVE_PERIOD
    answer_spread: float = DEFAULT_ANSWER_SPREAD
    have_debounce: float = DEFAULT_HAVE_DEBOUNCE
    quiet: float = DEFAULT_QUIET
    sent_memory: float = DEFAULT_SENT_MEMORY

    online: set[str] = field(init=False, default_factory=set)
    # Each device's latest Have, and what we sent it lately (when, and up to which seqs).
    _haves: dict[str, dict[str, int]] = field(init=False, default_factory=dict)
    _sent: dict[str, tuple[float, dict[str, int]]] = field(init=False, default_factory=dict)
    # Answers waiting for their time (device -> when), and those under way.
    _answer_at: dict[str, float] = field(init=False, default_factory=dict)
    _answering: set[str] = field(init=False, default_factory=set)
    # Looks at whether we are still behind a device (device -> when).
    _recheck_at: dict[str, float] = field(init=False, default_factory=dict)
    _have_at: float = field(init=False, default=0.0)
    _asked_at: float | None = field(init=False, default=None)
    _last_batch_at: float = field(init=False, default=0.0)
    _caught: bool = field(init=False, default=False)
    _actions: list[Action] = field(init=False, default_factory=list)

    def __post_init__(self) -> None:
        self._have_at = self._next_period(self.now)

    # -- output ----------------------------------------------------------------------------------

    def actions_to_take(self) -> list[Action]:
        """Return and forget what to do since the last call."""
        actions, self._actions = self._actions, []
        return actions

    def has_actions(self) -> bool:
        """Whether ``actions_to_take()`` would return something."""
        return bool(self._actions)

    def next_deadline(self) -> float:
        """When ``tick`` must next be called, on the adapter's clock."""
        return min([self._have_at, *self._answer_at.values(), *self._recheck_at.values()])

    def is_caught_up(self, now: float) -> bool:
        """Whether this device holds what the group held when it connected, as far as it knows."""
        if not self._caught and self._asked_at is not None:
            window_over = now - self._asked_at >= self.answer_spread + self.quiet
            self._caught = window_over and now - self._last_batch_at >= self.quiet
        return self._caught

    # -- input -----------------------------------------------------------------------------------

    def connect(self, now: float) -> None:
        """A connection was established: announce soon; what was under way is void."""
        self.online.clear()
        self._answer_at.clear()
        self._answering.clear()
        self._recheck_at.clear()
        self._asked_at, self._caught = None, False
        self._have_at = now + self.have_debounce

    def receive_presence(self, device: str, online: bool) -> None:
        """A device came online or went offline."""
        if device == self.device_id:
            return
        if online and device not in self.online:
            self._sent.pop(device, None)  # a new session: trust its next Have as is
            self.online.add(device)
        elif not online:
            self.online.discard(device)

    def receive_have(
        self, device: str, vector: dict[str, int], mine: dict[str, int], now: float
    ) -> None:
        """``device`` announced what it holds."""
        if device == self.device_id:
            return
        self._haves[device] = dict(vector)
        idle = device not in self._answer_at and device not in self._answering
        if idle and self._servable(device, mine, now):
            if mine.get(self.device_id, 0) > vector.get(self.device_id, 0):
                self._answer_at[device] = now  # our own events: at once
                self._fire_answer(device, mine, now)
            else:
                delay = self.uniform(self.have_debounce, self.answer_spread)
                self._answer_at[device] = now + delay
        if _ahead(vector, mine) and device not in self._recheck_at:
            delay = self.uniform(self.have_debounce, self.answer_spread / 2)
            self._recheck_at[device] = now + delay

    def receive_batch(self, *, answer: bool, gaps: bool, now: float) -> None:
        """A batch arrived and was stored: live (``answer=False``) or an answer to us.

        Args:
            answer: it came as an answer to our ``Have`` (we announce that we got it).
            gaps: the log dropped some of it for a gap (we announce to get the rest).
            now: the adapter's clock.
        """
        self._last_batch_at = now
        if gaps or answer:
            self._announce_soon(now)

    def answer_sent(self, device: str, sent: dict[str, int], now: float) -> None:
        """Part of an answer to ``device`` went out: up to these seqs per origin."""
        self._sent[device] = (now, cursors.merge(self._held_by(device, now), sent))

    def answer_done(self, device: str) -> None:
        """The answer to ``device`` ended (sent, or cut short); another may follow."""
        self._answering.discard(device)

    def tick(self, now: float, mine: dict[str, int]) -> None:
        """Learn the time: announce, answer, look again, as each comes due."""
        for device, at in list(self._recheck_at.items()):
            if at <= now:
                del self._recheck_at[device]
                if _ahead(self._haves.get(device, {}), mine):
                    self._announce_soon(now)
        for device, at in list(self._answer_at.items()):
            if at <= now:
                self._fire_answer(device, mine, now)
        if self._have_at <= now:
            self._actions.append(SendHave())
            self._have_at = self._next_period(now)
            if self._asked_at is None:
                self._asked_at = now

    # -- rules -----------------------------------------------------------------------------------

    def _announce_soon(self, now: float) -> None:
        self._have_at = min(self._have_at, now + self.have_debounce)

    def _next_period(self, now: float) -> float:
        low, high = 1.0 - PERIOD_JITTER, 1.0 + PERIOD_JITTER
        return now + self.have_period * self.uniform(low, high)

    def _fire_answer(self, device: str, mine: dict[str, int], now: float) -> None:
        del self._answer_at[device]
        want = self._servable(device, mine, now)
        if want:
            self._answering.add(device)
            self._actions.append(SendAnswer(device, want))

    def _held_by(self, device: str, now: float) -> dict[str, int]:
        """What ``device`` is known to hold: its last Have and what we recently sent it."""
        held = self._haves.get(device, {})
        sent_at, sent = self._sent.get(device, (0.0, {}))
        if now - sent_at < self.sent_memory:
            held = cursors.merge(held, sent)
        return held

    def _servable(self, device: str, mine: dict[str, int], now: float) -> dict[str, int]:
        """Per origin we should answer ``device`` for: the seq it holds."""
        held = self._held_by(device, now)
        return {
            origin: held.get(origin, 0)
            for origin, seq in mine.items()
            if seq > held.get(origin, 0)
            and origin != device
            and (origin == self.device_id or origin not in self.online)
        }


def _ahead(theirs: dict[str, int], mine: dict[str, int]) -> bool:
    return any(seq > mine.get(origin, 0) for origin, seq in theirs.items())
