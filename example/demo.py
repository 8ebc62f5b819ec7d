"""``make demo``: a relay and two devices on this machine, talking, with a readable transcript.

No network and no arguments: everything runs on 127.0.0.1 under a temporary directory, through
the real command line, and everything started here is stopped at the end.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PYTHON = sys.executable
BOLD, DIM, RESET = ("\033[1m", "\033[2m", "\033[0m") if sys.stdout.isatty() else ("", "", "")


def banner(text: str) -> None:
    print(f"\n{BOLD}== {text}{RESET}")


def sb(home: Path, *args: str, show: bool = True, label: str = "") -> str:
    """Run ``switchboard ARGS`` for one device and print it like a terminal would."""
    env = {**os.environ, "SWITCHBOARD_HOME": str(home)}
    cmd = [PYTHON, "-m", "switchboard", *args]
    result = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=60, check=False)
    if show:
        shown = " ".join(shlex.quote(a) if " " in a or "'" in a else a for a in args)
        shown = re.sub(r"sb1\.[A-Za-z0-9_\-]+", lambda m: m.group(0)[:24] + "…", shown)
        print(f"{DIM}[{label}]{RESET} $ switchboard {shown}")
        out = result.stdout.rstrip()
        if out:
            print(re.sub(r"sb1\.[A-Za-z0-9_\-]+", lambda m: m.group(0)[:24] + "…", out))
    if result.returncode != 0:
        print(result.stderr.rstrip(), file=sys.stderr)
        raise SystemExit(f"demo: 'switchboard {' '.join(args)}' failed ({result.returncode})")
    return result.stdout


def start_relay(data: Path) -> tuple[subprocess.Popen[str], str]:
    cmd = [PYTHON, "-m", "switchboard", "relay", "serve", "--port", "0", "--data", str(data)]
    env = {**os.environ, "SWITCHBOARD_HOME": str(data)}
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, env=env)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    match = re.search(r"(wss?://\S+)", line)
    if not match:
        proc.kill()
        raise SystemExit(f"demo: relay did not start: {line!r}")
    return proc, match.group(1)


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="switchboard-demo-") as tmp:
        root = Path(tmp)
        laptop, server = root / "laptop", root / "server"
        relay, url = start_relay(root / "relay")
        follower: subprocess.Popen[str] | None = None
        try:
            banner(f"A relay on this machine: {url} (it only ever sees ciphertext)")
            banner("Two devices, each with its own home: 'laptop' and 'server'")
            sb(laptop, "init", "--name", "laptop", label="laptop")
            sb(server, "init", "--name", "server", label="server")

            banner("The laptop creates a group; the server joins with the invite")
            token = (
                sb(
                    laptop,
                    "--as",
                    "luna",
                    "group",
                    "create",
                    "--name",
                    "demo",
                    "--relay",
                    url,
                    label="laptop",
                )
                .strip()
                .splitlines()[-1]
            )
            sb(server, "join", token, label="server")

            banner("Agents appear on first use: luna on the laptop, nova on the server")
            sb(server, "--as", "nova", "inbox", "--peek", label="server")
            server_short = _short_of(server)
            laptop_short = _short_of(laptop)

            follower = subprocess.Popen(
                [PYTHON, "-m", "switchboard", "events", "--follow", "--wait", "6"],
                env={**os.environ, "SWITCHBOARD_HOME": str(server)},
                stdout=subprocess.PIPE,
                text=True,
            )
            time.sleep(0.5)  # let the follower attach before the conversation starts
            sb(laptop, "agents", label="laptop")

            banner("Messages both ways")
            sb(
                laptop,
                "--as",
                "luna",
                "send",
                f"@nova:{server_short}",
                "--",
                "hello from the laptop",
                label="laptop",
            )
            sb(server, "--as", "nova", "inbox", label="server")
            sb(
                server,
                "--as",
                "nova",
                "send",
                "@luna",
                "--",
                "hi luna, server here",
                label="server",
            )
            sb(laptop, "--as", "luna", "inbox", label="laptop")

            banner("A broadcast to every agent of the group")
            sb(
                laptop,
                "--as",
                "ada",
                "send",
                "@all",
                "--",
                "standup in five minutes",
                label="laptop",
            )
            sb(server, "--as", "nova", "inbox", label="server")
            sb(laptop, "--as", "luna", "inbox", label="laptop")

            banner("Querying the log with read-only SQL (on the server)")
            sb(
                server,
                "events",
                "--where",
                f"type = 'message_posted' AND agent LIKE 'luna:{laptop_short}'",
                label="server",
            )

            banner("Status of the laptop")
            sb(laptop, "status", label="laptop")

            banner("What 'events --follow' on the server printed while this ran")
            out, _ = follower.communicate(timeout=30)
            follower = None
            print(out.rstrip())
        finally:
            if follower is not None:
                follower.kill()
            for home in (laptop, server):
                if home.exists():
                    sb(home, "daemon", "stop", show=False)
            relay.terminate()
            relay.wait(timeout=10)
        banner("Done: relay and both daemons stopped")
    return 0


def _short_of(home: Path) -> str:
    import json  # noqa: PLC0415

    status = json.loads(sb(home, "status", "--json", show=False))
    return str(status["device"]["short"])


if __name__ == "__main__":
    raise SystemExit(main())
