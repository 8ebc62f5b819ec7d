"""Parser entries of delegation: spawn (and spawn allow|deny|policy), tasks, task ...,
approvals, approve, deny.

``cli.parser.build_parser`` calls ``add_tasks``; like the parser, this imports nothing heavy.
``spawn``'s text comes after ``--`` (``cli.main`` splits it off before parsing, because
``spawn`` also has sub-commands).
"""

from __future__ import annotations

import argparse
from typing import Any, Final

HARNESSES: Final = ("claude", "codex", "gemini", "opencode", "pi", "cmd")  # tasks.commands


def _json(parser: argparse.ArgumentParser, what: str = "a JSON array") -> None:
    parser.add_argument("--json", action="store_true", help=f"print {what}")


def add_tasks(b: Any, sub: Any) -> None:
    """Add ``spawn``, ``tasks`` and ``task``."""
    _add_spawn(b, sub)
    p = b.command(sub, "tasks", "tasks:list_tasks", "list tasks of every device")
    p.add_argument("--all", action="store_true", help="also tasks that ended over an hour ago")
    _json(p)
    _add_task(b, sub)
    _add_approvals(b, sub)


def _add_spawn(b: Any, sub: Any) -> None:
    spawn = sub.add_parser(
        "spawn",
        help="start an agent on this device or another one, and follow it",
        description=(
            "Start an agent with a task: on this device, or with --on on another one whose "
            "spawn policy allows this device (spawn allow). It runs headless in the "
            "harness's non-interactive mode (or, with --terminal, interactive in a tmux "
            "window), as an agent of the group that receives messages. Prints the task id "
            "and follows its progress; Ctrl-C detaches and leaves it running. The task text "
            "comes after --."
        ),
        usage="%(prog)s [--on DEV] [--harness H] [--dir PATH] [--name NAME] [--tag T] "
        "[--terminal] [--detach] [--json] -- TEXT",
        parents=[b.common],
        allow_abbrev=False,
    )
    spawn.set_defaults(handler="tasks:spawn", command_parser=spawn, text_words=None)
    spawn.add_argument("--on", metavar="DEV", help="the device to run on (default: this one)")
    spawn.add_argument(
        "--harness", choices=HARNESSES, default="claude", help="the agent's harness (claude)"
    )
    spawn.add_argument("--dir", metavar="PATH", help="its working directory (default: here)")
    spawn.add_argument("--name", metavar="NAME", help="its agent name (default: a free one)")
    spawn.add_argument(
        "--tag", metavar="T", action="append", default=[], help="a tag for it (repeatable)"
    )
    spawn.add_argument("--terminal", action="store_true", help="interactive, in a tmux window")
    spawn.add_argument("--detach", action="store_true", help="print the task id, do not follow")
    _json(spawn, "the spawn result as one JSON object (implies --detach)")
    verbs = spawn.add_subparsers(dest="spawn_command", metavar="COMMAND", prog=spawn.prog)
    p = b.command(
        verbs,
        "allow",
        "tasks:allow",
        "let a device spawn agents here (harnesses and directories)",
        "Let DEVICE (a short id, a name, or 'local' for this device's own user) start agents "
        "on this device: adds the harnesses (default for a new device: claude, codex, gemini, "
        "opencode) and directories it may use to spawn.toml in this device's home. A new "
        "device needs at least one --dir, unless it is only let answer prompts (--answer) or "
        "given only --term-read/--term-type: the agents whose terminals it may read, or type "
        "into (switchboard term).",
    )
    p.add_argument("device", metavar="DEVICE", help="short id, name, or 'local'")
    p.add_argument("--harness", action="append", default=[], choices=HARNESSES, help="repeatable")
    p.add_argument(
        "--dir", metavar="PATH", action="append", default=[], help="an allowed directory (repeat)"
    )
    p.add_argument(
        "--answer",
        metavar="AGENT",
        nargs="?",
        const="*",
        action="append",
        default=[],
        help="let it answer the permission prompts of this device's agents named AGENT (a "
        "glob; default: all of them), started by hand or by anyone (repeatable)",
    )
    for flag, what in (
        ("--term-read", "an agent (name or glob) whose terminal it may read (repeatable)"),
        ("--term-type", "an agent whose terminal it may type into, and read (repeatable)"),
    ):
        p.add_argument(flag, metavar="AGENT", action="append", default=[], help=what)
    _json(p, "the policy as one JSON object")
    p = b.command(verbs, "deny", "tasks:deny", "take a device's permission to spawn here away")
    p.add_argument("device", metavar="DEVICE", help="short id, name, or 'local'")
    _json(p, "the policy as one JSON object")
    p = b.command(verbs, "policy", "tasks:show_policy", "show who may spawn what where here")
    _json(p, "the policy as one JSON object")


def _add_task(b: Any, sub: Any) -> None:
    task = b.group(sub, "task", "show, follow, nudge, stop or kill one task")
    p = b.command(task, "show", "tasks:show", "a task's state, agent, output tail and result")
    p.add_argument("id", metavar="ID", help="the task id (or a unique start of it)")
    p.add_argument("--patch", action="store_true", help="print its patch (git) alone")
    _json(p, "the task as one JSON object")
    p = b.command(task, "logs", "tasks:logs", "print a task's output, streamed from its device")
    p.add_argument("id", metavar="ID", help="the task id")
    p.add_argument("--follow", "-f", action="store_true", help="keep printing until it ends")
    p = b.command(
        task, "nudge", "tasks:nudge", "send the task's agent a message (pushed mid-turn)",
        usage="%(prog)s ID -- TEXT",
    )  # fmt: skip
    p.add_argument("id", metavar="ID", help="the task id")
    p.add_argument("text", metavar="TEXT", nargs="+", help="the message")
    _json(p, "the send result as one JSON object")
    for verb, help in (
        ("stop", "stop a task: SIGTERM, then SIGKILL after the policy's grace"),
        ("kill", "kill a task's processes at once"),
    ):
        p = b.command(task, verb, f"tasks:{verb}", help)
        p.add_argument("id", metavar="ID", help="the task id")
        _json(p, "the answer as one JSON object")


def _add_approvals(b: Any, sub: Any) -> None:
    p = b.command(sub, "approvals", "tasks:approvals", "list permission prompts pending anywhere")
    _json(p)
    p = b.command(sub, "approve", "tasks:approve", "allow a pending permission prompt")
    p.add_argument("id", metavar="ID", help="the prompt id (or its task's id)")
    _json(p, "the answer as one JSON object")
    p = b.command(sub, "deny", "tasks:deny_prompt", "deny a pending permission prompt")
    p.add_argument("id", metavar="ID", help="the prompt id (or its task's id)")
    p.add_argument("--reason", metavar="TEXT", default="", help="why (the agent sees it)")
    _json(p, "the answer as one JSON object")


def add_handoff(b: Any, sub: Any) -> None:
    """Add ``handoff``."""
    p = b.command(
        sub,
        "handoff",
        "handoff:handoff",
        "hand an agent's work to a successor on another device, git changes included",
        "Start a successor on DEV (through DEV's spawn policy, as spawn does) with a brief: "
        "the agent's summary, its last exchanges, its recent messages and open requests, and "
        "its branch and last commit. The uncommitted changes of its checkout are applied to "
        "DEV's checkout of the same repository first; a file with local changes there is a "
        "conflict, reported, and nothing is changed. The original shows handed_off, and "
        "messages to it are offered to the successor. Run it on the agent's own device.",
    )
    p.add_argument("who", metavar="AGENT", help="the agent to hand off (an agent of this device)")
    p.add_argument("--to", metavar="DEV", required=True, help="the device the successor runs on")
    p.add_argument("--dir", metavar="PATH", help="its directory there (default: the same path)")
    p.add_argument("--harness", choices=HARNESSES, help="its harness (default: the original's)")
    p.add_argument("--name", metavar="NAME", help="its name (default: the original's)")
    p.add_argument("--note", metavar="TEXT", default="", help="a word for the successor")
    _json(p, "the result as one JSON object")


def add_plans(b: Any, sub: Any) -> None:
    """Add ``run`` (a plan of tasks), ``plans`` and ``plan show``."""
    p = b.command(
        sub, "run", "plans:run", "run a plan of tasks across devices (a TOML task graph)",
        "Run the tasks of PLAN.toml ([[task]] tables: name, prompt, harness, device, dir, "
        "depends_on) on their devices, each through its device's spawn policy; a task starts "
        "once the tasks it depends on completed, and is skipped (with the reason) when one "
        "failed or was refused. The plan is in the log: it carries on when this device's "
        "daemon restarts. Follows the plan and prints its report; exits 0 when every task "
        "completed. With --dry-run, prints each task's device and that device's policy "
        "verdict, and runs nothing.",
    )  # fmt: skip
    p.add_argument("file", metavar="PLAN.toml", help="the plan file")
    p.add_argument("--dry-run", action="store_true", help="only ask each device's policy")
    p.add_argument("--detach", action="store_true", help="print the plan id, do not follow")
    _json(p, "the report as one JSON object (at the end, unless --detach)")
    p = b.command(sub, "plans", "plans:list_plans", "list plans of every device")
    _json(p)
    plan = b.group(sub, "plan", "show one plan")
    p = b.command(plan, "show", "plans:show", "a plan's report: each task's state and why")
    p.add_argument("id", metavar="ID", help="the plan id (or a unique start of it)")
    p.add_argument("--wait", action="store_true", help="wait until the plan has ended")
    _json(p, "the report as one JSON object")


def add_resume(b: Any, sub: Any) -> None:
    """Add ``resume`` and ``fork``."""
    p = b.command(
        sub,
        "resume",
        "resume:resume",
        "restart a stopped agent's harness session as the same agent",
        "Continue the agent's last harness session with the harness's own resume (Claude "
        "Code, Codex, Gemini CLI, OpenCode, Pi), through this device's spawn policy as spawn "
        "does: same name, same directory, its unread messages as the first prompt. Refused "
        "while it runs, or when no session of it is known. Run it on the agent's own device; "
        "--on DEV (Claude Code only) carries the session file to DEV and continues it there.",
    )
    p.add_argument("who", metavar="AGENT", help="the stopped agent (an agent of this device)")
    p.add_argument("--on", metavar="DEV", help="where it continues (default: here)")
    p.add_argument("--terminal", action="store_true", help="in a tmux window (interactive)")
    _json(p, "the result as one JSON object")
    p = b.command(
        sub,
        "fork",
        "resume:fork",
        "start a new agent from a copy of an agent's harness session",
        "Continue a copy of the agent's last harness session (the harness's own fork: Claude "
        "Code, Codex, OpenCode, Pi) as a new agent in PATH, through this device's spawn policy.",
    )
    p.add_argument("who", metavar="AGENT", help="the agent whose session is copied")
    p.add_argument("--on", metavar="DEV", help="where it runs (another device: Claude Code only)")
    p.add_argument("--dir", metavar="PATH", required=True, help="the new agent's directory")
    p.add_argument("--name", metavar="NAME", help="its name (default: AGENT-fork)")
    p.add_argument("--terminal", action="store_true", help="in a tmux window (interactive)")
    _json(p, "the result as one JSON object")
