"""``switchboard doctor``'s checks: one table, each row a function that returns its findings.

Each check looks at one thing as it is now and says ``ok``, ``warn`` or ``fail``, with what
it saw and, for anything not ok, the one step that fixes it. Nothing here changes anything:
the daemon is not started (a stopped daemon is a finding), hooks are run with the probe
payload that records nothing (harnesses/hook.py), Codex is only asked through its
app-server (harnesses/asks.py).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import stat
import subprocess
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from switchboard import __version__
from switchboard.config import Settings
from switchboard.daemon import process
from switchboard.daemon.client import Client
from switchboard.errors import SwitchboardError
from switchboard.harnesses.entries import Entry
from switchboard.harnesses.setup import Setup

# A peer clock off by more than this is worth knowing (receipt and presence times read
# oddly); by more than the fail limit, time-based rules misfire (lease expiry, the order of
# status changes, "last seen" against the offline timeout).
CLOCK_WARN: Final = 2.0
CLOCK_FAIL: Final = 30.0
# Events not yet at the relay while connected: a backlog this long is worth a look.
LAG_WARN: Final = 1000
# How long a hook command may take to answer the probe: our hooks' own timeout in every
# harness entry we write (claude.HOOK_TIMEOUT and friends).
HOOK_TIMEOUT: Final = 10.0
# How long the daemon may take to answer ``status``.
DAEMON_TIMEOUT: Final = 5.0
PROBE: Final = b'{"switchboard_probe": true}\n'


@dataclass(frozen=True)
class Check:
    """One finding: ``status`` is ``ok``, ``warn`` or ``fail``; ``fix`` is the step to take."""

    name: str
    status: str
    detail: str
    fix: str = ""

    def as_json(self) -> dict[str, str]:
        """The ``--json`` form."""
        return {"name": self.name, "status": self.status, "detail": self.detail, "fix": self.fix}


@dataclass
class Context:
    """What the checks share: where to look, and what earlier checks learned."""

    settings: Settings
    env: Mapping[str, str]
    cwd: Path
    home: Path  # the user's home (harness configs)
    status: dict[str, Any] | None = None  # the daemon's ``status``, once it answered
    entries: dict[str, list[Entry]] = field(default_factory=dict)  # per level

    def setups(self) -> dict[str, Setup]:
        """The levels to look at: user, and the project in the current directory."""
        path = self.env.get("PATH", "")
        found = {"user": Setup(home=self.home, path=path)}
        if self.cwd != self.home and not self.home.is_relative_to(self.cwd):
            found["project"] = Setup(home=self.home, project=self.cwd, path=path)
        return found


# -- the daemon -----------------------------------------------------------------------------------


def check_daemon(ctx: Context) -> list[Check]:
    """The daemon runs for this home and answers."""
    running = process.read_status(ctx.settings)
    if not running["running"]:
        detail = f"no daemon runs for {ctx.settings.home}"
        return [Check("daemon", "fail", detail, "switchboard daemon start")]
    restart = "switchboard daemon stop && switchboard daemon start"
    try:
        with Client.open(ctx.settings.socket_path, timeout=DAEMON_TIMEOUT) as client:
            ctx.status = client.call("status", {}, timeout=DAEMON_TIMEOUT)
    except SwitchboardError as exc:
        detail = f"the daemon (pid {running['pid']}) does not answer: {exc}"
        return [Check("daemon", "fail", detail, restart)]
    daemon = (ctx.status or {}).get("daemon", {})
    version = daemon.get("version")
    detail = f"running (pid {daemon.get('pid')}, version {version}) and answering"
    if version and version != __version__:
        detail += f"; this switchboard is version {__version__}"
        return [Check("daemon", "warn", detail, restart)]
    return [Check("daemon", "ok", detail)]


def check_socket(ctx: Context) -> list[Check]:
    """The local API socket is the user's, reachable by nobody else."""
    path = ctx.settings.socket_path
    try:
        info = path.lstat()
    except FileNotFoundError:
        return [Check("socket", "warn", f"no socket at {path} (the daemon is not running)")]
    mode = stat.S_IMODE(info.st_mode)
    if not stat.S_ISSOCK(info.st_mode):
        detail = f"{path} is not a socket"
        return [Check("socket", "fail", detail, f"rm {path} && switchboard daemon start")]
    if info.st_uid != os.getuid():
        detail = f"{path} belongs to uid {info.st_uid}, not you (uid {os.getuid()})"
        return [Check("socket", "fail", detail, f"rm {path} && switchboard daemon start")]
    if mode & 0o077:
        detail = f"{path} is mode {mode:04o}: other users can reach your daemon"
        return [Check("socket", "fail", detail, f"chmod 600 {path}")]
    home_mode = stat.S_IMODE(ctx.settings.home.stat().st_mode)
    if home_mode & 0o077:
        detail = f"{path} is owner-only, but its folder is mode {home_mode:04o}"
        return [Check("socket", "warn", detail, f"chmod 700 {ctx.settings.home}")]
    return [Check("socket", "ok", f"{path} is owner-only ({mode:04o})")]


# -- links and clocks ------------------------------------------------------------------------------


def check_links(ctx: Context) -> list[Check]:
    """Each group's link: connected, and its relay not far behind."""
    if ctx.status is None:
        return []
    groups = ctx.status.get("groups", [])
    if not groups:
        return [Check("links", "ok", "no group: this device works on its own")]
    return [_link(group) for group in groups]


def _link(group: dict[str, Any]) -> Check:
    link = group.get("link", {})
    name, url, state, lag = group.get("name"), link.get("url"), link.get("state"), link.get("lag")
    label = f"link {name}"
    waiting = f"{lag} events not yet at the relay" if lag else "nothing waiting"
    if state == "connected":
        if link.get("tampered"):
            detail = f"{link['tampered']} envelopes from {url} failed authentication"
            if link.get("forged"):
                detail += f" ({link['forged']} forged: not signed by their origin device)"
            return Check(label, "fail", detail, f"switchboard link status --group {name}")
        if lag is not None and lag > LAG_WARN:
            detail = f"connected to {url}; {waiting}"
            return Check(label, "warn", detail, f"switchboard link status --group {name}")
        return Check(label, "ok", f"connected to {url}; {waiting}")
    if state == "off" or not link.get("enabled", True):
        detail = f"replication is paused ({waiting})"
        return Check(label, "warn", detail, f"switchboard link on --group {name}")
    error = f": {link['last_error']}" if link.get("last_error") else ""
    detail = f"{state} to {url}{error}; {waiting}"
    fix = f"make sure the relay at {url} runs and this machine reaches it"
    return Check(label, "fail", detail, fix)


def check_clocks(ctx: Context) -> list[Check]:
    """Each peer's clock, from the bounds the daemon keeps (daemon/clocks.py)."""
    if ctx.status is None:
        return []
    return [_clock(peer) for peer in ctx.status.get("clock", [])]


def _clock(peer: dict[str, Any]) -> Check:
    label = f"clock {peer.get('name') or peer.get('device')}"
    low, high = peer.get("skew_min"), peer.get("skew_max")
    if low is None and high is None:
        return Check(label, "ok", "not measured yet (no recent event from this device)")
    ahead = low if low is not None and low > 0 else 0.0
    behind = -high if high is not None and high < 0 else 0.0
    off = max(ahead, behind)
    if off > CLOCK_WARN:
        way = "ahead of" if ahead else "behind"
        detail = f"{peer.get('device')}'s clock is at least {off:.1f} s {way} this one"
        fix = "turn on time sync on the device whose clock is wrong (timedatectl set-ntp true)"
        return Check(label, "fail" if off > CLOCK_FAIL else "warn", detail, fix)
    if low is not None and high is not None:
        return Check(label, "ok", f"within {max(-low, high, 0.0):.2f} s of this one")
    return Check(label, "ok", "no sign of skew (no round trip measured yet)")


# -- harness entries and hooks ---------------------------------------------------------------------


def _entries(ctx: Context) -> dict[str, list[Entry]]:
    if not ctx.entries:
        from switchboard.harnesses import entries  # noqa: PLC0415 - tomlkit and the installers

        ctx.entries = {level: entries.installed(s) for level, s in ctx.setups().items()}
    return ctx.entries


def _reinstall(entry: Entry) -> str:
    flag = " --project" if entry.level == "project" else ""
    return f"switchboard install {entry.harness}{flag}"


def _runs(argv: tuple[str, ...], env: Mapping[str, str]) -> bool:
    if not argv:
        return False
    program = argv[0]
    if os.sep in program:
        return os.path.isfile(program) and os.access(program, os.X_OK)
    return shutil.which(program, path=env.get("PATH") or None) is not None


def _count(n: int, one: str, many: str) -> str:
    return f"{n} {one if n == 1 else many}"


def _same_home(path: str, home: Path) -> bool:
    return os.path.realpath(path) == os.path.realpath(home)


def _by_harness(ctx: Context) -> dict[tuple[str, str], list[Entry]]:
    """Our entries per (harness, level), in the order the installers list their files."""
    groups: dict[tuple[str, str], list[Entry]] = {}
    for found in _entries(ctx).values():
        for entry in found:
            groups.setdefault((entry.harness, entry.level), []).append(entry)
    return groups


def _files(entries: list[Entry]) -> str:
    return ", ".join(dict.fromkeys(str(e.path) for e in entries))


def check_entries(ctx: Context) -> list[Check]:
    """Every entry of ours runs an existing switchboard, pinned (if at all) to this home."""
    out = []
    for (harness, level), group in _by_harness(ctx).items():
        label = f"{harness} {level} entries"
        broken = [e for e in group if not _runs(e.argv, ctx.env)]
        if broken:
            program = broken[0].argv[0] if broken[0].argv else "(no command)"
            detail = f"{len(broken)} of {_count(len(group), 'entry', 'entries')} "
            detail += f"({_files(broken)}) run {program}, which does not exist or is not "
            detail += "executable"
            out.append(Check(label, "fail", detail, _reinstall(group[0])))
            continue
        other = sorted(
            {e.home for e in group if e.home and not _same_home(e.home, ctx.settings.home)}
        )
        if other:
            detail = f"entries use the home {other[0]}, not {ctx.settings.home} ({_files(group)})"
            out.append(Check(label, "warn", detail, _reinstall(group[0])))
            continue
        detail = f"{_count(len(group), 'entry', 'entries')} running {group[0].argv[0]} "
        detail += f"({_files(group)})"
        out.append(Check(label, "ok", detail))
    return out


def check_hooks(ctx: Context) -> list[Check]:
    """One hook command per file answers the probe, in time, as Switchboard."""
    runs = []
    for (harness, level), group in _by_harness(ctx).items():
        hooks = [e for e in group if e.command and _runs(e.argv, ctx.env)]
        first = list({e.path: e for e in reversed(hooks)}.values())  # one per file
        if first:
            runs.append((f"{harness} {level} hooks", [(e, _start(e, ctx)) for e in first]))
    out = []
    for label, started in runs:
        answers = [_answer(label, entry, *run, ctx) for entry, run in started]
        worst = [a for a in answers if a.status == "fail"] or [
            a for a in answers if a.status == "warn"
        ]
        out.append(worst[0] if worst else answers[0])
    return out


def _start(entry: Entry, ctx: Context) -> tuple[subprocess.Popen[bytes] | OSError, float]:
    started = time.monotonic()
    try:
        proc = subprocess.Popen(
            ["/bin/sh", "-c", entry.command],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=dict(ctx.env),
            cwd=ctx.cwd,
            start_new_session=True,
        )
    except OSError as exc:
        return exc, started
    assert proc.stdin is not None
    # A few bytes: the pipe takes them at once, and the hooks all answer side by side. If the
    # hook exited already, its exit status says why.
    with contextlib.suppress(OSError):
        proc.stdin.write(PROBE)
    with contextlib.suppress(OSError):
        proc.stdin.close()
    proc.stdin = None  # written and closed: communicate() only reads
    return proc, started


def _answer(
    label: str,
    entry: Entry,
    proc: subprocess.Popen[bytes] | OSError,
    started: float,
    ctx: Context,
) -> Check:
    fix = _reinstall(entry)
    if isinstance(proc, OSError):
        return Check(label, "fail", f"cannot run the hook command: {proc.strerror}", fix)
    try:
        out, err = proc.communicate(timeout=max(started + HOOK_TIMEOUT - time.monotonic(), 0.1))
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)  # the shell and the hook it started
        proc.communicate()
        detail = f"`{entry.command}` did not answer within {HOOK_TIMEOUT:g} s"
        return Check(label, "fail", detail, fix)
    took = (time.monotonic() - started) * 1000
    last = (err.decode(errors="replace").strip().splitlines() or [""])[-1][:200]
    try:
        answer = json.loads(out).get("switchboard_probe")
    except (ValueError, AttributeError):
        answer = None
    if proc.returncode != 0 or not isinstance(answer, dict):
        how = f"exited {proc.returncode}" if proc.returncode else "answered no probe result"
        detail = f"`{entry.command}` {how}" + (f": {last}" if last else "")
        return Check(label, "fail", detail, fix)
    home = str(answer.get("home", ""))
    if not _same_home(home, ctx.settings.home):
        detail = f"the hooks talk to the home {home}, not {ctx.settings.home}"
        return Check(label, "warn", detail, fix)
    version = answer.get("version")
    detail = f"answered the probe in {took:.0f} ms as switchboard {version} ({entry.path})"
    return Check(label, "ok", detail)


def check_asks(ctx: Context) -> list[Check]:
    """What each installed harness will still ask: trust, approval, sign-in (harnesses/asks.py)."""
    from switchboard.harnesses import asks  # noqa: PLC0415

    out = []
    for level, setup in ctx.setups().items():
        harnesses = sorted({e.harness for e in _entries(ctx).get(level, [])})
        for harness in harnesses:
            label = f"{harness} {level} setup"
            found = asks.asks_for(harness, setup, ctx.env)
            out += [Check(label, ask.status, ask.what, ask.fix) for ask in found]
            if not found and asks.has_asks(harness):
                out.append(Check(label, "ok", "nothing left to trust, approve or sign in"))
    return out


#: The checks, in the order they run and print.
CHECKS: Final[tuple[tuple[str, Callable[[Context], list[Check]]], ...]] = (
    ("daemon", check_daemon),
    ("socket", check_socket),
    ("links", check_links),
    ("clocks", check_clocks),
    ("entries", check_entries),
    ("hooks", check_hooks),
    ("harness setup", check_asks),
)


def run(ctx: Context) -> list[Check]:
    """Run every check of ``CHECKS``; their findings in order."""
    found: list[Check] = []
    for _, check in CHECKS:
        found += check(ctx)
    return found
