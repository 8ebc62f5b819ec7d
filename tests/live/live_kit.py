"""Helpers for live turns: the real harness CLIs, a throwaway home, and the scripted messages.

A live turn runs one pinned harness CLI (tests/live/harnesses, installed by ``make
harnesses``) headless in a temporary home, against a stand-in for its model API
(standin.py), with Switchboard wired in by ``switchboard install HARNESS`` and a real daemon.
Nothing of the real home is read or written: HOME and the XDG directories point into the
temp dir, and the harness gets a fresh environment (no credentials, no proxies), so its only
network peer is the stand-in on loopback.

The scripted turn (``Script``): the stand-in answers the first request with a shell tool
call; before it answers, the script sends the agent a message (MID), so the message waits in
the inbox while the tool runs and the harness's after-tool hook must bring it into the next
request. Before the stand-in answers that next request with the final answer, the script
sends a second message (END): the harness's end-of-turn hook must keep the agent going and
bring it into a further request.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "harness"))

from harness_kit import PY, Device, Lines, free_port, timeout
from standin import Recorded, Standin

__all__ = ["PY", "Device", "Home", "Lines", "Script", "Turn", "free_port", "timeout"]

HARNESSES = Path(__file__).with_name("harnesses")
BIN = HARNESSES / "node_modules" / ".bin"
# The pinned packages (package.json) and the executables they install.
PACKAGES = {
    "claude": "@anthropic-ai/claude-code",
    "codex": "@openai/codex",
    "gemini": "@google/gemini-cli",
    "opencode": "opencode-ai",
    "pi": "@mariozechner/pi-coding-agent",
}


def check_installed() -> dict[str, str]:
    """The pinned harness versions, each checked against what is installed.

    Raises:
        AssertionError: a harness is missing or another version (``make harnesses``).
    """
    pins = json.loads((HARNESSES / "package.json").read_text())["dependencies"]
    problems = []
    for name, package in PACKAGES.items():
        manifest = HARNESSES / "node_modules" / package / "package.json"
        if not (BIN / name).exists() or not manifest.exists():
            problems.append(f"{name} ({package}) is not installed")
            continue
        version = json.loads(manifest.read_text())["version"]
        if version != pins[package]:
            problems.append(f"{name} is {version}, the lock pins {pins[package]}")
    if problems:
        raise AssertionError(
            "the real harness CLIs are missing; run `make harnesses`: " + "; ".join(problems)
        )
    return {name: pins[package] for name, package in PACKAGES.items()}


@dataclass
class Turn:
    """One headless run of a harness: how it ended and what the stand-in received."""

    code: int
    stdout: str
    stderr: str
    seconds: float
    requests: list[Recorded]

    @property
    def conversation(self) -> list[Recorded]:
        """The agent's conversation requests (tool call and final steps), in order."""
        return [r for r in self.requests if r.step in ("tool", "final")]

    def describe(self) -> str:
        """Everything a failed assertion should show."""
        start = self.requests[0].at if self.requests else 0.0
        steps = [f"+{r.at - start:.1f}s {r.method} {r.path} {r.step}" for r in self.requests]
        return (
            f"exit {self.code} after {self.seconds:.1f} s\nrequests: {steps}\n"
            f"stdout: {self.stdout[-2000:]}\nstderr: {self.stderr[-4000:]}"
        )


class Home:
    """A throwaway user home for one harness, with its own environment.

    Args:
        root: the directory that stands in for ``~`` (XDG directories inside it).
        device: the Switchboard device (its daemon running) the harness's entries point at.
    """

    def __init__(self, root: Path, device: Device) -> None:
        self.root = root
        self.device = device
        self.work = root / "project"
        self.work.mkdir(parents=True, exist_ok=True)
        path = os.pathsep.join(
            [str(BIN), str(Path(PY).parent), "/usr/local/bin", "/usr/bin", "/bin"]
        )
        self.env: dict[str, str] = {
            "HOME": str(root),
            "XDG_CONFIG_HOME": str(root / ".config"),
            "XDG_DATA_HOME": str(root / ".local" / "share"),
            "XDG_CACHE_HOME": str(root / ".cache"),
            "XDG_STATE_HOME": str(root / ".local" / "state"),
            "PATH": path,
            "LANG": "C.UTF-8",
            "TERM": "dumb",
            "NO_COLOR": "1",
            "SWITCHBOARD_HOME": str(device.home),
            # Harnesses keep sockets and scratch files in the temp dir: this one's, not /tmp.
            "TMPDIR": str(root / "tmp"),
        }
        (root / "tmp").mkdir(parents=True, exist_ok=True)
        for name in ("PYTHONPATH", "SWITCHBOARD_TEST_TIMEOUT_FACTOR", "SWITCHBOARD_LOOP"):
            if name in os.environ:
                self.env[name] = os.environ[name]

    def path(self, *parts: str) -> Path:
        """A path under the home."""
        return self.root.joinpath(*parts)

    def write(self, relative: str, text: str) -> Path:
        """Write a file under the home (a user's own config)."""
        target = self.root / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
        return target

    def switchboard(
        self, *args: str, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        """Run ``switchboard ARGS`` as the user of this home would (``env``: the harness's)."""
        done = subprocess.run(
            [PY, "-m", "switchboard", *args],
            env={**self.env, **(env or {})},
            cwd=self.work,
            capture_output=True,
            text=True,
            timeout=timeout(60),
            check=False,
        )
        assert done.returncode == 0, f"switchboard {' '.join(args)}: {done.stdout}{done.stderr}"
        return done

    def run(
        self, argv: list[str], standin: Standin, env: dict[str, str], seconds: float = 90
    ) -> Turn:
        """Run a harness headless until it exits; what the stand-in received meanwhile."""
        started = time.monotonic()
        proc = self.start(argv, env, stdin=subprocess.DEVNULL)
        try:
            stdout, stderr = proc.communicate(timeout=timeout(seconds))
        except subprocess.TimeoutExpired as exc:
            proc.kill()
            stdout, stderr = proc.communicate()
            raise AssertionError(
                f"{Path(argv[0]).name} did not finish within {seconds} s; the stand-in got "
                f"{[(r.path, r.step) for r in standin.requests]}; stderr: {stderr[-3000:]}"
            ) from exc
        return self.turn(standin, proc.returncode, stdout, stderr, started)

    def start(self, argv: list[str], env: dict[str, str], **kwargs: Any) -> subprocess.Popen[str]:
        """Start a harness process in the project directory with the home's environment."""
        options: dict[str, Any] = {"stdout": subprocess.PIPE, "stderr": subprocess.PIPE}
        return subprocess.Popen(
            argv, env={**self.env, **env}, cwd=self.work, text=True, **{**options, **kwargs}
        )

    def turn(self, standin: Standin, code: int, stdout: str, stderr: str, started: float) -> Turn:
        """The record of a turn that began at ``started`` (``time.monotonic()``)."""
        assert not standin.errors, standin.errors
        seconds = time.monotonic() - started
        return Turn(code, stdout, stderr, seconds, list(standin.requests))


@dataclass
class Script:
    """Messages sent to the harness's agent while the stand-in holds its answers.

    ``MID`` goes out before the tool call is answered (it must arrive with the tool result);
    ``END`` before the final answer (it must keep the agent from stopping).
    """

    device: Device
    harness: str
    sender: str = "nova"
    tag: str = field(default_factory=lambda: uuid.uuid4().hex[:8])
    sent: dict[str, int] = field(default_factory=dict)
    agent: str = ""
    failures: list[str] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def mid(self) -> str:
        return f"mid-turn note {self.tag}: the staging server moved to port 8443"

    @property
    def end(self) -> str:
        return f"end-of-turn note {self.tag}: also update the changelog"

    def __call__(self, step: str, body: Any) -> None:
        with self._lock:
            key = "mid" if step == "tool" else "end"
            if key in self.sent:
                return
            try:
                self.sent[key] = self._send(self.mid if key == "mid" else self.end)
            except Exception as exc:
                self.failures.append(f"{key}: {exc!r}")

    def _send(self, text: str) -> int:
        if not self.agent:
            self.agent = self.find_agent()
        result = self.device.call("send", agent=self.sender, to=[self.agent], text=text)
        return int(result["id"])

    def find_agent(self) -> str:
        """The address of the agent the harness registered (waits for its registration)."""
        where = f"json_extract(data, '$.harness') = '{self.harness}'"
        registered = self.device.wait_events(1, seconds=30, type="agent_registered", where=where)
        name = registered[0]["data"]["name"]
        return f"@{name}"

    def injected(self, key: str) -> dict[str, Any]:
        """The receipt state of one scripted message (waits until it was injected)."""
        result: dict[str, Any] = self.device.call(
            "message.wait", id=self.sent[key], state="injected", timeout=timeout(10)
        )
        return result
