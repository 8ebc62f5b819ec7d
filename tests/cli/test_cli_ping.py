"""`switchboard ping DEV` between two real daemons, through their relay's directed channel."""

from __future__ import annotations

import re

from cli_homes import one_error_line, timeout
from conftest import Pair

PONG = re.compile(r"^pong from (?P<dev>[A-Z0-9]+) \((?P<name>\w+)\) via (?P<link>\S+): [\d.]+ ms$")


def test_ping_prints_the_round_trip_to_the_other_device(pair: Pair) -> None:
    """`ping DEV` by short id and by name prints one pong line naming the device and link."""
    for dev in (pair.b_short, "server", pair.b_short.lower()):
        out = pair.ha.run("ping", dev).stdout.splitlines()
        assert len(out) == 1, out
        found = PONG.match(out[0])
        assert found, out[0]
        assert (found["dev"], found["name"], found["link"]) == (
            pair.b_short,
            "server",
            pair.relay.url,
        )
    back = PONG.match(pair.hb.run("ping", pair.a_short).stdout.strip())
    assert back and back["name"] == "laptop"


def test_ping_json_reports_every_round_trip(pair: Pair) -> None:
    """`ping --json --count 3` prints one object with three round trips and their summary."""
    pong = pair.ha.json("ping", pair.b_short, "--count", "3", "--interval", "0")
    assert set(pong) == {"device", "id", "name", "link", "rtt_ms", "min_ms", "avg_ms", "max_ms"}
    assert (pong["device"], pong["name"], pong["link"]) == (pair.b_short, "server", pair.relay.url)
    assert pong["id"] == pair.hb.json("status")["device"]["id"]
    assert len(pong["rtt_ms"]) == 3 and all(rtt > 0 for rtt in pong["rtt_ms"])
    assert pong["min_ms"] <= pong["avg_ms"] <= pong["max_ms"]
    lines = pair.ha.run("ping", pair.b_short, "--count", "2", "--interval", "0").stdout
    assert lines.splitlines()[-1].startswith("2 round trips: min ")


def test_ping_an_unknown_device_exits_1_with_one_line(pair: Pair) -> None:
    """A device nobody knows is an error of one line, exit status 1."""
    result = pair.ha.run("ping", "ZZZZ", code=1)
    assert one_error_line(result) == "switchboard: no device 'ZZZZ' is known here"


def test_ping_a_device_whose_link_is_off_says_it_is_unreachable(pair: Pair) -> None:
    """While B's link is off, A's ping of B fails at once: B is not connected to the relay."""
    try:
        pair.hb.run("link", "off")
        result = pair.ha.run("ping", pair.b_short, "--timeout", str(timeout(10)), code=1)
        line = one_error_line(result)
        assert line.startswith(f"switchboard: device {pair.b_short} is unreachable: "), line
    finally:
        pair.hb.run("link", "on")
    pair.b.call("link.sync", timeout=timeout(20))
    assert PONG.match(pair.ha.run("ping", pair.b_short, "--timeout", str(timeout(10))).stdout)
