"""The real Claude Code, started by hand (not spawned), asks a permission that travels.

Device ``vps`` runs ``claude -p`` as its user would, with Switchboard installed (``install
claude`` adds the ``PermissionRequest`` hook; Claude Code 2.1.332 runs that hook in ``-p``
mode too). The stand-in answers the model's first request with one shell command that writes
a file and is not allowed, so Claude Code asks; our hook asks vps's daemon, and the prompt
shows in ``approvals`` on device ``lap``, whose answer vps's policy allows (``spawn allow LAP
--answer``). ``approve`` runs the command; ``deny --reason`` keeps it from running and the
model reads the reason; no answer in time gives no decision, so Claude Code keeps its own
headless default (deny) and the prompt is settled ``timeout``.
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import standin as standin_module
from drivers import Claude, OpenCode
from live_kit import BIN, Device, Home, timeout
from standin import Standin

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "integration"))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "coordination"))

from cluster import Relay
from coord_cluster import wait_until

# Slow (real harness turns answering prompts): `make test-slow`, which CI runs too.
pytestmark = pytest.mark.slow

COMMAND = "echo hi > made.txt"


@pytest.fixture
def two(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Device, Device, Home, Standin]]:
    """lap and vps in one group through a relay; vps's user has Claude Code pointed at the
    stand-in with Switchboard installed and shell commands asking, and vps lets lap answer
    its agents' prompts (and spawn nothing)."""
    monkeypatch.setattr(standin_module, "COMMAND", COMMAND)
    root = Path(tempfile.mkdtemp(prefix="sba-", dir="/tmp"))
    relay = Relay(root / "relay")
    lap, vps = Device(root / "lap", "lap"), Device(root / "vps", "vps")
    stand = Standin("anthropic")
    try:
        relay.start()
        vps.home.mkdir(parents=True)
        home = Home(root / "home", vps)
        Claude().prepare(home, stand.url)
        settings = home.path(".claude", "settings.json")
        mine = json.loads(settings.read_text())
        mine["permissions"] = {}  # the shell command must ask
        settings.write_text(json.dumps(mine))
        for dev in (lap, vps):
            dev.start()
            dev.call("init", name=dev.name)
        home.switchboard("install", "claude", "--json")
        hooks = json.loads(settings.read_text())["hooks"]
        assert "hook claude PermissionRequest" in json.dumps(hooks["PermissionRequest"])
        created = lap.call("group.create", name="live", relay=relay.url)
        vps.call("join", invite=created["invite"])
        for dev in (lap, vps):
            dev.call("link.sync", timeout=timeout(30))
        wait_until(lambda: vps.call("status")["clock"], 30, "vps knows lap")
        vps.cli("spawn", "allow", lap.short, "--answer")
        yield lap, vps, home, stand
    finally:
        stand.close()
        for dev in (lap, vps):
            dev.kill(signal.SIGTERM)
        relay.kill()
        shutil.rmtree(root, ignore_errors=True)


def _claude(home: Home, stand: Standin, wait: float = 120) -> subprocess.Popen[str]:
    """``claude -p`` at vps's user's shell (no SWITCHBOARD_AGENT: the hooks name it)."""
    env = {**Claude().env(home, stand.url), "SWITCHBOARD_PROMPT_WAIT": str(wait)}
    return home.start([str(BIN / "claude"), "-p", "Write hi into made.txt."], env,
                      stdin=subprocess.DEVNULL)  # fmt: skip


def _finish(proc: subprocess.Popen[str]) -> str:
    out, err = proc.communicate(timeout=timeout(120))
    assert proc.returncode == 0, (out[-2000:], err[-3000:])
    return out


def _asked(lap: Device, vps: Device) -> dict[str, Any]:
    def look() -> dict[str, Any] | None:
        rows: list[dict[str, Any]] = lap.cli_json("approvals", agent="boss")
        return rows[0] if rows else None

    prompt: dict[str, Any] = wait_until(look, 120, "Claude Code's prompt in approvals on lap")
    assert (prompt["task"], prompt["tool"], prompt["device"]) == ("", "Bash", vps.short)
    assert prompt["detail"] == COMMAND and prompt["harness"] == "claude"
    agent = next(a for a in lap.call("agents") if a["address"] == prompt["agent"])
    assert agent["status"] == "blocked" and COMMAND in agent["summary"], agent
    return prompt


def _after_tool(stand: Standin) -> Any:
    after = [r for r in stand.requests if r.step == "final"]
    assert after, [r.step for r in stand.requests]
    return after[0]


def test_live_hand_started_claude_prompt_approved_from_another_device(two: Any) -> None:
    """``approve`` on lap: Claude Code runs the command, and the model gets its result."""
    lap, vps, home, stand = two
    proc = _claude(home, stand)
    prompt = _asked(lap, vps)
    done = lap.cli("approve", prompt["prompt"], agent="boss")
    assert f"of {prompt['agent']}: allow" in done.stdout
    assert standin_module.FINAL in _finish(proc)
    assert (home.work / "made.txt").read_text() == "hi\n"
    lap_id = lap.call("status")["device"]["id"]
    [answered] = vps.call("events", type="permission_answered", all_rooms=True)
    assert (answered["data"]["answer"], answered["data"]["by"]) == ("allow", f"boss:{lap_id}")
    assert lap.call("approvals") == []


def test_live_hand_started_claude_prompt_denied_with_reason(two: Any) -> None:
    """``deny --reason`` on lap: the command never runs, and the model reads the reason."""
    lap, vps, home, stand = two
    proc = _claude(home, stand)
    prompt = _asked(lap, vps)
    lap.cli("deny", prompt["prompt"], "--reason", "not on this box", agent="boss")
    _finish(proc)
    assert not (home.work / "made.txt").exists()
    assert _after_tool(stand).after_tool_call("not on this box")


def test_live_hand_started_claude_prompt_times_out_to_its_own_default(two: Any) -> None:
    """Nobody answers within SWITCHBOARD_PROMPT_WAIT: the hook gives no decision, so
    ``claude -p`` keeps its own default (deny), and the prompt is settled ``timeout``."""
    lap, vps, home, stand = two
    proc = _claude(home, stand, wait=3)
    [asked] = lap.wait_events(1, seconds=120, type="permission_asked")
    assert asked["data"]["detail"] == COMMAND
    _finish(proc)
    assert not (home.work / "made.txt").exists()
    [answered] = vps.call("events", type="permission_answered", all_rooms=True)
    assert answered["data"]["answer"] == "timeout"
    assert not _after_tool(stand).after_tool_call("denied through Switchboard")
    wait_until(lambda: lap.call("approvals") == [] or None, 30, "lap sees it settled")


@pytest.fixture
def opencode_user(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Device, Home, Standin]]:
    """One device whose user runs OpenCode (``opencode serve``, as the TUI does) against the
    stand-in, Switchboard installed, shell commands asking."""
    monkeypatch.setattr(standin_module, "COMMAND", COMMAND)
    root = Path(tempfile.mkdtemp(prefix="sbo-", dir="/tmp"))
    device = Device(root / "dev", "dev")
    stand = Standin(OpenCode.dialect)
    try:
        device.home.mkdir(parents=True)
        home = Home(root / "home", device)
        OpenCode().prepare(home, stand.url)
        config_path = home.path(".config", "opencode", "opencode.json")
        config = json.loads(config_path.read_text())
        config["permission"] = {"bash": "ask"}  # the shell command must ask
        config["experimental"] = {"continue_loop_on_deny": True}
        config_path.write_text(json.dumps(config, indent=2))
        device.start()
        device.call("init", name="dev")
        home.switchboard("install", "opencode", "--json")
        yield device, home, stand
    finally:
        stand.close()
        device.kill(signal.SIGTERM)
        shutil.rmtree(root, ignore_errors=True)


@pytest.mark.parametrize("answer", ["approve", "deny"])
def test_live_hand_started_opencode_prompt_answered_through_its_plugin(
    opencode_user: Any, answer: str
) -> None:
    """OpenCode's permission.asked reaches our plugin, the prompt shows in ``approvals``, and
    the answer is the plugin's reply: the command runs, or the model reads the refusal."""
    device, home, stand = opencode_user
    turn: dict[str, Any] = {}
    runner = threading.Thread(target=lambda: turn.update(t=OpenCode().turn(home, stand)))
    runner.start()
    try:

        def listed() -> dict[str, Any] | None:
            rows: list[dict[str, Any]] = device.cli_json("approvals", agent="boss")
            return rows[0] if rows else None

        prompt = wait_until(listed, 120, "OpenCode's prompt in approvals")
        assert (prompt["task"], prompt["tool"], prompt["harness"]) == ("", "bash", "opencode")
        assert "made.txt" in prompt["detail"], prompt
        extra = ["--reason", "not on this box"] if answer == "deny" else []
        device.cli(answer, prompt["prompt"], *extra, agent="boss")
    finally:
        runner.join(timeout(180))
    assert "t" in turn, "the OpenCode turn did not end"
    after = _after_tool(stand)
    if answer == "approve":
        assert (home.work / "made.txt").read_text() == "hi\n"
    else:
        assert not (home.work / "made.txt").exists()
        assert after.after_tool_call("not on this box"), after.text[-3000:]
    [answered] = device.call("events", type="permission_answered", all_rooms=True)
    assert answered["data"]["answer"] == ("allow" if answer == "approve" else "deny")
