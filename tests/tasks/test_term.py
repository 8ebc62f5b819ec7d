"""``switchboard term``: an agent's tmux pane read and typed into, here and from another device.

Real tmux servers on private sockets, real daemons (and a relay or Mosquitto for two devices),
the fake agent's ``read-lines`` in the pane: what is typed shows up on its screen as
``typed: ...`` because the program read it from its terminal.
"""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cluster import Device
from conftest import FAKE, spawn, wait_task
from coord_cluster import wait_until

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "harness"))

from mcp_kit import call, mcp_session, run

from switchboard.errors import SwitchboardError
from switchboard.tasks import policy, policyfile


class Tmux:
    """A tmux server of the test's own (``-S`` socket), its panes started with ``env``."""

    def __init__(self, socket: Path) -> None:
        self.socket = socket

    def run(self, *args: str, env: dict[str, str] | None = None) -> str:
        done = subprocess.run(["tmux", "-S", str(self.socket), *args], env=env,
                              capture_output=True, text=True, check=True, timeout=30)  # fmt: skip
        return done.stdout

    def start(self, script: str, env: dict[str, str]) -> str:
        """A new session running ``sh -c script``; its pane id."""
        clean = {k: v for k, v in env.items() if k not in ("TMUX", "TMUX_PANE")}
        return self.run("new-session", "-d", "-P", "-F", "#{pane_id}", "-x", "100", "-y", "20",
                        "--", "sh", "-c", script, env=clean).strip()  # fmt: skip

    def kill(self) -> None:
        """Stop the server and wait until its process is gone (then its socket is free)."""
        found = subprocess.run(["tmux", "-S", str(self.socket), "display-message", "-p",
                                "#{pid}"], capture_output=True, text=True, check=False,
                               timeout=30)  # fmt: skip
        subprocess.run(["tmux", "-S", str(self.socket), "kill-server"], capture_output=True,
                       check=False, timeout=30)  # fmt: skip
        pid = found.stdout.strip()
        if found.returncode == 0 and pid.isdigit():
            wait_until(lambda: not Path(f"/proc/{pid}").exists(), 30, "the tmux server ended")


@pytest.fixture
def tmux(short_home: Path) -> Iterator[Tmux]:
    server = Tmux(short_home / "tmux.sock")
    yield server
    server.kill()


def hooked_agent(tmux: Tmux, device: Device, name: str) -> str:
    """A pane whose program first runs Claude Code's SessionStart hook as ``name`` (so the
    daemon learns the pane from tmux's own TMUX and TMUX_PANE), then reads typed lines."""
    payload = json.dumps({"session_id": f"s-{name}", "source": "startup", "cwd": "/tmp"})
    hook = [sys.executable, "-m", "switchboard", "hook", "claude", "SessionStart"]
    reader = [sys.executable, str(FAKE), "cmd", "read-lines"]
    script = (f"printf %s {shlex.quote(payload)} | {shlex.join(hook)} >/dev/null; "
              f"exec {shlex.join(reader)}")  # fmt: skip
    return tmux.start(script, {**device.env, "SWITCHBOARD_AGENT": name})


def screen(device: Device, target: str) -> str:
    """The agent's screen as ``device`` reads it (``""`` while it cannot)."""
    try:
        found = device.call("term.read", agent="boss", target=target)
    except SwitchboardError:
        return ""
    return "\n".join(found["lines"])


def typed_events(device: Device) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = device.call("events", type="terminal_typed", all_rooms=True)
    return found


def test_term_spawned_terminal_task_read_and_typed(
    device: Device, work: Path, short_home: Path
) -> None:
    """A ``spawn --terminal`` task: ``term`` prints its screen, ``--type --enter`` reaches the
    program (it echoes the line it read), and the typing is an event naming text and typist."""
    socket_dir = short_home / "tmux"
    socket_dir.mkdir()
    device.kill()
    device.env["TMUX_TMPDIR"] = str(socket_dir)  # the daemon's tmux server: the test's own
    device.start()
    try:
        answer = spawn(device, "say ready\nread-lines", harness="claude", terminal=True,
                       name="luna")  # fmt: skip
        assert answer["state"] == "running", answer
        wait_until(lambda: "reading" in screen(device, "luna"), 30, "the task reads lines")
        printed = device.cli("term", "luna", agent="boss").stdout
        assert "ready" in printed and "reading" in printed
        shown = device.cli_json("term", "luna", agent="boss")
        assert shown["agent"].startswith("luna:") and shown["pane"].startswith("%")
        assert shown["height"] == len(shown["lines"]) and shown["width"] > 0
        assert 0 <= shown["cursor"]["y"] < shown["height"] and shown["scrollback"] == 0
        done = device.cli("term", "luna", "--type", "hello there", "--enter", agent="boss")
        assert "typed 11 characters + Enter into luna:" in done.stdout
        wait_until(lambda: "typed: hello there" in screen(device, "luna"), 30, "the line arrived")
        [event] = typed_events(device)
        assert event["data"]["target"] == "luna" and event["data"]["text"] == "hello there"
        assert event["data"]["keys"] == ["Enter"] and event["data"]["length"] == 11
        assert event["data"]["by"].startswith("boss:") and event["agent"] == ""
        device.cli("term", "luna", "--type", "quit", "--enter", agent="boss")
        assert wait_task(device, answer["id"])["state"] == "completed"
        gone = device.cli("term", "luna", check=False)
        assert gone.returncode == 1 and "no tmux pane" in gone.stderr
    finally:
        subprocess.run(["tmux", "kill-server"], env={**device.env}, check=False,
                       capture_output=True)  # fmt: skip


def test_term_hook_recorded_pane_and_refusals(device: Device, tmux: Tmux) -> None:
    """An agent whose hook ran inside tmux is found by its pane; a secret typing keeps its
    text out of the log; control characters, line breaks and unknown keys are refused; a
    pane id that a new tmux server hands out again is not taken for the agent's."""
    hooked_agent(tmux, device, "nova")
    wait_until(lambda: "reading" in screen(device, "nova"), 30, "the pane is known")
    # --type - reads the text from stdin: a secret is on no command line either.
    done = subprocess.run(
        [sys.executable, "-m", "switchboard", "term", "nova", "--type", "-", "--secret",
         "--enter"], env={**device.env, "SWITCHBOARD_AGENT": "boss"}, input="s3cret\n",
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 0 and "typed 6 characters + Enter" in done.stdout, done.stderr
    wait_until(lambda: "typed: s3cret" in screen(device, "nova"), 30, "the secret arrived")
    [event] = typed_events(device)
    assert event["data"]["text"] == "" and event["data"]["secret"] is True
    assert event["data"]["length"] == 6
    assert "s3cret" not in json.dumps(device.call("events", all_rooms=True))
    scroll = device.cli_json("term", "nova", "--lines", "50", agent="boss")
    assert scroll["scrollback"] == len(scroll["lines"]) - scroll["height"]
    for args, words in (
        (["--type", "a\x1b[2J"], "control character"),
        (["--type", "two\nlines"], "line break"),
        (["--key", "F13"], "unknown key"),
        (["--type", "x" * 5000], "exceed the limit"),
    ):
        refused = device.cli("term", "nova", *args, agent="boss", check=False)
        assert refused.returncode == 1 and words in refused.stderr, (args, refused.stderr)
    assert len(typed_events(device)) == 1
    unknown = device.cli("term", "nobody", check=False)
    assert unknown.returncode == 1 and "unknown agent" in unknown.stderr
    tmux.kill()  # a new server: its first pane has the same id, another process
    tmux.start("exec sleep 600", device.env)
    stale = device.cli("term", "nova", check=False)
    assert stale.returncode == 1 and "no tmux pane" in stale.stderr


def test_term_mcp_read_terminal(device: Device, tmux: Tmux) -> None:
    """The read_terminal tool shows another agent's screen to an agent; an unknown agent is
    a tool error."""
    hooked_agent(tmux, device, "nova")
    wait_until(lambda: "reading" in screen(device, "nova"), 30, "the pane is known")

    async def body() -> None:
        async with mcp_session({**device.env, "SWITCHBOARD_AGENT": "lead"}) as s:
            shown = await call(s, "read_terminal", agent="nova", lines=5)
            assert not shown.is_error, shown.text
            assert "reading" in shown.value["lines"] and shown.value["height"] == 20
            missing = await call(s, "read_terminal", agent="nobody")
            assert missing.is_error and "unknown agent" in missing.text

    run(body, 120)


def test_term_remote_refused_by_default_allowed_by_policy(
    pair: tuple[Device, Device, Path], tmux: Tmux
) -> None:
    """From another device: reading and typing are refused by default; ``spawn allow DEV
    --term-type AGENT`` on the agent's device lets that device read and type (and spawn
    nothing); the typing's event, written there, replicates with the typist's device."""
    lap, vps, _ = pair
    hooked_agent(tmux, vps, "luna")
    wait_until(lambda: "reading" in screen(vps, "luna"), 30, "vps knows the pane")
    target = f"luna:{vps.short}"
    wait_until(lambda: any(a["address"] == target for a in lap.call("agents", all=True)), 30,
               "lap knows luna")  # fmt: skip
    read = lap.cli("term", target, check=False, agent="boss")
    assert read.returncode == 1 and "may not read the terminal of luna" in read.stderr
    typed = lap.cli("term", target, "--type", "rm -rf /", "--enter", check=False, agent="boss")
    assert typed.returncode == 1 and "may not type into the terminal of luna" in typed.stderr
    assert "rm -rf" not in screen(vps, "luna") and typed_events(vps) == []

    vps.cli("spawn", "allow", lap.short, "--term-type", "luna")
    shown = vps.cli_json("spawn", "policy")["devices"]
    assert [(d["term_type"], d["harnesses"], d["dirs"]) for d in shown] == [(["luna"], [], [])]
    assert "reading" in "\n".join(lap.cli_json("term", target, agent="boss")["lines"])
    lap.cli("term", target, "--type", "hi from lap", "--enter", agent="boss")
    wait_until(lambda: "typed: hi from lap" in screen(vps, "luna"), 30, "lap's line arrived")
    [event] = wait_until(lambda: typed_events(lap), 30, "the event reached lap")
    assert event["data"]["by"] == f"boss:{lap.call('status')['device']['id']}"
    assert event["device"] == vps.short and event["data"]["text"] == "hi from lap"
    refused = lap.call("spawn", agent="boss", on=vps.short, harness="claude", text="say x")
    assert refused["state"] == "refused"


def test_term_policy_rules() -> None:
    """``may_term``: the local user always; another device reads its own tasks, reads what
    ``term_read`` or ``term_type`` names, types only what ``term_type`` names."""
    grant = {"harnesses": [], "dirs": [], "term_read": ["w-*"], "term_type": ["luna"]}
    rules = policy.parse({"devices": {"lap": grant}})

    def may(device: str, agent: str, *, typing: bool, by: str | None = None) -> bool:
        return policy.may_term(rules, device, local=device == "me", agent=agent,
                               requested_by=by, typing=typing)  # fmt: skip

    assert may("me", "x", typing=True)
    assert may("lap", "w-1", typing=False) and not may("lap", "w-1", typing=True)
    assert may("lap", "luna", typing=True) and may("lap", "luna", typing=False)
    assert not may("lap", "nova", typing=False)
    assert may("lap", "nova", typing=False, by="lap") and not may("lap", "nova", typing=True,
                                                                  by="lap")  # fmt: skip
    assert not may("other", "luna", typing=False)
    assert not may("other", "t", typing=False, by="other")  # no grant here at all
    with pytest.raises(SwitchboardError, match="term_read"):
        policy.parse({"devices": {"lap": {"term_read": "luna"}}})
    text = policyfile.allow("", "lap", local=False, term_read=["w-*"])
    assert policy.parse(tomllib.loads(text)).devices["lap"].harnesses == ()
    with pytest.raises(SwitchboardError, match="--dir"):
        policyfile.allow("", "lap", local=False)
