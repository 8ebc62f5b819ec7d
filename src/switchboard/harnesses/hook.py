"""``switchboard hook HARNESS EVENT``: the entry point every harness hook runs.

Theory of operation
-------------------
A harness runs this on every tool call of every agent, so it must be fast and must never hurt
the harness. One hook call is: read the payload (JSON on stdin), map it to one ``agent.hook``
request (``payloads.build_request``), make that one call to the daemon over its unix socket, and
print the harness's JSON answer (``payloads.render``).

- **Fast.** Only modules written in C are imported on this path besides our own (no json, re,
  socket, typing or enum: each pulls in more Python modules, and together they would cost as
  much as the interpreter's own start; ``jsonlite`` drives json's C core directly, the socket is
  ``_socket``), ``cli.main`` routes here before it imports anything else, and the daemon is
  asked exactly once. ``bench/hooks.py`` measures the round trip against ``python -c pass``;
  tests/e2e/test_cli_imports.py keeps the imports in check.
- **Never hangs.** The whole call has a time budget (``SWITCHBOARD_HOOK_TIMEOUT``, default
  2 s): reading stdin, connecting and waiting for the answer all count against it. A harness
  that never closes stdin, a daemon that accepts and never answers, both end in the no-op.
- **Never breaks the harness.** Bad input (malformed or truncated JSON, a payload that is not
  an object, an unknown harness or event, an oversized payload) and a daemon that is down or
  fails all print the harness's no-op (``{}``) and exit 0, with one line on stderr saying why.
- **Autostart.** When no daemon answers, a ``SessionStart`` starts one and waits for it (once
  per session, and the harness allows it seconds); every other event starts one in the
  background and answers the no-op at once, rather than make a tool call wait ~0.3 s: the
  messages are not lost, they are delivered at the next hook. ``SWITCHBOARD_HOOK_AUTOSTART=0``
  turns autostart off.
- **A probe is harmless.** The payload ``{"switchboard_probe": true}`` (``switchboard
  doctor``) records nothing and starts nothing: the answer names our version, the home and
  the pid of the daemon that answered a ping there (``null``: none).
- **Prompts stay private.** Prompt text is sent to the daemon (and so recorded in
  ``turn_started``) only when ``SWITCHBOARD_RECORD_PROMPTS=1``.
- **Injected once taken.** What the daemon answers it only holds (daemon/inject.py): once
  the answer is written to the harness, a second request (sent, not waited for) settles it as
  injected (or, if the write failed, as not taken, so it is offered again). Only calls that
  deliver something pay for it. OpenCode's and Pi's prompts are settled by our plugin instead
  (``payloads.hands_over``), once the harness has started the turn.
"""

from __future__ import annotations

import _socket
import os
import select
import sys
import time

from switchboard import jsonlite
from switchboard.harnesses import payloads

# The whole hook's budget: far below every harness's hook timeout (Claude Code 600 s, Gemini
# 60 s, Cursor and Antigravity seconds), far above a healthy round trip (~10 ms).
DEFAULT_BUDGET = 2.0
# How long a SessionStart waits for a daemon it started (a cold start migrates SQLite).
START_WAIT = 5.0
# A payload larger than this is not read further: Claude Code's PostToolUse carries whole tool
# outputs (a file read), and nothing we need sits beyond the first bytes of a huge one.
MAX_PAYLOAD = 8 * 1024 * 1024
# The idle wait (Claude Code asyncRewake): how long one waiting hook waits for a message.
DEFAULT_IDLE_WAIT = 3000.0
# How long a permission hook waits for an answer from another device (or this one's
# ``approve``) before it gives no decision and the harness asks in its own way
# (``SWITCHBOARD_PROMPT_WAIT``). Claude Code shows its own prompt at the terminal beside the
# running hook (first answer wins), so a person there is not kept waiting; the wait only
# bounds how long ``approvals`` lists it and how long a headless ``claude -p`` stalls before
# its own default (deny). Two minutes: long enough to see a notification on a phone or
# laptop and decide, short of Claude Code's own 600 s hook timeout.
DEFAULT_PROMPT_WAIT = 120.0
# The settling request after a delivering answer is sent, not waited for (the daemon settles
# while the harness goes on); this bounds connecting and sending. A daemon that does not take
# it lets the hold lapse (the message is offered again later).
SETTLE_TIMEOUT = 0.5
# A payload ``{"switchboard_probe": true}`` asks the hook who it is instead of recording
# anything (``switchboard doctor`` runs each installed hook command with it).
PROBE_KEY = "switchboard_probe"
_SALVAGE = rb'"(session_id|conversation_id|conversationId|cwd)"\s*:\s*"([^"\\]{1,512})"'
_SKIP_PARENTS = frozenset(
    {"sh", "bash", "dash", "zsh", "fish", "ksh", "env", "timeout", "nice", "nohup", "uv", "uvx",
     "switchboard", "sb", "time", "sudo", "stdbuf"}
)  # fmt: skip


class _Budget:
    def __init__(self, seconds: float) -> None:
        self.deadline = time.monotonic() + seconds

    def left(self) -> float:
        return max(self.deadline - time.monotonic(), 0.0)


def _note(message: str) -> None:
    try:  # noqa: SIM105 - contextlib is one more import on every hook's start-up
        print(f"switchboard hook: {message}", file=sys.stderr)
    except OSError:
        pass


def read_payload(stream: object, budget: _Budget) -> tuple[bytes, bool]:
    """Read stdin until EOF, the size limit or the budget: ``(data, complete)``."""
    fileno = getattr(stream, "fileno", None)
    if fileno is None:
        return b"", False
    try:
        fd = fileno()
        if os.isatty(fd):
            return b"", False
    except (OSError, ValueError):
        return b"", False
    chunks: list[bytes] = []
    size = 0
    while size <= MAX_PAYLOAD:
        ready, _, _ = select.select([fd], [], [], budget.left() / 2)
        if not ready:
            return b"".join(chunks), False
        chunk = os.read(fd, 1 << 16)
        if not chunk:
            return b"".join(chunks), True
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks), False


def parse_payload(data: bytes, complete: bool) -> tuple[dict[str, object], str]:
    """Decode a payload; salvage the session id and cwd from a truncated one.

    Returns:
        The payload (``{}`` if nothing usable) and a problem description (``""`` if none).
    """
    if complete:
        try:
            value = jsonlite.loads(data)
        except ValueError:
            value = None
        if isinstance(value, dict):
            return value, ""
        problem = "payload is not a JSON object" if value is not None else "malformed JSON"
    else:
        problem = "truncated or oversized payload"
    import re  # noqa: PLC0415 - only for a broken payload

    found = re.findall(_SALVAGE, data[:65536])
    salvaged = {key.decode(): val.decode() for key, val in found}
    return salvaged, problem


def _proc_parent(pid: int) -> tuple[int, str, str] | None:
    """``(parent pid, command name, start time)`` of a process, from /proc (Linux)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as file:
            stat = file.read().decode(errors="replace")
    except OSError:
        return None
    comm = stat[stat.find("(") + 1 : stat.rfind(")")]
    fields = stat[stat.rfind(")") + 2 :].split()
    return int(fields[1]), comm, fields[19]


def anchor() -> str:
    """Identify the harness process that runs us: the nearest ancestor that is not a shell.

    ``SWITCHBOARD_HARNESS_PID`` overrides it (a launcher that knows better). The start time is
    part of the anchor, so a recycled pid is never taken for the old process.
    """
    forced = os.environ.get("SWITCHBOARD_HARNESS_PID")
    pid = int(forced) if forced and forced.isdigit() else os.getppid()
    for _ in range(8):
        info = _proc_parent(pid)
        if info is None:
            return f"{pid}"
        parent, comm, started = info
        if forced or comm not in _SKIP_PARENTS or parent <= 1:
            return f"{pid}:{started}"
        pid = parent
    return f"{pid}"


def terminal() -> dict[str, str]:
    """The tmux pane we run in (``tmux``: its server's socket path, ``pane``: ``%N``), from
    the variables tmux sets in every pane, so ``switchboard term`` can find the agent's
    terminal (daemon/term.py); empty outside tmux."""
    socket_path = os.environ.get("TMUX", "").split(",", 1)[0]
    pane = os.environ.get("TMUX_PANE", "")
    return {"tmux": socket_path, "pane": pane} if socket_path and pane else {}


def _home() -> str:
    home = os.environ.get("SWITCHBOARD_HOME")
    if home:
        return home
    if sys.platform == "linux":  # platformdirs' answer, without importing it
        data = os.environ.get("XDG_DATA_HOME", "")  # as config.default_home
        data = data if os.path.isabs(data) else os.path.expanduser("~/.local/share")
        return os.path.join(data, "switchboard")
    from switchboard.config import default_home  # noqa: PLC0415 - only without a home set

    return str(default_home())


def _ask(socket_path: str, request: dict[str, object], timeout: float, limit: int) -> bytes:
    """Send one request line over the daemon's socket; return the answer line (or what came
    before the connection closed, or ``limit`` bytes of it)."""
    sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
    try:
        sock.settimeout(max(timeout, 0.01))
        sock.connect(socket_path)
        sock.sendall(jsonlite.dumps(request, compact=True).encode() + b"\n")
        chunks: list[bytes] = []
        size = 0
        while size < limit:
            chunk = sock.recv(min(1 << 16, limit - size))
            if not chunk:
                break
            end = chunk.find(b"\n")
            if end >= 0:
                chunks.append(chunk[: end + 1])
                break
            chunks.append(chunk)
            size += len(chunk)
        return b"".join(chunks)
    finally:
        sock.close()


def call(socket_path: str, params: dict[str, object], timeout: float) -> dict[str, object]:
    """One ``agent.hook`` request over the daemon's socket, within ``timeout`` seconds.

    Raises:
        OSError: no daemon, or it did not answer in time.
        ValueError: the answer is malformed, or an error.
    """
    request = {"id": 1, "method": "agent.hook", "params": params}
    answer = jsonlite.loads(_ask(socket_path, request, timeout, 64 * 1024 * 1024))
    if not isinstance(answer, dict) or not isinstance(answer.get("result"), dict):
        error = answer.get("error") if isinstance(answer, dict) else None
        message = error.get("message") if isinstance(error, dict) else "malformed answer"
        raise ValueError(str(message))
    result: dict[str, object] = answer["result"]
    return result


def _start_daemon(home: str, wait: bool, socket_path: str, budget: _Budget) -> str:
    """Start the daemon in the background; with ``wait``, until it listens (within budget).

    Returns:
        ``"ready"`` (it listens now), ``"starting"`` or ``"off"`` (autostart is disabled).
    """
    if os.environ.get("SWITCHBOARD_HOOK_AUTOSTART", "1") == "0":
        return "off"
    from switchboard.config import load_settings  # noqa: PLC0415 - only when it is down
    from switchboard.daemon import process  # noqa: PLC0415

    settings = load_settings(home=home)
    if not process.read_status(settings)["running"]:
        process.start_background(settings)
    while wait and budget.left() > 0:
        if os.path.exists(socket_path):
            return "ready"
        time.sleep(0.02)
    return "starting"


class Settle:
    """The settling call owed for a held answer, made once it is written (or failed to be)."""

    def __init__(self, socket_path: str, harness: str, handover: str) -> None:
        self.socket_path, self.harness, self.handover = socket_path, harness, handover

    def __call__(self, taken: bool, error: str = "") -> None:
        kind = "injected" if taken else "inject_failed"
        params = {"harness": self.harness, "kind": kind, "handover": self.handover, "error": error}
        request = {"id": 2, "method": "agent.hook", "params": params}
        sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
        try:
            sock.settimeout(SETTLE_TIMEOUT)
            sock.connect(self.socket_path)
            sock.sendall(jsonlite.dumps(request, compact=True).encode() + b"\n")
        except OSError as exc:
            _note(f"could not confirm the delivery: {exc}"[:300])
        finally:
            sock.close()


def probe(budget: _Budget) -> dict[str, object]:
    """The answer to ``switchboard doctor``'s probe payload: who we are, where we would call.

    Nothing is recorded and no daemon is started: the daemon, if one listens, is only pinged.
    """
    from switchboard import __version__  # noqa: PLC0415 - only for the probe

    home = _home()
    daemon: object
    try:
        request = {"id": 1, "method": "ping", "params": {}}
        line = _ask(os.path.join(home, "daemon.sock"), request, budget.left(), 1 << 20)
        answer = jsonlite.loads(line)
        daemon = answer.get("result", {}).get("pid") if isinstance(answer, dict) else None
    except (OSError, ValueError, AttributeError):
        daemon = None
    return {
        PROBE_KEY: {
            "version": __version__,
            "home": home,
            "daemon": daemon,
        }
    }


def run(harness: str, event: str, argv: list[str]) -> tuple[dict[str, object], int, str]:
    """Handle one hook call; return ``(stdout JSON, exit status, stderr text)``."""
    out, status, message, _ = run_held(harness, event, argv)
    return out, status, message


def run_held(
    harness: str, event: str, argv: list[str]
) -> tuple[dict[str, object], int, str, Settle | None]:
    """Like ``run``, plus the ``Settle`` owed once the answer is written (``None``: none)."""
    found = payloads.classify(harness, event)
    if found is None:
        return {}, 0, f"ignoring unknown harness event {harness} {event}"[:200], None
    kind = found[0]
    if kind == "idle_wait" and os.environ.get("CLAUDE_CODE_ENTRYPOINT") == "sdk-cli":
        # claude -p: the session ends with this turn, so there is no idle session to wake,
        # and Claude Code would wait ~30 s for this background hook before it exits.
        return {}, 0, "", None
    seconds = float(os.environ.get("SWITCHBOARD_HOOK_TIMEOUT") or DEFAULT_BUDGET)
    wait = DEFAULT_IDLE_WAIT if kind == "idle_wait" else 0.0
    if kind == "permission":
        wait = float(os.environ.get("SWITCHBOARD_PROMPT_WAIT") or DEFAULT_PROMPT_WAIT)
    if "--wait" in argv[:-1]:
        wait = float(argv[argv.index("--wait") + 1])
    budget = _Budget(seconds + wait)
    data, complete = read_payload(sys.stdin, _Budget(min(seconds, budget.left())))
    payload, problem = parse_payload(data, complete)
    if payload.get(PROBE_KEY) is True and not problem:
        return probe(_Budget(seconds)), 0, "", None
    if problem and not payload:
        return {}, 0, f"{problem}; nothing done", None
    record = os.environ.get("SWITCHBOARD_RECORD_PROMPTS") == "1"
    request = payloads.build_request(harness, event, payload, record_prompts=record)
    assert request is not None
    request.update(payloads.transcript_hint(request["kind"], payload, os.environ))
    request.update(agent=os.environ.get("SWITCHBOARD_AGENT", ""), anchor=anchor(), wait=wait)
    request.update(terminal())
    home = _home()
    socket_path = os.path.join(home, "daemon.sock")
    try:
        answer = call(socket_path, request, budget.left())
    except (FileNotFoundError, ConnectionRefusedError):
        started = _start_daemon(home, kind == "session_start", socket_path, budget)
        if started != "ready":
            how = "starting one" if started == "starting" else "autostart is off"
            return {}, 0, f"no daemon running ({how}); nothing delivered this time", None
        try:
            answer = call(socket_path, request, budget.left())
        except (OSError, ValueError) as exc:
            return {}, 0, f"daemon did not answer: {exc}"[:300], None
    except (OSError, ValueError) as exc:
        return {}, 0, f"daemon did not answer: {exc}"[:300], None
    intro = payloads.intro(harness, str(answer.get("agent", ""))) if kind == "session_start" else ""
    out, status, message = payloads.render(harness, event, answer, intro)
    handover = str(answer.get("handover") or "")
    if not handover or payloads.hands_over(harness, kind):
        return out, status, message, None
    return out, status, message, Settle(socket_path, harness, handover)


def main(argv: list[str]) -> int:
    """``switchboard [--home DIR] [--as NAME] hook HARNESS EVENT [--wait SECS]``."""
    args = list(argv)
    while args and args[0] in ("--home", "--as") and len(args) > 1:
        key = "SWITCHBOARD_HOME" if args[0] == "--home" else "SWITCHBOARD_AGENT"
        os.environ[key] = args[1]
        args = args[2:]
    if args[:1] == ["hook"]:
        args = args[1:]
    if len(args) < 2:
        print("{}")
        _note("usage: switchboard hook HARNESS EVENT")
        return 0
    settle: Settle | None = None
    try:
        out, status, message, settle = run_held(args[0], args[1], args[2:])
    except Exception as exc:  # noqa: BLE001 - a hook must never break its harness
        out, status, message = {}, 0, f"internal error: {type(exc).__name__}: {exc}"[:300]
    try:
        if status == 2:
            sys.stderr.write(message + "\n")
            sys.stderr.flush()
        else:
            sys.stdout.write(jsonlite.dumps(out) + "\n")
            sys.stdout.flush()
            if message:
                _note(message)
    except OSError as exc:
        if settle is not None:
            settle(False, f"the harness did not read the hook's answer: {exc}"[:300])
        # No second complaint from the interpreter's own flush at exit (contextlib is one
        # more import on every hook's start-up).
        try:  # noqa: SIM105
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        except OSError:
            pass
        return status
    if settle is not None:
        shown = bool(out) or status == 2
        settle(shown, "" if shown else "the harness's answer could not carry it")
    return status
