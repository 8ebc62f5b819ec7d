"""The real harness CLIs run whole turns against a model stand-in, with Switchboard installed.

Per harness (the ``live`` fixture, once per harness): the user's own config, ``switchboard
install``, a first turn during which the script sends two messages, then ``switchboard
uninstall`` and a second turn. Everything is asserted from what the stand-in received.
"""

from __future__ import annotations

import json
import tomllib
from pathlib import Path
from typing import Any

from conftest import Live
from drivers import PROMPT
from standin import FINAL

from switchboard.harnesses.jsonc import parse


def test_live_message_sent_during_tool_call_reaches_the_next_request(live: Live) -> None:
    """A message sent while the tool call runs is in the request that carries its result."""
    turn, script = live.turn, live.script
    assert not script.failures, script.failures
    conversation = turn.conversation
    assert [r.step for r in conversation[:2]] == ["tool", "final"], turn.describe()
    assert script.mid not in conversation[0].text
    assert conversation[1].after_tool_call(script.mid), turn.describe()
    assert script.injected("mid")["complete"]


def test_live_message_sent_before_the_end_keeps_the_agent_going(live: Live) -> None:
    """A message sent before the final answer reaches the model in a further request."""
    turn, script = live.turn, live.script
    conversation = turn.conversation
    assert script.end not in conversation[1].text, turn.describe()
    assert any(script.end in r.text for r in conversation[2:]), turn.describe()
    assert turn.code == 0, turn.describe()
    assert FINAL in turn.stdout, turn.describe()
    assert script.injected("end")["complete"]
    assert live.driver.user_hook_runs(live.home) >= 1, "the user's own hook did not run"


def test_live_transcript_of_the_turn_is_read_from_the_harness_files(live: Live) -> None:
    """The agent's transcript, read by its daemon from the files the real harness wrote for
    the turn just run (found where the hooks said), holds the prompt, the shell call with its
    output and the final answer, numbered by exchange."""
    read = live.device.call("transcript.read", target=live.script.agent, last=0, full=True)
    shown = json.dumps(read, indent=1)[-6000:]
    assert read["harness"] == live.driver.name, shown
    exchanges = read["exchanges"]
    assert [e["n"] for e in exchanges] == list(range(1, read["total"] + 1)), shown
    assert exchanges[0]["prompt"] == PROMPT, shown
    calls = [t for e in exchanges for m in e["messages"] for t in m.get("tools", [])]
    assert any(t["input"] == "echo hi" and "hi" in t.get("output", "") for t in calls), shown
    texts = [m.get("text", "") for e in exchanges for m in e["messages"]]
    assert any(FINAL in text for text in texts), shown


def test_live_uninstall_leaves_the_harness_and_the_users_entries_working(live: Live) -> None:
    """After uninstall the user's files hold their entries and none of ours, and a second
    turn runs (the user's own hook included) without any trace of Switchboard."""
    driver, home = live.driver, live.home
    runs = driver.user_hook_runs(home)
    home.switchboard("uninstall", driver.name, env=driver.env(home, live.standin.url))
    rewritten = {home.path(name) for name in driver.rewrites}
    for path, before in live.user_files.items():
        assert path.exists(), f"uninstall removed the user's {path}"
        _assert_kept(path, before, path.read_bytes(), exact=path not in rewritten)
    for path in live.installed:
        if path.exists():
            assert "switchboard" not in path.read_text().lower(), f"our entries left in {path}"
    live.standin.clear()
    turn = live.driver.turn(live.home, live.standin)
    assert turn.code == 0, turn.describe()
    assert [r.step for r in turn.conversation] == ["tool", "final"], turn.describe()
    assert not any("switchboard" in r.text.lower() for r in turn.requests), turn.describe()
    assert FINAL in turn.stdout, turn.describe()
    assert live.driver.user_hook_runs(live.home) > runs, "the user's own hook stopped running"
    print(f"\n{live.driver.name}: turn after uninstall: {turn.seconds:.1f} s")


def _assert_kept(path: Path, before: bytes, after: bytes, *, exact: bool) -> None:
    """The user's entries (and comment lines) of ``before`` are all in ``after``; with
    ``exact`` (a file only the user and we write), nothing else is either."""
    if before == after:
        return
    old, new = before.decode(), after.decode()
    for line in old.splitlines():
        if line.lstrip().startswith(("//", "#")):
            assert line in new, f"{path}: the user's comment {line!r} is gone"
    value, wanted = _value(path, new), _value(path, old)
    if exact:
        assert value == wanted, f"{path}: {old!r} became {new!r}"
    assert _contains(value, wanted), f"{path}: {old!r} became {new!r}"


def _value(path: Path, text: str) -> Any:
    if path.suffix == ".toml":
        return tomllib.loads(text)
    if path.suffix in (".json", ".jsonc"):
        return parse(text).value
    return text


def _contains(value: Any, wanted: Any) -> bool:
    """Every key of ``wanted`` is in ``value`` with the same value (dicts compared by key)."""
    if isinstance(wanted, dict):
        return isinstance(value, dict) and all(
            key in value and _contains(value[key], item) for key, item in wanted.items()
        )
    return bool(value == wanted)
