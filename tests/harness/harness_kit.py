"""Helpers for harness tests: fixture payloads, running ``switchboard hook`` like a harness does,
and scripted harness sessions (one fake harness process = one anchor)."""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "integration"))

from cluster import PY, Device, Relay, _Lines, free_port, group_of, timeout

__all__ = ["PY", "Device", "Lines", "Relay", "free_port", "group_of", "timeout"]
Lines = _Lines

FIXTURES = Path(__file__).with_name("fixtures")
# Fake harness process ids: each simulated harness gets its own anchor (a pid that does not
# exist, so no real process is ever taken for it).
_PIDS = itertools.count(4_190_000)


def fixture(harness: str, event: str, session: str, cwd: str = "/repo") -> dict[str, Any]:
    """The documented payload of ``event`` (a key of fixtures/HARNESS.json), for ``session``."""
    data = json.loads((FIXTURES / f"{harness}.json").read_text())
    text = json.dumps(data[event]).replace("SESSION", session).replace("CWD", cwd)
    payload: dict[str, Any] = json.loads(text)
    return payload


@dataclass
class HookRun:
    """What one hook invocation printed, returned and took."""

    out: Any
    code: int
    stderr: str
    seconds: float
    stdout: str


def run_hook(
    env: dict[str, str],
    harness: str,
    event: str,
    stdin: Any,
    *,
    args: tuple[str, ...] = (),
    limit: float = 30.0,
) -> HookRun:
    """Run ``switchboard hook HARNESS EVENT`` as a harness does: payload on stdin, JSON out."""
    data = stdin if isinstance(stdin, bytes) else json.dumps(stdin).encode()
    started = time.monotonic()
    done = subprocess.run(
        [PY, "-m", "switchboard", "hook", harness, event, *args],
        input=data,
        capture_output=True,
        env=env,
        timeout=timeout(limit),
        check=False,
    )
    seconds = time.monotonic() - started
    stdout = done.stdout.decode()
    try:
        out = json.loads(stdout) if stdout.strip() else None
    except ValueError:
        out = "NOT JSON: " + stdout
    return HookRun(out, done.returncode, done.stderr.decode(), seconds, stdout)


def start_hook(
    env: dict[str, str], harness: str, event: str, stdin: Any, *args: str
) -> subprocess.Popen[bytes]:
    """Start a hook in the background (a harness's async hook); its payload comes from a file."""
    with tempfile.TemporaryFile() as payload:
        payload.write(json.dumps(stdin).encode())
        payload.seek(0)
        return subprocess.Popen(
            [PY, "-m", "switchboard", "hook", harness, event, *args],
            stdin=payload,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
        )


@dataclass
class Session:
    """A scripted harness session: one harness process (anchor) and one session id."""

    device: Device
    harness: str
    session: str
    agent: str | None = None
    cwd: str = "/repo"
    pid: int = field(default_factory=lambda: next(_PIDS))

    @property
    def env(self) -> dict[str, str]:
        env = {**self.device.env, "SWITCHBOARD_HARNESS_PID": str(self.pid)}
        env.pop("SWITCHBOARD_AGENT", None)
        if self.agent:
            env["SWITCHBOARD_AGENT"] = self.agent
        return env

    def hook(self, event: str, **overrides: Any) -> HookRun:
        """Fire the harness's ``event`` with its documented payload (``Event:Variant`` too)."""
        payload = fixture(self.harness, event, self.session, self.cwd)
        payload.update(overrides)
        return run_hook(self.env, self.harness, event.split(":", maxsplit=1)[0], payload)

    def context_text(self, run: HookRun) -> str:
        """The text a hook answer places in the model's context (any harness's shape)."""
        out = run.out or {}
        specific = out.get("hookSpecificOutput") or {}
        steps = out.get("injectSteps") or [{}]
        return str(
            specific.get("additionalContext")
            or out.get("reason")
            or out.get("additional_context")
            or out.get("followup_message")
            or steps[0].get("ephemeralMessage")
            or out.get("context")
            or out.get("prompt")
            or ""
        )


def mcp_env(session: Session) -> dict[str, str]:
    """The environment a harness gives our MCP server (same anchor as its hooks)."""
    return {**session.env, "SWITCHBOARD_HARNESS": session.harness}


def address(device: Device, name: str) -> str:
    """``name:SHORT`` on ``device``."""
    return f"{name}:{device.short}"


def events_of(device: Device, kind: str) -> list[dict[str, Any]]:
    """Every event of one type in ``device``'s log."""
    rows: list[dict[str, Any]] = device.call("events", type=kind)
    return rows


def clean_env() -> dict[str, str]:
    """This process's environment without Switchboard variables."""
    return {k: v for k, v in os.environ.items() if not k.startswith("SWITCHBOARD_")} | {
        "SWITCHBOARD_TEST_TIMEOUT_FACTOR": os.environ.get("SWITCHBOARD_TEST_TIMEOUT_FACTOR", "1")
    }
