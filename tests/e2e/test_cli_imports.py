"""Start-up cost: everyday commands import nothing heavy, so `switchboard send` starts at once.

Each case runs ``main(argv)`` in a fresh interpreter against a fake daemon and lists the heavy
modules that ended up in ``sys.modules``.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from conftest import TIMEOUT, FakeDaemon

HEAVY = ("asyncio", "msgspec", "cryptography", "sqlite3", "subprocess", "threading")

PROBE = """
import json, sys
from switchboard.cli.main import main
code = main(json.loads(sys.argv[1]))
heavy = sorted({m.split(".")[0] for m in sys.modules} & set(json.loads(sys.argv[2])))
print(json.dumps([code, heavy]), file=sys.stderr)
"""


@pytest.mark.parametrize(
    "argv",
    [
        ["--help"],
        ["send", "--help"],
        ["send", "@nova", "--", "hi"],
        ["agents", "--json"],
        ["inbox", "--wait", "1"],
        ["events", "--last", "3"],
        ["events", "--follow", "--json"],
        ["status"],
        ["invite"],
        ["link", "status"],
    ],
    ids=" ".join,
)
def test_cli_everyday_commands_import_nothing_heavy(
    argv: list[str], fake_daemon: FakeDaemon
) -> None:
    """The command runs (exit 0) without importing asyncio, msgspec, cryptography, sqlite3,
    subprocess or threading."""
    done = subprocess.run(
        [sys.executable, "-c", PROBE, json.dumps(argv), json.dumps(HEAVY)],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )
    code, heavy = json.loads(done.stderr.splitlines()[-1])
    assert (code, heavy) == (0, [])


# A hook runs on every tool call of every agent: beyond the above it imports none of the pure
# Python modules that would cost as much as the interpreter's own start (json and socket bring
# re, enum, selectors, functools and collections), nor the parser.
HOOK_HEAVY = (*HEAVY, "json", "re", "socket", "typing", "enum", "argparse", "selectors")

# The probe itself imports no json: argv[1] is the names to look for, the rest the command.
HOOK_PROBE = """
import sys
from switchboard.cli.main import main
code = main(sys.argv[2:])
heavy = sorted({m.split(".")[0] for m in sys.modules} & set(sys.argv[1].split(",")))
print(code, *heavy, file=sys.stderr)
"""


@pytest.mark.parametrize(
    "argv",
    [
        ["hook", "claude", "PostToolUse"],
        ["--as", "luna", "hook", "claude", "PostToolUse"],
        ["hook", "codex", "PostToolUse"],
    ],
    ids=" ".join,
)
def test_hook_imports_nothing_beyond_c_modules(argv: list[str], fake_daemon: FakeDaemon) -> None:
    """The hook asks the daemon, prints the harness's answer carrying the message, and imports
    none of json, re, socket, typing, enum, argparse (nor anything heavy)."""
    payload = {
        "session_id": "s-1",
        "cwd": "/repo",
        "tool_name": "Edit",
        "tool_input": {"file_path": "/repo/a.py"},
        "tool_response": {"exit_code": 0},
    }
    done = subprocess.run(
        [sys.executable, "-c", HOOK_PROBE, ",".join(HOOK_HEAVY), *argv],
        input=json.dumps(payload),
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )
    assert done.stderr.splitlines()[-1:] == ["0"], done.stderr  # exit 0, none imported
    answer = json.loads(done.stdout)
    assert answer["hookSpecificOutput"]["additionalContext"] == "[switchboard] nova:ABCD says hi"
    [(method, params)] = fake_daemon.calls
    assert method == "agent.hook"
    assert (params["kind"], params["session"], params["files"]) == ("tool", "s-1", ["/repo/a.py"])


# What every everyday command (text output) starts without: typing, dataclasses (inspect, ast),
# json (its regular expressions; jsonlite drives json's C core), platformdirs, the other
# commands' parsers.
LEAN = (*HEAVY, "typing", "dataclasses", "inspect", "json", "platformdirs")


@pytest.mark.parametrize(
    "argv",
    [
        ["send", "@nova", "--", "hi"],
        ["agents"],
        ["inbox"],
        ["--as", "luna", "inbox", "--peek"],
    ],
    ids=" ".join,
)
def test_cli_everyday_commands_import_no_typing_json_or_dataclasses(
    argv: list[str], fake_daemon: FakeDaemon
) -> None:
    """The command runs (exit 0) without importing typing, dataclasses, inspect, json or
    platformdirs, and builds only its own command's parser."""
    probe = HOOK_PROBE.replace(
        "heavy = ", "built = 'switchboard.cli.parser_coordination' in sys.modules\nheavy = "
    ).replace("print(code, *heavy,", "print(code, *heavy, *(['coordination'] * built),")
    done = subprocess.run(
        [sys.executable, "-c", probe, ",".join(LEAN), *argv],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )
    assert done.stderr.splitlines()[-1:] == ["0"], done.stderr  # exit 0, none imported


# The quick path (cli/quick.py) of agents, send and inbox imports, like the hook, only C modules
# beyond our own few: no parser, no pathlib (config), no socket or errors (enum).
QUICK_HEAVY = (*HOOK_HEAVY, "pathlib", "gettext", "locale", "datetime")
QUICK_OURS = ("switchboard.config", "switchboard.errors", "switchboard.daemon.client")
QUICK_PROBE = HOOK_PROBE.replace(
    "heavy = sorted(",
    "heavy = sorted({m for m in sys.modules if m in sys.argv[1].split(',')} | ",
)


@pytest.mark.parametrize(
    "argv",
    [
        ["agents"],
        ["agents", "--json"],
        ["--as", "luna", "send", "@nova", "--", "hi"],
        ["send", "--json", "@nova", "hello"],
        ["inbox"],
        ["--as", "nova", "inbox", "--json", "--peek"],
    ],
    ids=" ".join,
)
def test_quick_path_imports_only_c_modules_beyond_its_own(
    argv: list[str], fake_daemon: FakeDaemon
) -> None:
    """agents, send and inbox ask the daemon once and print without importing the parser,
    json, re, enum, socket, typing, pathlib, datetime.py, or our config, errors and client
    (also when the acting agent is the login name: fake_daemon unsets SWITCHBOARD_AGENT)."""
    names = ",".join((*QUICK_HEAVY, *QUICK_OURS))
    done = subprocess.run(
        [sys.executable, "-c", QUICK_PROBE, names, *argv],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )
    assert done.stderr.splitlines()[-1:] == ["0"], done.stderr  # exit 0, none imported
    [(method, _)] = fake_daemon.calls
    assert method == next(word for word in argv if word in ("agents", "send", "inbox"))
