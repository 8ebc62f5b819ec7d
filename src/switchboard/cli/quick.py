"""The quick path of ``agents``, ``send`` and ``inbox``: their common shapes without argparse.

Theory of operation
-------------------
These three are what agents and scripts run over and over, and most of their cost was start-up:
building the parser (argparse, gettext, locale), the settings (pathlib brings re, fnmatch,
urllib.parse), the API client (socket brings enum, selectors; errors brings enum) and json.
This module takes the argument shapes it knows for certain (``agents [--json]``,
``send TARGET... [--json] [--thread ID] [--reply-to ID] [--intent I] [--priority P] -- TEXT``,
``inbox [--json] [--peek] [--wait SECS]``, each with ``--as NAME`` and ``--home DIR`` before or
after the command), asks the daemon once over its unix socket with ``_socket`` and ``jsonlite``,
and prints with the very functions the full path uses (``output.py``), so output is the same
byte for byte, text and ``--json``.

Anything else returns ``None`` before any effect, and ``cli.main`` runs the full parser: a
shape we do not know (``--help``, ``--opt=value``, ``--file``, ``send --wait``, text from
stdin, a usage error), settings beyond the home and the agent (a ``config.toml`` or a timeout
in the environment: then ``config.load_settings`` reads them, errors and all), and a daemon
that does not answer the socket (the full path starts it, or says why not). A daemon's error
answer, a malformed one and a lost connection raise what ``daemon/client.py`` raises, through
its own functions. tests/e2e/test_cli_quick.py runs both paths on the same arguments.
"""

from __future__ import annotations

import _socket
import os
import sys

from switchboard import jsonlite

TYPE_CHECKING = False  # no typing at run time (mypy takes it as true)
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

# As daemon/client.py: DEFAULT_CALL_TIMEOUT, DEFAULT_MAX_RESPONSE_LINE and Client.open's
# connect timeout (tests/e2e/test_cli_quick.py checks they agree).
CALL_TIMEOUT = 30.0
MAX_RESPONSE_LINE = 256 * 1024 * 1024
CONNECT_TIMEOUT = 5.0

# The options each command takes on the quick path: flag -> (destination, takes a value,
# the values allowed or None for any). ``--as`` and ``--home`` go before or after the command.
_COMMON = {"--as": ("as_agent", True, None), "--home": ("home", True, None)}
_OPTIONS: dict[str, dict[str, tuple[str, bool, tuple[str, ...] | None]]] = {
    "agents": {"--json": ("json", False, None)},
    "send": {
        "--json": ("json", False, None),
        "--thread": ("thread", True, None),
        "--reply-to": ("reply_to", True, None),
        "--intent": ("intent", True, ("request", "inform", "ack")),
        "--priority": ("priority", True, ("normal", "urgent")),
    },
    "inbox": {
        "--json": ("json", False, None),
        "--peek": ("peek", False, None),
        "--wait": ("wait", True, None),
    },
}
# Settings that load_settings parses (and may refuse): with one of them, it reads them all.
_PARSED_ENVIRONMENT = ("SWITCHBOARD_OFFLINE_TIMEOUT", "SWITCHBOARD_EXPIRE_AFTER",
                       "SWITCHBOARD_EDIT_WINDOW")  # fmt: skip


def _options(words: list[str], table: dict[str, Any], found: dict[str, Any]) -> list[str] | None:
    """Read ``words`` into ``found``; return the positional words (one run, as argparse takes
    ``nargs="+"``), or ``None`` for anything not certain."""
    positional: list[str] = []
    ended = False  # a positional run ended: a second run is argparse's usage error
    i = 0
    while i < len(words):
        word = words[i]
        option = table.get(word) or _COMMON.get(word)
        if option is not None:
            dest, takes_value, allowed = option
            if takes_value:
                if i + 1 >= len(words) or words[i + 1].startswith("-"):
                    return None
                value = words[i + 1]
                if allowed is not None and value not in allowed:
                    return None
                found[dest] = value
                i += 2
            else:
                found[dest] = True
                i += 1
            ended = bool(positional)
        elif word.startswith("-") or ended:
            return None
        else:
            positional.append(word)
            i += 1
    return positional


def _seconds(text: str) -> float | None:
    """``parser._seconds``'s value, or ``None`` where it would refuse the text."""
    try:
        value = float(text)
    except ValueError:
        return None
    return value if value >= 0 and value != float("inf") else None


def _is_target(word: str) -> bool:
    from switchboard.cli.main import _is_target as is_target  # noqa: PLC0415 - one rule

    return is_target(word)


def parse(argv: list[str], index: int) -> dict[str, Any] | None:
    """The command's arguments as the full parser would give them, or ``None`` if not sure.

    Args:
        argv: the arguments after the program name.
        index: where the command name is in ``argv``.
    """
    command = argv[index]
    table = _OPTIONS.get(command)
    if table is None:
        return None
    found: dict[str, Any] = {"command": command}
    before = _options(argv[:index], {}, found)
    words, text = argv[index + 1 :], None
    if command == "send" and "--" in words:
        dash = words.index("--")
        words, text = words[:dash], words[dash + 1 :]
    positional = _options(words, table, found)
    if before != [] or positional is None:
        return None
    if command != "send":
        if positional:
            return None
        if "wait" in found:
            found["wait"] = _seconds(found["wait"])
            if found["wait"] is None:
                return None
        return found
    if text is None:  # no '--': the leading targets, then the text
        count = 0
        while count < len(positional) and _is_target(positional[count]):
            count += 1
        positional, text = positional[:count], positional[count:]
    found["targets"], found["text"] = positional, " ".join(text)
    # No target, or no text (then it may come from stdin): the full path decides.
    return found if positional and text != ["-"] and found["text"].strip() else None


def default_home() -> str:
    """``config.default_home()`` on Linux, without pathlib (re, fnmatch, urllib.parse)."""
    data = os.environ.get("XDG_DATA_HOME", "")
    data = data if os.path.isabs(data) else os.path.expanduser("~/.local/share")
    return os.path.join(data, "switchboard")


# The characters of an agent name (config.default_agent_name's rule: the others become "-").
_NAME_CHARACTERS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789_.-")


def login_agent() -> str:
    """``config.default_agent_name()``: the login name as an agent name, without importing re
    (and with it enum, functools, collections) or pathlib, for agents that run the CLI without
    ``SWITCHBOARD_AGENT``; tests/e2e/test_cli_quick.py holds the two to the same answers."""
    login = next(
        (user for variable in ("LOGNAME", "USER", "LNAME", "USERNAME")
         if (user := os.environ.get(variable))),
        None,
    )  # fmt: skip
    if login is None:
        try:
            import pwd  # noqa: PLC0415

            login = pwd.getpwuid(os.getuid())[0]
        except (KeyError, OSError):
            login = "user"
    lowered = login.lower()
    name = "".join(c if c in _NAME_CHARACTERS else "-" for c in lowered).strip("-._")[:32]
    return name or "user"


def _settings(found: dict[str, Any]) -> tuple[str, Any]:
    """``(socket path, acting agent)``; the agent is a function, called only if needed."""
    home = found.get("home") or os.environ.get("SWITCHBOARD_HOME")
    agent = found.get("as_agent") or os.environ.get("SWITCHBOARD_AGENT")
    if sys.platform == "linux":
        home = os.path.expanduser(home) if home else default_home()
        if not any(os.environ.get(name) for name in _PARSED_ENVIRONMENT) and not os.path.exists(
            os.path.join(home, "config.toml")
        ):
            return os.path.join(home, "daemon.sock"), lambda: agent or login_agent()
    from switchboard.cli.main import load_settings  # noqa: PLC0415 - what load_settings reads

    settings = load_settings(found.get("home"), found.get("as_agent"))
    return str(settings.socket_path), settings.acting_agent


def _connect(path: str) -> Any:
    """A socket connected to the daemon, or ``None`` (the full path starts it, or says why)."""
    sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
    try:
        sock.settimeout(CONNECT_TIMEOUT)
        sock.connect(path)
    except OSError:
        sock.close()
        return None
    return sock


def _lost(exc: OSError) -> Exception:
    from switchboard.errors import DaemonUnavailable  # noqa: PLC0415 - only when it fails

    return DaemonUnavailable(f"lost the connection to the daemon: {exc}")


def _ask(
    sock: Any, method: str, params: dict[str, Any], timeout: float, meanwhile: Callable[[], None]
) -> Any:
    """Send request 1, run ``meanwhile`` while the daemon works on it, and return its result,
    raising what ``Client.call`` raises."""
    request = {"id": 1, "method": method, "params": params}
    try:
        sock.sendall(jsonlite.dumps(request, compact=True).encode() + b"\n")
    except OSError as exc:
        raise _lost(exc) from exc
    meanwhile()
    chunks: list[bytes] = []
    size = 0
    try:
        sock.settimeout(timeout)
        while size <= MAX_RESPONSE_LINE:
            chunk = sock.recv(1 << 16)
            if not chunk:
                break
            end = chunk.find(b"\n")
            chunks.append(chunk if end < 0 else chunk[: end + 1])
            size += len(chunks[-1])
            if end >= 0:
                break
    except TimeoutError as exc:
        from switchboard.errors import DaemonUnavailable  # noqa: PLC0415

        message = f"the daemon did not answer {method} within {timeout:g} s"
        raise DaemonUnavailable(message) from exc
    except OSError as exc:
        raise _lost(exc) from exc
    line = b"".join(chunks)
    if line.endswith(b"\n") and size <= MAX_RESPONSE_LINE:
        try:
            answer = jsonlite.loads(line)
        except ValueError:
            answer = None
        plain = isinstance(answer, dict) and answer.get("id") == 1 and "error" not in answer
        if plain and "result" in answer:
            return answer["result"]
    return _answer(line, method)


def _answer(line: bytes, method: str) -> Any:
    """Anything but a plain result: the client's own reading of it (its errors, its words)."""
    from switchboard.daemon import client  # noqa: PLC0415 - only for an error answer
    from switchboard.errors import DaemonUnavailable  # noqa: PLC0415

    if len(line) > MAX_RESPONSE_LINE:
        raise DaemonUnavailable(f"answer to {method} exceeds {MAX_RESPONSE_LINE} bytes")
    return client._result(client._decode(line, method), 1, method)[1]


def _request(found: dict[str, Any], agent: Any) -> tuple[str, dict[str, Any], float]:
    """``(method, params, timeout)`` as commands/messages.py sends them."""
    command = found["command"]
    if command == "agents":
        return "agents", {}, CALL_TIMEOUT
    if command == "inbox":
        wait = found.get("wait") or 0.0
        values = {"agent": agent(), "peek": found.get("peek", False), "wait": wait}
        return "inbox", values, wait + CALL_TIMEOUT
    values = {"agent": agent(), "to": found["targets"], "text": found["text"]}
    for name in ("thread", "intent", "reply_to", "priority"):
        if name in found:
            values[name] = found[name]
    return "send", values, CALL_TIMEOUT


def _prepare(command: str, as_json: bool) -> None:
    """Import what printing needs (for a wait, before it: what arrives is printed at once)."""
    from switchboard.cli import output  # noqa: PLC0415 - once the request is on its way

    if not as_json and command != "send":
        output.ready_times()


def _print(command: str, result: Any, as_json: bool) -> None:
    """What commands/messages.py prints for the result."""
    from switchboard.cli import output  # noqa: PLC0415 - imported by _prepare

    if as_json:
        output.print_json(result)
    elif command == "agents":
        if result:
            output.print_lines(output.agent_rows(result))
        else:
            print("no agents yet")
    elif command == "send":
        output.print_lines(output.send_lines(result))
    elif result:
        output.print_lines(output.grouped_lines(result))
    else:
        print("no unread messages")


def run(argv: list[str], index: int) -> int | None:
    """Run ``argv`` on the quick path; ``None``: not ours, nothing done (run the full path).

    Raises:
        SwitchboardError: the daemon's error, or ``DaemonUnavailable``, as the full path.
    """
    found = parse(argv, index)
    if found is None:
        return None
    path, agent = _settings(found)
    method, params, timeout = _request(found, agent)
    as_json = bool(found.get("json"))
    sock = None
    try:
        sock = _connect(path)
        if sock is None:
            return None
        result = _ask(sock, method, params, timeout, lambda: _prepare(method, as_json))
    except KeyboardInterrupt:
        if method == "inbox":
            return 0  # ending a wait is how a wait ends
        raise
    finally:
        if sock is not None:
            sock.close()
    _print(method, result, as_json)
    return 0
