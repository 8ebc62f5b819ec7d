"""Reading an agent's transcript here and from another device: two real daemons and a real
relay on loopback, an agent whose hook said where its (Claude Code format) transcript is.

The owner's policy decides: refused by default, allowed after ``transcript allow``, refused
again after ``transcript deny``. The pages travel on the directed channel: no byte of the
transcript is in the relay's store or in either device's log files.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cluster import Device, Relay, group_of, timeout
from coord_cluster import wait_until
from harness_kit import clean_env, run_hook

from switchboard.errors import SwitchboardError

EXCHANGES = 45  # more than two pages (PAGE_EXCHANGES = 20)


@dataclass
class Pair:
    relay: Relay
    lap: Device  # asks
    vps: Device  # runs agent luna
    root: Path
    marker: str
    transcript: Path


def _claude_transcript(path: Path, session: str, marker: str) -> None:
    """A Claude Code session file of EXCHANGES exchanges (the entry shapes of 2.1.332)."""
    lines = []
    for n in range(1, EXCHANGES + 1):
        ts = f"2026-12-06T10:{n // 60:02d}:{n % 60:02d}.000Z"
        user = {"type": "user", "sessionId": session, "timestamp": ts, "uuid": f"u{n}",
                "message": {"role": "user", "content": f"{marker} prompt {n}"}}  # fmt: skip
        content = [{"type": "text", "text": f"{marker} reply {n}"}]
        message = {"id": f"msg_{n}", "role": "assistant", "content": content}
        reply = {"type": "assistant", "sessionId": session, "timestamp": ts, "uuid": f"a{n}",
                 "message": message}  # fmt: skip
        lines += [json.dumps(user), json.dumps(reply)]
    path.parent.mkdir(parents=True)
    path.write_text("\n".join(lines) + "\n")


@pytest.fixture(scope="module")
def pair() -> Iterator[Pair]:
    """Two devices in a group; on ``vps``, agent luna's Claude Code session with a
    transcript."""
    root = Path(tempfile.mkdtemp(prefix="sbx-", dir="/tmp"))
    marker = f"secret-{uuid.uuid4().hex}"
    session = str(uuid.uuid4())
    transcript = root / "claudehome" / ".claude" / "projects" / "-work" / f"{session}.jsonl"
    _claude_transcript(transcript, session, marker)
    try:
        with group_of(root, "lap", "vps") as (relay, (lap, vps)):
            for dev in (lap, vps):
                dev.call("link.sync", timeout=timeout(30))
            for dev in (lap, vps):
                wait_until(lambda d=dev: d.call("status")["clock"], 30, f"{dev.name} knows a peer")
            env = {**clean_env(), "SWITCHBOARD_HOME": str(vps.home), "SWITCHBOARD_AGENT": "luna"}
            payload = {"session_id": session, "transcript_path": str(transcript), "cwd": "/work",
                       "hook_event_name": "SessionStart", "source": "startup"}  # fmt: skip
            run = run_hook(env, "claude", "SessionStart", payload)
            assert run.code == 0, run.stderr
            short = vps.short
            wait_until(lambda: any(a["address"] == f"luna:{short}" for a in lap.call("agents")),
                       30, "lap knows luna")  # fmt: skip
            yield Pair(relay, lap, vps, root, marker, transcript)
    finally:
        shutil.rmtree(root, ignore_errors=True)


def test_remote_local_read_numbers_exchanges(pair: Pair) -> None:
    """The agent's own device reads its transcript: the last N exchanges, numbered."""
    read = pair.vps.call("transcript.read", target="luna", last=3)
    assert read["harness"] == "claude" and read["total"] == EXCHANGES
    assert [e["n"] for e in read["exchanges"]] == [43, 44, 45]
    assert read["exchanges"][-1]["prompt"] == f"{pair.marker} prompt 45"
    assert read["source"] == str(pair.transcript)
    back = pair.vps.call("transcript.read", target="@luna", last=2, before=10)
    assert [e["n"] for e in back["exchanges"]] == [8, 9]


def test_remote_grown_transcript_is_read_again(pair: Pair) -> None:
    """A transcript the harness appended to since the last read shows the new exchange (and
    the numbers of the old ones stay)."""
    before = pair.vps.call("transcript.read", target="luna", last=1)
    grown = pair.root / "grown.jsonl"
    shutil.copyfile(pair.transcript, grown)
    entry = {"type": "user", "timestamp": "2026-12-06T11:00:00.000Z",
             "message": {"role": "user", "content": f"{pair.marker} prompt extra"}}  # fmt: skip
    with pair.transcript.open("a") as file:
        file.write(json.dumps(entry) + "\n")
    try:
        after = pair.vps.call("transcript.read", target="luna", last=2)
        assert after["total"] == before["total"] + 1
        assert [e["n"] for e in after["exchanges"]] == [EXCHANGES, EXCHANGES + 1]
        assert after["exchanges"][-1]["prompt"] == f"{pair.marker} prompt extra"
    finally:
        shutil.copyfile(grown, pair.transcript)
        grown.unlink()


def test_remote_cli_errors_are_one_clear_line(pair: Pair) -> None:
    """Unknown agents, a missing pattern and a non-agent target fail with exit status 1 and
    one line naming the problem."""
    cases = {
        ("transcript", "nobody"): "no agent nobody",
        ("transcript", "search"): "transcript search needs PATTERN",
        ("transcript", "#room"): "is not an agent",
        ("transcript", "allow", "ZZZZ"): "unknown device ZZZZ",
    }
    for args, message in cases.items():
        done = pair.vps.cli(*args, check=False)
        assert done.returncode == 1, (args, done.stderr)
        assert message in done.stderr and len(done.stderr.strip().splitlines()) == 1, done.stderr


def test_remote_read_refused_by_default(pair: Pair) -> None:
    """Another device may not read the transcript until the owner's policy says so."""
    with pytest.raises(SwitchboardError, match="may not read transcripts of luna"):
        pair.lap.call("transcript.read", target=f"luna:{pair.vps.short}")
    with pytest.raises(SwitchboardError, match="may not read transcripts of luna"):
        pair.lap.call("transcript.search", target=f"luna:{pair.vps.short}", pattern="reply")


def test_remote_read_allowed_by_policy_then_denied(pair: Pair) -> None:
    """After ``transcript allow LAP`` on the owner, the asking device gets every page of the
    transcript; after ``transcript deny LAP`` it is refused again."""
    allowed = pair.vps.cli_json("transcript", "allow", pair.lap.short, "--agent", "lu*")
    assert allowed["transcripts"] == ["lu*"]
    target = f"luna:{pair.vps.short}"
    read = pair.lap.call("transcript.read", target=target, last=0, full=True)
    assert read["agent"] == target and read["total"] == EXCHANGES
    assert [e["n"] for e in read["exchanges"]] == list(range(1, EXCHANGES + 1))
    assert read["exchanges"][0]["messages"][1]["text"] == f"{pair.marker} reply 1"
    assert "source" not in read or not read["source"]  # the owner's paths stay there
    hits = pair.lap.call("transcript.search", target=target, pattern="REPLY 4")
    assert {h["n"] for h in hits} == {4, *range(40, 46)}
    shown = pair.lap.cli("transcript", target, "--last", "2").stdout
    assert "luna#45" in shown and f"{pair.marker} prompt 45" in shown
    pair.vps.cli("transcript", "deny", pair.lap.short)
    with pytest.raises(SwitchboardError, match="may not read transcripts"):
        pair.lap.call("transcript.read", target=target)


def test_remote_mcp_read_transcript_tool(pair: Pair) -> None:
    """An agent reads another device's agent through the MCP tool read_transcript: refused
    while the policy says no, then the recent exchanges, framed as data."""
    from mcp_kit import call, mcp_session, run  # noqa: PLC0415

    env = {**clean_env(), "SWITCHBOARD_HOME": str(pair.lap.home), "SWITCHBOARD_AGENT": "boss"}
    target = f"luna:{pair.vps.short}"

    async def body() -> tuple[Any, Any, Any]:
        async with mcp_session(env) as session:
            refused = await call(session, "read_transcript", agent=target)
            pair.vps.cli("transcript", "allow", pair.lap.short)
            try:
                read = await call(session, "read_transcript", agent=target, last=2)
                found = await call(session, "read_transcript", agent=target, search="prompt 7")
            finally:
                pair.vps.cli("transcript", "deny", pair.lap.short)
            return refused, read, found

    refused, read, found = run(body)
    assert refused.is_error and "may not read transcripts of luna" in refused.text
    assert not read.is_error, read.text
    assert "never instructions" in read.value["note"]
    assert [e["n"] for e in read.value["exchanges"]] == [44, 45]
    assert [h["n"] for h in found.value["hits"]] == [7]


def test_remote_pages_never_reach_a_log_or_the_relay_store(pair: Pair) -> None:
    """After the reads above, the transcript's text is in no file of the relay's store and of
    either device's home (log, database, WAL), nor in either daemon's log output."""
    for path in [*pair.relay.data.rglob("*"), *pair.lap.home.rglob("*"),
                 *pair.vps.home.rglob("*")]:  # fmt: skip
        if path.is_file():
            assert pair.marker.encode() not in path.read_bytes(), path
    for dev in (pair.lap, pair.vps):
        assert pair.marker not in dev.log_text
