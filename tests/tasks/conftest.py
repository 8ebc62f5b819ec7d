"""Delegation tests: real daemons (tests/integration/cluster.py), fake harness CLIs on PATH."""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shlex
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "integration"))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "coordination"))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "brokers"))

from cluster import Device, timeout
from coord_cluster import wait_until

FAKE = Path(__file__).with_name("fake_agent.py")
HARNESSES = ("claude", "codex", "gemini", "opencode", "pi")
FINAL = ("refused", "completed", "failed", "stopped", "killed", "lost")


@pytest.fixture
def fakebin(tmp_path: Path) -> Path:
    """A folder with one script per harness name, each running the fake agent."""
    folder = tmp_path / "bin"
    folder.mkdir()
    for harness in HARNESSES:
        script = folder / harness
        command = shlex.join([sys.executable, str(FAKE), harness])
        script.write_text(f'#!/bin/sh\nexec {command} "$@"\n')
        script.chmod(0o755)
    return folder


def cmd_policy(work: Path, extra: str = "") -> str:
    """A policy letting this device's user spawn every harness (cmd: the fake) in ``work``."""
    args = json.dumps([sys.executable, str(FAKE), "cmd", "{task}"])
    return (
        f'[local]\nharnesses = ["*"]\ndirs = ["{work}"]\n'
        f'[harnesses.cmd]\nargs = {args}\ntask = "arg"\n{extra}'
    )


def write_policy(device: Device, text: str) -> None:
    path = device.home / "spawn.toml"
    path.write_text(text)
    path.chmod(0o600)


@pytest.fixture
def work(short_home: Path) -> Path:
    """The directory tasks run in (allowed by ``cmd_policy``)."""
    path = short_home / "work"
    path.mkdir()
    return path


@pytest.fixture
def short_home() -> Iterator[Path]:
    """A short path: the daemon's unix socket path is limited to ~107 bytes."""
    import shutil  # noqa: PLC0415
    import tempfile  # noqa: PLC0415

    path = Path(tempfile.mkdtemp(prefix="sbt-", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def device(short_home: Path, fakebin: Path, work: Path) -> Iterator[Device]:
    """One device whose daemon has the fake harnesses on PATH and a policy for ``work``."""
    dev = Device(short_home / "a", "alpha")
    dev.env["PATH"] = f"{fakebin}{os.pathsep}{dev.env.get('PATH', '')}"
    dev.home.mkdir(parents=True)
    write_policy(dev, cmd_policy(work))
    dev.start()
    try:
        yield dev
    finally:
        dev.kill()
        _kill_leftovers(dev.home)


def _kill_leftovers(home: Path) -> None:
    """Kill the process groups of tasks a test left running (its own tasks only)."""
    import signal  # noqa: PLC0415

    for run in (home / "tasks").glob("*/run.json"):
        pid, started = json.loads(run.read_text())["wrapper"]
        try:
            with open(f"/proc/{pid}/stat") as file:
                alive = file.read().rsplit(")", 1)[1].split()[19] == started
        except (OSError, IndexError):
            alive = False
        if alive:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)


def wait_task(device: Device, task: str, states: tuple[str, ...] = FINAL, seconds: float = 30
              ) -> dict[str, Any]:  # fmt: skip
    """Wait until ``device`` shows the task in one of ``states``; return it."""

    def look() -> dict[str, Any] | None:
        found: dict[str, Any] = device.call("task.show", task=task)
        return found if found["state"] in states else None

    return wait_until(look, seconds, f"task {task} in {states}")


def gate(where: Path, name: str = "gate") -> Path:
    """A FIFO that a task's ``wait-gate PATH`` line waits on until ``release`` (fake_agent)."""
    path = where / name
    os.mkfifo(path)
    return path


def release(path: Path, seconds: float = 30) -> None:
    """Let the task waiting at the gate ``path`` go on; fail if none waits there in time."""

    def opened() -> int | None:
        try:
            return os.open(path, os.O_WRONLY | os.O_NONBLOCK)
        except OSError as exc:
            if exc.errno != errno.ENXIO:  # ENXIO: nobody has it open for reading yet
                raise
            return None

    fd = wait_until(opened, seconds, f"a task waiting at {path.name}")
    try:
        os.write(fd, b"open\n")
    finally:
        os.close(fd)


def spawn(device: Device, text: str, **params: Any) -> dict[str, Any]:
    """Spawn ``text`` on ``device`` as agent ``boss``; return the answer."""
    values = {"agent": "boss", "harness": "cmd", "text": text, **params}
    answer: dict[str, Any] = device.call("spawn", **values)
    return answer


__all__ = ["spawn", "timeout", "wait_task", "write_policy"]


@pytest.fixture(params=["relay", "mqtt"])
def pair(
    request: pytest.FixtureRequest, short_home: Path, fakebin: Path
) -> Iterator[tuple[Device, Device, Path]]:
    """Two devices in one group through a relay, or a Mosquitto broker, on loopback, both with
    the fake harnesses on PATH; the second (the runner) has a work directory but no policy for
    the first yet."""
    from brokerlab import Mosquitto  # noqa: PLC0415
    from cluster import Relay  # noqa: PLC0415

    relay: Relay | Mosquitto = (
        Relay(short_home / "relay") if request.param == "relay" else Mosquitto(short_home / "mq")
    )
    devices = [Device(short_home / name, name) for name in ("lap", "vps")]
    work = short_home / "vpswork"
    work.mkdir()
    try:
        relay.start()
        for dev in devices:
            dev.env["PATH"] = f"{fakebin}{os.pathsep}{dev.env.get('PATH', '')}"
            dev.home.mkdir(parents=True)
            dev.start()
            dev.call("init", name=dev.name)
        created = devices[0].call("group.create", name="test", relay=relay.url)
        devices[1].call("join", invite=created["invite"])
        for dev in devices:
            dev.call("link.sync", timeout=timeout(30))
        for dev in devices:  # each knows the other device (its device_joined arrived)
            wait_until(lambda dev=dev: dev.call("status")["clock"], 30, f"{dev.name} knows a peer")
        yield devices[0], devices[1], work
    finally:
        for dev in devices:
            dev.kill()
            _kill_leftovers(dev.home)
        if isinstance(relay, Relay):
            relay.kill()
        else:
            relay.stop()
