"""The program a task runs under: ``python -P -m switchboard.tasks.wrapper TASK_DIR``.

Theory of operation
-------------------
The daemon (or, for ``--terminal``, a tmux window) starts this wrapper in a session of its
own; the wrapper starts the harness and outlives nothing but it. It exists so that what a
task did is on disk even when no daemon watched it end (the daemon restarted meanwhile, or
tmux was the parent):

1. read ``spec.json`` from the task directory (mode 0600: ``argv``, ``cwd``, ``env``,
   ``stdin``, the task text or ``null``, and ``wait_for``, a file to wait for before starting,
   or ``null``) and delete it, so the environment it carries (a harness's API key, when the
   policy gives one) is not left at rest;
2. start ``argv`` in ``cwd`` with exactly ``env`` as its environment (nothing of the
   wrapper's own), the text on a pipe to its stdin, and write ``child.json`` (its pid);
3. wait for it, and write ``exit.json`` (``status``: its exit status, negative for a
   signal), each file written whole by a rename;
4. exit with the same status.

SIGTERM, SIGINT and SIGHUP are noted, not obeyed: the daemon signals the whole process
group, so the harness gets them itself, and the wrapper stays to record how it ended. Only
SIGKILL ends the wrapper early. Stdlib only, and nothing imported that a hook would not.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from typing import Any

#: Exit status when the program could not be started (as shells report "not found").
EXIT_NOT_STARTED = 127
# How long a tmux task waits for its output to be captured before it starts anyway.
WAIT_FOR_SECONDS = 5.0


def _write_json(directory: str, name: str, value: dict[str, Any]) -> None:
    temp = os.path.join(directory, f".{name}.tmp")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as file:
        json.dump(value, file)
        file.flush()
        os.fsync(file.fileno())
    os.replace(temp, os.path.join(directory, name))


def _feed(pipe: Any, data: bytes) -> None:
    try:
        pipe.write(data)
        pipe.close()
    except (BrokenPipeError, OSError):
        pass  # the program ended or closed its stdin: it read what it wanted


def _start_time(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as file:
            fields = file.read().rsplit(")", 1)[1].split()
        return fields[19]
    except (OSError, IndexError):
        return ""


def _wait_for(directory: str, name: str | None) -> None:
    # In tmux the daemon attaches the pane's output to output.log just after the window
    # opens; the program starts once that is done (or after WAIT_FOR_SECONDS regardless).
    if not name:
        return
    deadline = time.monotonic() + WAIT_FOR_SECONDS
    while not os.path.exists(os.path.join(directory, name)) and time.monotonic() < deadline:
        time.sleep(0.005)


def run(directory: str) -> int:
    """Run the task described in ``directory``; return its exit status."""
    spec_path = os.path.join(directory, "spec.json")
    with open(spec_path, encoding="utf-8") as file:
        spec = json.load(file)
    os.unlink(spec_path)
    noted: list[int] = []
    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(signum, lambda sig, _frame: noted.append(sig))
    text = spec.get("stdin")
    _wait_for(directory, spec.get("wait_for"))
    try:
        child = subprocess.Popen(
            spec["argv"],
            cwd=spec["cwd"],
            env=spec["env"],
            stdin=subprocess.PIPE if text is not None else None,
        )
    except OSError as exc:
        print(f"switchboard: cannot start {spec['argv'][0]}: {exc.strerror}", file=sys.stderr)
        _write_json(directory, "exit.json", {"status": EXIT_NOT_STARTED, "error": exc.strerror})
        return EXIT_NOT_STARTED
    _write_json(directory, "child.json", {"pid": child.pid, "started": _start_time(child.pid)})
    if text is not None:
        threading.Thread(target=_feed, args=(child.stdin, text.encode()), daemon=True).start()
    while True:
        try:
            status = child.wait()
            break
        except InterruptedError:  # pragma: no cover - PEP 475 retries; kept for clarity
            continue
    _write_json(directory, "exit.json", {"status": status, "signals": noted})
    return status if status >= 0 else 128 - status


def main() -> int:
    """Entry point: ``python -m switchboard.tasks.wrapper TASK_DIR``."""
    if len(sys.argv) != 2:
        print("usage: python -m switchboard.tasks.wrapper TASK_DIR", file=sys.stderr)
        return 2
    return run(sys.argv[1])


if __name__ == "__main__":
    sys.exit(main())
