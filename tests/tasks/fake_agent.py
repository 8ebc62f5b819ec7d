"""A stand-in for a harness CLI that honours that harness's command-line contract.

Run as ``fake_agent.py HARNESS ARGS...`` (the test's bin folder has one ``claude``, ``codex``,
... script per harness that does so). It checks that ``ARGS`` is what Switchboard's command
table promises for that harness (headless: the task on stdin; ``--terminal``: the task as one
argument), prints what it got, then runs the task text as a tiny script, one command a line:

- ``say TEXT``: print TEXT;
- ``write PATH TEXT``: write TEXT to PATH (relative to the working directory);
- ``wait-message [SECS]``: wait for a message to this agent (``switchboard inbox``), print it;
- ``ask TOOL DETAIL``: ask a permission the way the harness's hook would, print the answer;
- ``sleep SECS``; ``hang`` (sleep for an hour); ``ignore-term`` (SIGTERM does nothing now);
- ``grandchild``: start a process that sleeps for an hour (a stop must end it too);
- ``exit N``: end with status N.

Any other line is only printed (so shell metacharacters in a task show up verbatim).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

# What each harness's headless and interactive commands pass (switchboard.tasks.commands).
HEADLESS = {
    "claude": ["-p"],
    "codex": ["exec", "-"],
    "gemini": [],
    "opencode": ["run"],
    "pi": ["-p"],
}
SKIP_FLAGS = {
    "--dangerously-skip-permissions", "--dangerously-bypass-approvals-and-sandbox",
    "--full-auto", "--yolo", "-y", "--approval-mode=yolo", "--auto",
}  # fmt: skip
EXIT_BAD_CONTRACT = 64


def _task_of(harness: str, args: list[str]) -> tuple[str, list[str]] | None:
    """The task text and the skip flags found, or ``None`` if ``args`` breaks the contract."""
    flags = [a for a in args if a in SKIP_FLAGS]
    rest = [a for a in args if a not in SKIP_FLAGS]
    if rest == HEADLESS[harness]:
        return sys.stdin.read(), flags
    if harness in ("claude", "codex", "pi") and len(rest) == 2 and rest[0] == "--":
        return rest[1], flags
    prefix = {"gemini": "--prompt-interactive=", "opencode": "--prompt="}.get(harness)
    if prefix and len(rest) == 1 and rest[0].startswith(prefix):
        return rest[0][len(prefix) :], flags
    return None


def _switchboard(*args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "switchboard", *args], capture_output=True, text=True, check=False
    )
    return done.stdout


def _wait_message(seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        messages = json.loads(_switchboard("inbox", "--json") or "[]")
        if messages:
            print("got: " + messages[0]["text"], flush=True)
            return
        time.sleep(0.1)
    print("got nothing", flush=True)


def _run_line(line: str) -> int | None:
    word, _, rest = line.strip().partition(" ")
    if word == "say":
        print(rest, flush=True)
    elif word == "write":
        path, _, text = rest.partition(" ")
        with open(path, "w", encoding="utf-8") as file:
            file.write(text + "\n")
        print(f"wrote {path}", flush=True)
    elif word == "wait-message":
        _wait_message(float(rest or 30))
    elif word == "sleep":
        time.sleep(float(rest))
    elif word == "hang":
        time.sleep(3600)
    elif word == "ignore-term":
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        print("ignoring SIGTERM", flush=True)
    elif word == "grandchild":
        child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(3600)"])
        print(f"grandchild {child.pid}", flush=True)
    elif word == "exit":
        return int(rest)
    else:
        print(f"line: {line}", flush=True)
    return None


def main() -> int:
    harness, args = sys.argv[1], sys.argv[2:]
    found = _task_of(harness, args) if harness in HEADLESS else (" ".join(args), [])
    if found is None:
        print(f"bad contract for {harness}: {json.dumps(args)}", flush=True)
        return EXIT_BAD_CONTRACT
    task, flags = found
    print(f"TASK {json.dumps(task)}", flush=True)
    print(f"FLAGS {json.dumps(flags)}", flush=True)
    print(f"AGENT {os.environ.get('SWITCHBOARD_AGENT', '')}", flush=True)
    for line in task.splitlines():
        status = _run_line(line)
        if status is not None:
            return status
    return 0


if __name__ == "__main__":
    sys.exit(main())
