"""Three devices and a relay under random writes and link faults end with identical logs.

A Hypothesis ``RuleBasedStateMachine`` writes events on random devices and, on random links,
delivers, drops, duplicates and reorders frames, cuts links and reconnects them, and moves the
clock. After every step each holder's log must still be contiguous per origin. At the end all
links are healed (a fresh connection where a session closed or a frame was lost) and pumped to
quiescence; then every device and the relay must hold the same envelopes, every device the
same events, each origin's exactly as written, with no duplicate and no gap.
"""

from __future__ import annotations

from hypothesis import event, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule
from pairing import DOWN, UP, LogHolder, Network, ScriptedLink

from switchboard.events import Event

links = st.integers(0, 2)
directions = st.sampled_from([UP, DOWN])
positions = st.integers(0, 7)


class ThreeDevicesOneRelay(RuleBasedStateMachine):
    """Devices a, b and c, each linked to one relay through a scripted faulty link."""

    def __init__(self) -> None:
        super().__init__()
        self.network = Network()
        self.relay = LogHolder.relay()
        self.devices = [LogHolder(f"device-{name}") for name in "abc"]
        for device in self.devices:
            self.network.connect(device, self.relay)
        self.written: dict[str, list[Event]] = {device.id: [] for device in self.devices}
        self.count = 0

    def link(self, index: int) -> ScriptedLink:
        return self.network.links[index]

    # -- rules -------------------------------------------------------------------------------

    @rule(device=st.integers(0, 2), count=st.integers(1, 4))
    def append(self, device: int, count: int) -> None:
        holder = self.devices[device]
        for _ in range(count):
            self.count += 1
            holder.append(f"message {self.count}")
        self.written[holder.id] = list(holder.plain[holder.id])
        self.network.flush()

    @rule(link=links, direction=directions, count=st.integers(1, 6))
    def deliver(self, link: int, direction: str, count: int) -> None:
        for _ in range(count):
            self.link(link).deliver(direction)
            self.network.flush()

    @rule(steps=st.integers(1, 20))
    def pump_some(self, steps: int) -> None:
        for _ in range(steps):
            self.network.step()

    @rule(
        link=links,
        direction=directions,
        index=positions,
        kind=st.sampled_from(["drop", "duplicate", "reorder"]),
    )
    def fault(self, link: int, direction: str, index: int, kind: str) -> None:
        getattr(self.link(link), kind)(direction, index)

    @rule(link=links)
    def cut(self, link: int) -> None:
        if not self.link(link).is_cut:
            self.link(link).cut()

    @rule(link=links)
    def reconnect(self, link: int) -> None:
        if self.link(link).is_cut or self.link(link).is_dead:
            self.network.reconnect(self.link(link))

    # Mostly short steps, which pings survive; 16 s outlasts the idle timeout of 15 s.
    @rule(dt=st.sampled_from([0.5, 1.0, 2.0, 5.0, 16.0]))
    def tick(self, dt: float) -> None:
        self.network.tick(dt)

    # -- checks ------------------------------------------------------------------------------

    @invariant()
    def logs_stay_contiguous(self) -> None:
        for holder in [self.relay, *self.devices]:
            for origin, envs in holder.log.items():
                assert [(env.origin, env.seq) for env in envs] == [
                    (origin, seq) for seq in range(1, len(envs) + 1)
                ], f"{holder.name} holds a gap or a duplicate of {origin}"
            for origin, events in holder.plain.items():
                assert events == self.written[origin][: len(events)]

    def heal(self) -> None:
        """Reconnect every link that closed or lost a frame, then pump until nothing moves."""
        for round_ in range(5):
            self.network.pump()
            broken = [
                link
                for link in self.network.links
                if link.lost or not (link.client.is_open and link.server.is_open)
            ]
            if round_ == 0:
                event(f"links reconnected to heal: {len(broken)}")
            if not broken:
                return
            for link in broken:
                self.network.reconnect(link)
        raise AssertionError("links did not heal over a faultless network")

    def teardown(self) -> None:
        self.heal()
        expected = {origin: len(events) for origin, events in self.written.items() if events}
        event(f"events written: {min(sum(expected.values()) // 10 * 10, 40)}+")
        assert self.relay.vector() == expected
        for device in self.devices:
            assert device.log == self.relay.log, f"{device.name} differs from the relay"
            assert device.plain == {
                origin: events for origin, events in self.written.items() if events
            }
        self.logs_stay_contiguous()


ThreeDevicesOneRelay.TestCase.settings = settings(
    max_examples=200, stateful_step_count=50, deadline=None
)
test_sync_stateful_three_devices_converge = ThreeDevicesOneRelay.TestCase
test_sync_stateful_three_devices_converge.__doc__ = (
    "Random writes and link faults on three devices and a relay end in identical logs."
)


class FaultsInsideSessions(ThreeDevicesOneRelay):
    """The same network, but faults only duplicate or reorder frames of open sessions.

    No link is ever cut or reconnected and the clock stands still, so whatever goes wrong must
    be repaired inside the sessions, by gaps, Have and resends alone.
    """

    @rule(
        link=links,
        direction=directions,
        index=positions,
        kind=st.sampled_from(["duplicate", "reorder"]),
    )
    def fault(self, link: int, direction: str, index: int, kind: str) -> None:
        target = self.link(link)
        if target.client.is_open and target.server.is_open:
            getattr(target, kind)(direction, index)

    # Cuts, reconnects and the clock are the other machine's business.
    cut = None
    reconnect = None
    tick = None

    def heal(self) -> None:
        self.network.pump()
        for link in self.network.links:
            assert link.client.is_open and link.server.is_open, "a fault inside a session closed it"
        event(f"gaps repaired: {min(sum(h.gaps for h in [self.relay, *self.devices]), 5)}")


FaultsInsideSessions.TestCase.settings = settings(
    max_examples=200, stateful_step_count=50, deadline=None
)
test_sync_stateful_faults_inside_sessions_repair_themselves = FaultsInsideSessions.TestCase
test_sync_stateful_faults_inside_sessions_repair_themselves.__doc__ = (
    "Duplicated and reordered frames of open sessions are repaired without any reconnect."
)


def test_sync_stateful_network_is_usable_alone() -> None:
    """The network's pump returns at once when nothing is in flight."""
    assert Network().pump() == 0
