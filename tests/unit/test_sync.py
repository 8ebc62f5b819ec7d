"""Replication between log holders paired in memory: devices, relays, gaps and resends."""

from __future__ import annotations

from pairing import DOWN, UP, LogHolder, Network, ScriptedLink, SessionPair

from switchboard.proto.session import PresenceReceived


def assert_converged(*holders: LogHolder) -> None:
    """Assert every holder keeps the same envelopes, each origin contiguous from 1, no duplicate."""
    first = holders[0]
    for holder in holders:
        assert holder.log == first.log, f"{holder.name} differs from {first.name}"
        for origin, envs in holder.log.items():
            assert [(env.origin, env.seq) for env in envs] == [
                (origin, seq) for seq in range(1, len(envs) + 1)
            ]
    devices = [holder for holder in holders if holder.keys is not None]
    for device in devices:
        assert device.plain == devices[0].plain
        for origin, events in device.plain.items():
            assert [event.key for event in events] == [
                (origin, seq) for seq in range(1, len(events) + 1)
            ]


def test_sync_two_devices_paired_directly() -> None:
    """Two devices, one serving the other, exchange what each wrote before and after connecting."""
    a, b = LogHolder("device-a"), LogHolder("device-b")
    for n in range(3):
        a.append(f"a{n}")
    b.append("b0")
    pair = SessionPair(a, b)
    pair.pump()
    assert_converged(a, b)
    a.append("a3")
    b.append("b1")
    b.append("b2")
    pair.pump()
    assert_converged(a, b)
    assert a.vector() == {a.id: 4, b.id: 3}


def test_sync_three_devices_through_a_device_hub() -> None:
    """A device serving two others forwards each one's events to the other."""
    a, hub, c = LogHolder("device-a"), LogHolder("device-b"), LogHolder("device-c")
    network = Network()
    network.connect(a, hub)
    network.connect(c, hub)
    network.pump()
    a.append("from a")
    c.append("from c")
    hub.append("from b")
    network.pump()
    assert_converged(a, hub, c)
    assert {origin: len(events) for origin, events in c.plain.items()} == {
        a.id: 1,
        hub.id: 1,
        c.id: 1,
    }


def test_sync_three_devices_through_a_relay(relay: LogHolder) -> None:
    """A relay that cannot open envelopes still carries every device's events to the others."""
    devices = [LogHolder(f"device-{name}") for name in "abc"]
    network = Network()
    for device in devices:
        device.append(f"early {device.name}")
        network.connect(device, relay)
    network.pump()
    for n, device in enumerate(devices * 2):
        device.append(f"live {n}")
    network.pump()
    assert_converged(relay, *devices)
    assert sum(len(envs) for envs in relay.log.values()) == 9


def test_sync_relay_reports_presence(relay: LogHolder) -> None:
    """Devices hear when another device of the group connects to or leaves the relay."""
    a, b = LogHolder("device-a"), LogHolder("device-b")
    network = Network()
    network.connect(a, relay)
    network.pump()
    link_b = network.connect(b, relay)
    network.pump()
    link_b.client.send_bye()
    network.pump()
    assert a.events_of(PresenceReceived) == [
        PresenceReceived(b.id, True),
        PresenceReceived(b.id, False),
    ]


def test_sync_reordered_batches_recover_through_have(pair: SessionPair) -> None:
    """A batch overtaken by a later one is a gap: the receiver asks again and gets both."""
    device, relay = pair.client_holder, pair.server_holder
    device.append("one")
    device.append("two")
    pair.network.flush()
    assert pair.link.reorder(UP, 0)  # "two" now travels before "one"
    pair.pump()
    assert relay.gaps == 1
    assert_converged(device, relay)


def test_sync_duplicated_batch_is_stored_once(pair: SessionPair) -> None:
    """A batch delivered twice is stored once."""
    device, relay = pair.client_holder, pair.server_holder
    device.append("one")
    pair.network.flush()
    pair.link.duplicate(UP, 0)
    pair.pump()
    assert_converged(device, relay)
    assert len(relay.log[device.id]) == 1


def test_sync_dropped_batch_recovers_at_next_event(pair: SessionPair) -> None:
    """A lost batch shows up as a gap when the same origin's next event arrives."""
    device, relay = pair.client_holder, pair.server_holder
    device.append("lost")
    pair.network.flush()
    pair.link.drop(UP, 0)
    pair.pump()
    assert relay.vector() == {}
    device.append("next")
    pair.pump()
    assert_converged(device, relay)


def test_sync_dropped_last_batch_waits_for_reconnect(pair: SessionPair) -> None:
    """A lost batch with nothing after it stays missing until the link reconnects."""
    device, relay = pair.client_holder, pair.server_holder
    device.append("lost")
    pair.network.flush()
    pair.link.drop(UP, 0)
    pair.pump()
    assert relay.vector() == {}  # nothing inside the session notices
    pair.reconnect()
    pair.pump()
    assert_converged(device, relay)


def test_sync_reconnect_exchanges_what_was_written_offline(relay: LogHolder) -> None:
    """Events written while a link is cut arrive after the reconnect's Have exchange."""
    a, b = LogHolder("device-a"), LogHolder("device-b")
    network = Network()
    link_a = network.connect(a, relay)
    network.connect(b, relay)
    network.pump()
    link_a.cut()
    a.append("offline a")
    b.append("while a is away")
    network.pump()
    assert a.vector() == {a.id: 1}
    network.reconnect(link_a)
    network.pump()
    assert_converged(relay, a, b)


def test_sync_cut_mid_handshake_then_reconnect(relay: LogHolder) -> None:
    """A link cut during the handshake leaves both sessions closed, and a new one works."""
    a = LogHolder("device-a")
    a.append("x")
    network = Network()
    link = network.connect(a, relay)
    link.deliver(UP)  # Hello reaches the relay, the Challenge is in flight
    network.flush()
    link.cut()
    assert link.is_dead and link.is_cut
    fresh = network.reconnect(link)
    network.pump()
    assert fresh.client.is_open
    assert_converged(relay, a)


def test_sync_idle_link_stays_up_with_pings(pair: SessionPair) -> None:
    """Ticking in steps of the ping interval keeps a quiet link open."""
    for _ in range(10):
        pair.network.tick(5.0)
        pair.pump()
    assert pair.client.is_open and pair.server.is_open


def test_sync_silent_link_times_out(pair: SessionPair) -> None:
    """A link whose frames never arrive times out on both sides."""
    pair.network.tick(1.0)
    for _ in range(4):
        pair.network.tick(5.0)
        for direction in (UP, DOWN):
            while pair.link.drop(direction):
                pass
    assert not pair.client.is_open and not pair.server.is_open


def test_sync_scripted_link_faults_report_whether_they_applied() -> None:
    """Faults on an empty wire do nothing and say so."""
    pair = SessionPair(start=False)
    link: ScriptedLink = pair.link
    assert (
        not link.deliver(UP)
        and not link.drop(UP)
        and not link.duplicate(DOWN)
        and not link.reorder(UP)
    )
    assert link.is_quiet
