"""Our OpenCode plugin and Pi extension, run by node against a real daemon with a fake harness."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from harness_kit import PY, Device, Lines, events_of, timeout

from switchboard.harnesses.opencode import plugin_source
from switchboard.harnesses.setup import Setup

DRIVER = Path(__file__).with_name("plugin_driver.mjs")


class Driver:
    """node running plugin_driver.mjs; one JSON line per step."""

    def __init__(self, kind: str, plugin: Path, env: dict[str, str], script: str = "") -> None:
        node = shutil.which("node")
        assert node, "node is needed to run the OpenCode plugin and the Pi extension"
        self.proc = subprocess.Popen(
            [node, str(DRIVER), kind, str(plugin), script],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env=env,
            text=True,
        )
        self.lines = Lines(self.proc.stdout)
        self.seen = 0

    def step(self, name: str) -> dict[str, Any]:
        """The result of the step called ``name`` (the next one the driver reports)."""
        match = self.lines.wait_for(f'"step":"{name}"', 60, self.seen)
        self.seen = self.lines.lines.index(match.string, self.seen) + 1
        return json.loads(match.string)  # type: ignore[no-any-return]

    def do(self, name: str) -> dict[str, Any]:
        """Run one step (go, idle, end, poll, expire) and return its result."""
        assert self.proc.stdin is not None
        self.proc.stdin.write(f"{name}\n")
        self.proc.stdin.flush()
        return self.step("tool" if name == "go" else name)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout(20))


def _plugin(tmp: Path, device: Device, asset: str) -> Path:
    setup = Setup(home=tmp, command=[PY, "-m", "switchboard"], switchboard_home=str(device.home))
    path = tmp / f"{asset}.mjs"
    path.write_text(plugin_source(setup, asset))
    return path


@pytest.fixture
def node_env(device: Device) -> dict[str, str]:
    return {**device.env, "SWITCHBOARD_HARNESS_PID": "4188001"}


def _agent(device: Device) -> str:
    return str(events_of(device, "session_started")[-1]["agent"].split(":")[0])


def _unread(device: Device, name: str) -> list[str]:
    return [m["text"] for m in device.call("inbox", agent=name, peek=True)]


def _failures(device: Device) -> list[str]:
    return [e["data"]["error"] for e in events_of(device, "injection_failed")]


def test_opencode_plugin_appends_to_tool_output_and_prompts_when_idle(
    device: Device, short_dir: Path, node_env: dict[str, str]
) -> None:
    """tool.execute.after gets the message appended; session.idle starts a turn with promptAsync,
    and the message counts as injected once OpenCode shows its text in the session."""
    driver = Driver("opencode", _plugin(short_dir, device, "opencode-plugin.js"), node_env)
    try:
        driver.step("ready")
        name = _agent(device)
        device.call("send", agent="nova", to=[f"@{name}"], text="opencode mid-turn")
        tool = driver.do("go")
        assert tool["output"].startswith("edited a.ts\n\n<switchboard-inbox-")
        assert "opencode mid-turn" in tool["output"]
        assert events_of(device, "file_edited")[-1]["data"]["path"] == "/repo/a.ts"
        device.call("send", agent="nova", to=[f"@{name}"], text="opencode idle")
        idle = driver.do("idle")
        assert idle["prompts"][0]["path"] == {"id": "oc-s1"}
        assert "opencode idle" in idle["prompts"][0]["body"]["parts"][0]["text"]
        assert "injected" in idle["hooks"]
        vias = [e["data"]["via"] for e in events_of(device, "message_injected")]
        assert vias == ["hook:opencode:tool", "hook:opencode:stop"]
    finally:
        driver.close()


def test_opencode_plugin_failed_hand_over_leaves_message_unread_and_polls_on(
    device: Device, short_dir: Path, node_env: dict[str, str]
) -> None:
    """promptAsync throwing, then OpenCode reporting session.error: each time the message stays
    unread and not injected, the failure is an injection_failed event, and the poll offers it
    again (backing off one poll after the second failure) until OpenCode takes it."""
    plugin = _plugin(short_dir, device, "opencode-plugin.js")
    driver = Driver("opencode", plugin, node_env, "throw,reported")
    try:
        driver.step("ready")
        name = _agent(device)
        device.call("send", agent="nova", to=[f"@{name}"], text="are you there?")
        first = driver.do("idle")
        assert [p["how"] for p in first["prompts"]] == ["throw"]
        assert "inject_failed" in first["hooks"]
        assert _unread(device, name) == ["are you there?"]
        assert events_of(device, "message_injected") == []
        assert _failures(device) == ["promptAsync failed: connection refused"]
        second = driver.do("poll")
        assert [p["how"] for p in second["prompts"]] == ["throw", "reported"]
        assert "are you there?" in second["prompts"][1]["body"]["parts"][0]["text"]
        assert _failures(device)[-1] == "no API key for anthropic"
        assert driver.do("poll")["hooks"] == []  # backing off: this poll is skipped
        third = driver.do("poll")
        assert [p["how"] for p in third["prompts"]] == ["throw", "reported", "ok"]
        assert third["hooks"] == ["poll", "injected"]
        assert _unread(device, name) == ["are you there?"]  # injected, not yet read
        [injected] = events_of(device, "message_injected")
        assert injected["data"]["via"] == "hook:opencode:poll"
        assert len(_failures(device)) == 2
    finally:
        driver.close()


def test_pi_extension_appends_to_tool_result_and_sends_follow_up(
    device: Device, short_dir: Path, node_env: dict[str, str]
) -> None:
    """tool_result gets the message as extra content; agent_end sends it with sendUserMessage,
    and it counts as injected once Pi shows it as a user message."""
    driver = Driver("pi", _plugin(short_dir, device, "pi-extension.ts"), node_env)
    try:
        driver.step("ready")
        name = _agent(device)
        device.call("send", agent="nova", to=[f"@{name}"], text="pi mid-turn")
        content = driver.do("go")["result"]["content"]
        assert content[0] == {"type": "text", "text": "ok"}
        assert "pi mid-turn" in content[1]["text"]
        assert events_of(device, "command_run")[-1]["data"]["command"] == "make test"
        device.call("send", agent="nova", to=[f"@{name}"], text="pi after the run")
        end = driver.do("end")
        assert "pi after the run" in end["sent"][0]["text"]
        assert end["sent"][0]["options"] == {"deliverAs": "followUp"}
        assert end["hooks"] == ["agent_end", "injected"]
        vias = [e["data"]["via"] for e in events_of(device, "message_injected")]
        assert vias == ["hook:pi:tool", "hook:pi:stop"]
    finally:
        driver.close()


def test_pi_extension_failed_hand_over_leaves_message_unread_and_polls_on(
    device: Device, short_dir: Path, node_env: dict[str, str]
) -> None:
    """sendUserMessage throwing, then Pi never starting the turn (its own error, no API key):
    the message stays unread and not injected, each failure is reported, the extension is not
    left busy, and a later poll offers the message again until Pi takes it."""
    driver = Driver("pi", _plugin(short_dir, device, "pi-extension.ts"), node_env, "throw,silent")
    try:
        driver.step("ready")
        name = _agent(device)
        device.call("send", agent="nova", to=[f"@{name}"], text="standup in 5")
        end = driver.do("end")
        assert [s["how"] for s in end["sent"]] == ["throw"]
        assert end["hooks"] == ["agent_end", "inject_failed"]
        assert _unread(device, name) == ["standup in 5"]
        assert events_of(device, "message_injected") == []
        assert _failures(device) == ["sendUserMessage failed: No API key found for anthropic"]
        offered = driver.do("poll")
        assert [s["how"] for s in offered["sent"]] == ["throw", "silent"]
        assert "standup in 5" in offered["sent"][1]["text"]
        assert driver.do("poll")["hooks"] == []  # waiting for Pi to take it
        expired = driver.do("expire")
        assert expired["hooks"] == ["inject_failed"]
        assert "started no turn" in _failures(device)[-1]
        assert events_of(device, "message_injected") == []
        assert driver.do("poll")["hooks"] == []  # backing off after the second failure
        last = driver.do("poll")
        assert [s["how"] for s in last["sent"]] == ["throw", "silent", "ok"]
        assert last["hooks"] == ["poll", "injected"]
        [injected] = events_of(device, "message_injected")
        assert injected["data"]["via"] == "hook:pi:poll"
        assert _unread(device, name) == ["standup in 5"]
    finally:
        driver.close()
