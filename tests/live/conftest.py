"""Fixtures for live turns: the pinned harness CLIs, and one installed harness per module run."""

from __future__ import annotations

import json
import shutil
import signal
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from drivers import DRIVERS, Driver
from live_kit import Device, Home, Script, Turn, check_installed
from standin import Standin


@pytest.fixture(scope="session", autouse=True)
def harness_versions() -> dict[str, str]:
    """The pinned harness CLIs; every live test fails (never skips) when they are missing."""
    return check_installed()


@dataclass
class Live:
    """One harness after ``switchboard install`` and a first live turn with messages."""

    driver: Driver
    device: Device
    home: Home
    standin: Standin
    script: Script
    user_files: dict[Path, bytes]  # the user's own config as it was before install
    installed: list[Path]  # every file install touched
    turn: Turn


@pytest.fixture(scope="module", params=sorted(DRIVERS))
def live(request: pytest.FixtureRequest) -> Iterator[Live]:
    """A harness installed in a throwaway home (a short path: unix sockets live there), with a
    device, a stand-in for its model API, and the first turn run while the script sends."""
    driver = DRIVERS[request.param]
    root = Path(tempfile.mkdtemp(prefix="sbl-", dir="/tmp"))
    device = Device(root / "sb", "solo").start()
    script = Script(device, driver.name)
    standin = Standin(driver.dialect, before=script)
    try:
        device.call("init", name="solo")
        home = Home(root / "home", device)
        user_files = {path: path.read_bytes() for path in driver.prepare(home, standin.url)}
        args = ("install", driver.name, *driver.install_args, "--json")
        report = json.loads(home.switchboard(*args, env=driver.env(home, standin.url)).stdout)
        installed = [Path(o["path"]) for h in report["harnesses"] for o in h["outcomes"]]
        turn = driver.turn(
            home, standin, until=lambda sent: any(script.end in r.text for r in sent)
        )
        standin.before = None  # later turns run without messages
        print(f"\n{driver.name}: live turn with two messages: {turn.seconds:.1f} s")
        yield Live(driver, device, home, standin, script, user_files, installed, turn)
    finally:
        standin.close()
        device.kill(signal.SIGTERM)
        shutil.rmtree(root, ignore_errors=True)
