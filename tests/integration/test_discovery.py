"""LAN discovery between two network namespaces joined by a veth pair, made by the test.

In namespace "a": a relay serving on its veth address with ``--announce`` and a daemon with
``SWITCHBOARD_ANNOUNCE=1``. In namespace "b": ``discover`` sees both with their names and key
fingerprints and no group id, and a daemon there joins the group with a bare code, finding the
relay on the LAN. Where the machine forbids namespaces the test fails and says why: it never
skips.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from cluster import Device, _Lines, timeout

from switchboard.crypto import fingerprint, load_identity, public_bytes

# Slow (network namespaces, mDNS): `make test-slow`, which CI runs too.
pytestmark = pytest.mark.slow

PY = sys.executable


def _ip(*args: str) -> None:
    result = subprocess.run(["ip", *args], capture_output=True, text=True, check=False)
    if result.returncode != 0:
        pytest.fail(
            f"this test needs network namespaces (ip {' '.join(args)}: {result.stderr.strip()}); "
            "run it as root or with CAP_NET_ADMIN: it does not skip"
        )


@contextlib.contextmanager
def two_namespaces() -> Iterator[tuple[str, str, str, str]]:
    """Namespaces a and b joined by a veth pair; yields (ns_a, ns_b, address_a, address_b)."""
    tag = f"sb{os.getpid() % 100000}"
    net = f"10.213.{os.getpid() % 250}"
    ns_a, ns_b = f"{tag}a", f"{tag}b"
    made: list[str] = []
    try:
        for ns in (ns_a, ns_b):
            _ip("netns", "add", ns)
            made.append(ns)
        _ip("link", "add", f"{tag}x", "type", "veth", "peer", "name", f"{tag}y")
        for ns, dev, host in ((ns_a, f"{tag}x", 1), (ns_b, f"{tag}y", 2)):
            _ip("link", "set", dev, "netns", ns)
            _ip("-n", ns, "addr", "add", f"{net}.{host}/24", "dev", dev)
            _ip("-n", ns, "link", "set", dev, "up")
            _ip("-n", ns, "link", "set", "lo", "up")
        yield ns_a, ns_b, f"{net}.1", f"{net}.2"
    finally:
        for ns in made:  # deleting a namespace deletes its end of the veth pair, and the pair
            subprocess.run(["ip", "netns", "del", ns], check=False)


class NsDevice(Device):
    """A device whose daemon runs inside a network namespace (its socket is a file: the
    test talks to it from outside)."""

    def __init__(self, home: Path, name: str, ns: str, **env: str) -> None:
        super().__init__(home, name)
        self.ns = ns
        self.env.update(env)

    def start(self) -> NsDevice:
        self.home.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen(
            ["ip", "netns", "exec", self.ns, PY, "-m", "switchboard", "daemon", "run"],
            env=self.env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        self._log = _Lines(self.proc.stderr)
        self._log.wait_for(r" ready on ", 20)
        return self

    def in_ns(self, *args: str) -> subprocess.CompletedProcess[str]:
        cmd = ["ip", "netns", "exec", self.ns, PY, "-m", "switchboard", *args]
        result = subprocess.run(
            cmd, env=self.env, capture_output=True, text=True, timeout=timeout(60), check=False
        )
        assert result.returncode == 0, result.stderr
        return result


def test_discover_and_join_across_namespaces(tmp_path: Path) -> None:
    with two_namespaces() as (ns_a, ns_b, addr_a, _):
        relay_home = tmp_path / "relay"
        relay = subprocess.Popen(
            ["ip", "netns", "exec", ns_a, PY, "-m", "switchboard", "relay", "serve",
             "--host", addr_a, "--port", "0", "--data", str(relay_home), "--announce",
             "--name", "labrelay"],
            env={**os.environ, "SWITCHBOARD_HOME": str(relay_home)},
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )  # fmt: skip
        laptop = NsDevice(tmp_path / "laptop", "laptop", ns_a, SWITCHBOARD_ANNOUNCE="1")
        desk = NsDevice(tmp_path / "desk", "desk", ns_b)
        try:
            lines = _Lines(relay.stdout)
            url = lines.wait_for(r"relay listening on (\S+)", 20).group(1)
            lines.wait_for(r"announced on the LAN", 20)
            for device in (laptop, desk):
                device.start()
                device.call("init", name=device.name)
            group = laptop.call("group.create", name="lab", relay=url)["group"]

            key = load_identity(relay_home / "relay.key")
            assert key is not None
            relay_print = fingerprint(public_bytes(key))
            laptop_key = load_identity(laptop.settings.identity_path)
            assert laptop_key is not None
            found = json.loads(desk.in_ns("discover", "--wait", "3", "--json").stdout)
            by_kind = {row["kind"]: row for row in found}
            assert by_kind["relay"]["name"] == "labrelay"
            assert by_kind["relay"]["fingerprint"] == relay_print
            assert by_kind["relay"]["url"] == url
            assert by_kind["device"]["name"] == "laptop"
            assert by_kind["device"]["fingerprint"] == fingerprint(public_bytes(laptop_key))
            assert group["id"] not in json.dumps(found)  # no group id in clear

            # A bare code: the desk finds the relay on the LAN; then by the relay's name.
            code = laptop.call("invite.create", kind="code")["invite"]
            joined = desk.call("join", invite=code)
            assert joined["relay"] == url and joined["inviter"]["name"] == "laptop"
            assert desk.call("status")["groups"][0]["id"] == group["id"]
            words = laptop.call("invite.create", kind="words")
            third = NsDevice(tmp_path / "third", "third", ns_b).start()
            try:
                assert third.call("join", invite=words["invite"], relay="labrelay")["relay"] == url
            finally:
                third.kill(signal.SIGTERM)
        finally:
            for device in (laptop, desk):
                device.kill(signal.SIGTERM)
            relay.send_signal(signal.SIGTERM)
            relay.wait(timeout(20))
