"""Starting one accepted task: its command, its environment, its folder, headless or in tmux.

The environment a task gets is the daemon's own, less every ``SWITCHBOARD_*`` variable,
plus the policy's ``env`` for the harness, plus what wires the agent into the group:
``SWITCHBOARD_HOME`` (so its hooks, MCP server and ``switchboard`` commands reach this
daemon), ``SWITCHBOARD_AGENT`` (its own name), ``SWITCHBOARD_TASK`` and
``SWITCHBOARD_HARNESS``. Group secrets and invite tokens live only in the database and never
in an environment; the command line holds the program and its template's words, and the
task text only where the template puts it (stdin by default). The full environment travels
to the wrapper in ``spec.json`` (mode 0600, deleted once read), never on a command line:
tmux would show it in the process list.
"""

from __future__ import annotations

import asyncio
import json
import os
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Final

from switchboard.daemon import taskgit
from switchboard.daemon.taskrun import Run, start_time, wrapper_command, write_private
from switchboard.tasks.commands import BUILTIN, build_argv
from switchboard.tasks.policy import HarnessRule

if TYPE_CHECKING:
    from switchboard.daemon.taskrun import TaskRunner

#: The tmux session that ``--terminal`` tasks open windows in (``tmux attach -t switchboard``).
TMUX_SESSION: Final = "switchboard"
# tmux answers in milliseconds; this only bounds a wedged server.
TMUX_TIMEOUT: Final = 10.0


@dataclass(frozen=True)
class Launch:
    """An accepted task, ready to start."""

    task: str
    agent: str
    harness: str
    text: str
    cwd: str
    rule: HarnessRule
    max_runtime: float
    grace: float
    requester_device: str
    terminal: bool = False
    tags: tuple[str, ...] = field(default=())
    continues: str = ""  # "resume" or "fork" harness session ``session`` (daemon/resume.py)
    session: str = ""


#: The ACP client that runs a Gemini CLI or OpenCode task headless (harnesses/acp.py).
ACP_CLIENT: Final = (sys.executable, "-P", "-m", "switchboard.harnesses.acp")

#: The MCP tool Claude Code asks permission prompts of in a task (mcp/tasks_tools.py).
PROMPT_TOOL: Final = "mcp__switchboard__permission_prompt"


def _prompt_relay(launch: Launch, home: str) -> list[str]:
    """Claude Code headless: our MCP server, and its permission_prompt tool as the one that
    answers permission prompts, so they travel (daemon/approvals.py). Names and paths only."""
    env = {"SWITCHBOARD_HARNESS": launch.harness, "SWITCHBOARD_HOME": home,
           "SWITCHBOARD_AGENT": launch.agent, "SWITCHBOARD_TASK": launch.task}  # fmt: skip
    if os.environ.get("PYTHONPATH"):
        env["PYTHONPATH"] = os.environ["PYTHONPATH"]
    server = {"type": "stdio", "command": sys.executable, "args": ["-P", "-m", "switchboard",
              "mcp"], "env": env}  # fmt: skip
    config = json.dumps({"mcpServers": {"switchboard": server}}, separators=(",", ":"))
    return ["--mcp-config", config, "--permission-prompt-tool", PROMPT_TOOL]


def command_of(launch: Launch, home: str = "") -> tuple[list[str], str | None]:
    """The program's argv and what goes to its stdin (``None``: nothing)."""
    builtin = BUILTIN.get(launch.harness)
    rule = launch.rule
    if rule.args is not None:
        template, via = list(rule.args), rule.task_via
    else:
        assert builtin is not None  # policy.decide refuses cmd without args
        if launch.continues:
            template = list(builtin.continued(launch.continues, terminal=launch.terminal))
            via = "arg" if launch.terminal else builtin.task_via
        elif launch.terminal:
            template, via = list(builtin.interactive), "arg"
        else:
            template, via = list(builtin.headless), builtin.task_via
    if rule.skip_permissions and builtin is not None and rule.args is None:
        # Asked for by this device's policy, for this harness: its own skip flag, placed
        # before the task argument (or at the end of the fixed words).
        at = template.index("--") if "--" in template else len(template)
        template[at:at] = builtin.skip_flags[:1]
    elif (
        builtin is not None and rule.args is None and home
        and not launch.terminal  # in a terminal a person answers
    ):  # fmt: skip
        if builtin.prompts == "tool":
            template += _prompt_relay(launch, home)
        elif builtin.prompts == "acp" and not launch.continues:
            # Our ACP client runs the harness's ACP agent mode and answers its permission
            # requests through prompt.ask (harnesses/acp.py); it reads the task from stdin.
            template, via = [*ACP_CLIENT, "--", *builtin.acp], "stdin"
    argv = build_argv(template, task=launch.text, task_via=via, directory=launch.cwd,
                      name=launch.agent, session=launch.session)  # fmt: skip
    return argv, launch.text if via == "stdin" else None


def task_env(base: Mapping[str, str], launch: Launch, home: str) -> dict[str, str]:
    """The task's whole environment (see the module's docstring)."""
    env = {k: v for k, v in base.items() if not k.startswith("SWITCHBOARD_")}
    env.update(launch.rule.env)
    env.update(
        SWITCHBOARD_HOME=home,
        SWITCHBOARD_AGENT=launch.agent,
        SWITCHBOARD_TASK=launch.task,
        SWITCHBOARD_HARNESS=launch.harness,
    )
    return env


async def launch_task(runner: TaskRunner, launch: Launch) -> Run | str:
    """Start an accepted task; return its run, or why it could not start."""
    if launch.continues and launch.rule.args is not None:
        return (f"this device's policy gives {launch.harness} its own args, which have no "
                f"{launch.continues} form")  # fmt: skip
    folder = runner.folder(launch.task)
    folder.mkdir(parents=True, mode=0o700, exist_ok=True)
    home = str(runner.d.settings.home.absolute())
    argv, stdin = command_of(launch, home)
    env = task_env(os.environ, launch, home)
    program = shutil.which(argv[0], path=env.get("PATH"))
    if program is None:
        return f"harness program {argv[0][:80]} not found on this device's PATH"
    argv[0] = program
    root = await asyncio.to_thread(taskgit.top_level, launch.cwd)
    base = await asyncio.to_thread(taskgit.snapshot, root) if root else None
    spec = {"argv": argv, "cwd": launch.cwd, "env": env, "stdin": stdin,
            "wait_for": "piped" if launch.terminal else None}  # fmt: skip
    write_private(folder / "spec.json", json.dumps(spec).encode())
    try:
        proc = None
        if launch.terminal:
            pid, window = await asyncio.to_thread(_in_tmux, launch, folder)
        else:
            proc = _headless(folder, launch.cwd, env)
            pid, window = proc.pid, ""
    except (OSError, RuntimeError) as exc:
        (folder / "spec.json").unlink(missing_ok=True)
        return f"cannot start the task: {exc}"[:300]
    return Run(
        task=launch.task, agent=launch.agent, harness=launch.harness, cwd=launch.cwd,
        requester_device=launch.requester_device, max_runtime=launch.max_runtime,
        grace=launch.grace, wrapper=(pid, start_time(pid)), started_wall=time.time(),
        git_root=root, base_tree=base, window=window, proc=proc,
    )  # fmt: skip


def _headless(folder: Path, cwd: str, env: dict[str, str]) -> subprocess.Popen[bytes]:
    log_path = os.path.join(folder, "output.log")
    log_fd = os.open(log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        return subprocess.Popen(
            wrapper_command(folder),
            cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=log_fd, stderr=log_fd,
            start_new_session=True, close_fds=True,
        )  # fmt: skip
    finally:
        os.close(log_fd)


def tmux_available() -> bool:
    """Whether ``--terminal`` can work here."""
    return shutil.which("tmux") is not None


def _tmux(*args: str) -> str:
    done = subprocess.run(
        ["tmux", *args], capture_output=True, text=True, timeout=TMUX_TIMEOUT, check=False,
        stdin=subprocess.DEVNULL,
    )  # fmt: skip
    if done.returncode != 0:
        raise RuntimeError(f"tmux {args[0]} failed: {done.stderr.strip()[:200]}")
    return done.stdout.strip()


def _in_tmux(launch: Launch, folder: Path) -> tuple[int, str]:
    """Open a window running the wrapper; return its pid and the window's target."""
    if not tmux_available():
        raise RuntimeError("--terminal needs tmux, which is not installed here")
    # Passed as separate arguments, tmux runs the command itself, without a shell.
    command = wrapper_command(folder)
    name = f"{launch.agent}-{launch.task[:4]}"
    fmt = "#{pane_pid} #{session_name}:#{window_index}"
    try:
        _tmux("has-session", "-t", TMUX_SESSION)
    except RuntimeError:
        out = _tmux("new-session", "-d", "-P", "-F", fmt, "-s", TMUX_SESSION, "-n", name,
                    "-c", launch.cwd, "--", *command)  # fmt: skip
    else:
        out = _tmux("new-window", "-d", "-P", "-F", fmt, "-t", f"{TMUX_SESSION}:", "-n", name,
                    "-c", launch.cwd, "--", *command)  # fmt: skip
    pid_text, _, window = out.partition(" ")
    log_path = shlex.quote(os.path.join(folder, "output.log"))
    try:
        _tmux("pipe-pane", "-t", window, "-o", f"cat >> {log_path}")
    finally:
        (folder / "piped").touch(mode=0o600)  # the wrapper starts the program now
    return int(pid_text), window
