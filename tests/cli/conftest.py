"""Fixtures of the real-CLI tests: a relay and two devices grouped through the CLI, fresh homes."""

from __future__ import annotations

import dataclasses
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from cli_homes import PY, Device, Home, Relay, temporary_home, timeout

# These tests press Ctrl-C (SIGINT) on the commands they start. A shell that starts the suite
# in the background (`make test &` in a script) hands it SIGINT ignored, and every command
# would inherit that and never see the keypress. A handler here is reset to the default in
# each command started (an ignored signal would stay ignored), as a terminal gives it.
if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)


@dataclasses.dataclass
class Pair:
    """A relay and two devices in one group, each with a foreground daemon and one agent."""

    relay: Relay
    a: Device
    b: Device
    ha: Home
    hb: Home
    a_short: str
    b_short: str
    group_id: str
    created: str  # stdout of `group create`


def _join_with_shell(ha: Home, hb: Home, agent: str) -> subprocess.CompletedProcess[str]:
    # Exactly the documented idiom: TOKEN=$(switchboard invite | tail -n 1).
    script = (
        'TOKEN=$(SWITCHBOARD_HOME="$A" "$PY" -m switchboard invite | tail -n 1) && '
        'SWITCHBOARD_HOME="$B" SWITCHBOARD_AGENT="$AGENT" "$PY" -m switchboard join "$TOKEN"'
    )
    env = {**ha.env, "A": str(ha.path), "B": str(hb.path), "PY": PY, "AGENT": agent}
    return subprocess.run(
        ["sh", "-c", script],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout(60),
        check=False,
    )


@pytest.fixture(scope="module")
def pair() -> Iterator[Pair]:
    """One relay process and two ``daemon run`` processes, grouped through the CLI."""
    root = Path(tempfile.mkdtemp(prefix="sbcli-", dir="/tmp"))
    relay = Relay(root / "relay")
    a, b = Device(root / "a", "laptop"), Device(root / "b", "server")
    try:
        relay.start()
        a.start()
        b.start()
        ha, hb = Home(a.home), Home(b.home)
        ha.run("init", "--name", "laptop")
        hb.run("init", "--name", "server")
        created = ha.run("group", "create", "--name", "team", "--relay", relay.url, agent="luna")
        joined = _join_with_shell(ha, hb, "nova")
        assert joined.returncode == 0, joined.stderr
        assert joined.stdout.startswith("joined group team ")
        a_short = ha.json("status")["device"]["short"]
        b_short = hb.json("status")["device"]["short"]
        # Each device knows the other's agent before any test runs.
        a.wait_events(1, type="agent_registered", agent=f"nova:{b_short}")
        b.wait_events(1, type="agent_registered", agent=f"luna:{a_short}")
        group_id = ha.json("status")["groups"][0]["id"]
        yield Pair(relay, a, b, ha, hb, a_short, b_short, group_id, created.stdout)
    finally:
        b.kill(signal.SIGTERM)
        a.kill(signal.SIGTERM)
        relay.kill(signal.SIGTERM)
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def fresh_home() -> Iterator[Home]:
    """A new, empty home; any daemon its commands start is stopped afterwards."""
    with temporary_home() as home:
        yield home
