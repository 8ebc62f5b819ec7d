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
