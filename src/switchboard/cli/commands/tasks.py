"""``spawn`` (and ``spawn allow|deny|policy``), ``tasks``, ``task show|logs|nudge|stop|kill``,
``approvals``, ``approve``, ``deny``."""

from __future__ import annotations

import contextlib
import os
import sys
from typing import TYPE_CHECKING, Any

from switchboard.cli import output
from switchboard.cli.calls import call, params
from switchboard.daemon.autostart import connect
from switchboard.errors import UserError

if TYPE_CHECKING:
    import argparse

    from switchboard.config import Settings

# States a task ends in; a follower stops at the first.
_FINAL = frozenset({"refused", "completed", "failed", "stopped", "killed", "lost"})


def spawn(args: argparse.Namespace, settings: Settings) -> int:
    """Ask for a task, print its id, and follow it until it ends or Ctrl-C detaches."""
    text = " ".join(args.text_words or [])
    if not text.strip():
        args.command_parser.error("no task text: spawn [OPTIONS] -- TEXT")
    directory = args.dir
    if directory is None and not args.on:
        directory = os.getcwd()  # here, for this device; another device's default is its own
    elif directory is not None and not args.on:
        directory = os.path.abspath(os.path.expanduser(directory))
    values = params(
        agent=settings.acting_agent(), on=args.on, harness=args.harness, dir=directory,
        name=args.name, tags=args.tag, terminal=args.terminal, text=text,
    )  # fmt: skip
    with connect(settings) as client:
        newest = client.call("events", {"last": 1, "all_rooms": True})
        result = client.call("spawn", values)
        if args.json:
            output.print_json(result)
            return 0 if result["state"] != "refused" else 1
        print(f"task {result['id']} {_state_text(result)}", flush=True)
        if result["state"] in _FINAL:
            return 0 if result["state"] == "completed" else 1
        if args.detach:
            return 0
        after = newest[-1]["id"] if newest else 0
        where = f"type LIKE 'task_%' AND json_extract(data, '$.task') = '{result['id']}'"
        try:
            for event in client.stream("events.follow", {"where": where, "after": after}):
                state = _follow_line(event)
                if state is not None:
                    return 0 if state == "completed" else 1
        except KeyboardInterrupt:
            print(f"\ndetached; task {result['id']} keeps running "
                  f"(switchboard task show {result['id']})", file=sys.stderr)  # fmt: skip
    return 0


def _state_text(result: dict[str, Any]) -> str:
    if result["state"] == "refused":
        return f"refused: {result.get('reason', '')}"
    if result["state"] == "failed":
        return f"failed: {result.get('reason', '')}"
    return f"{result['state']} as {result.get('agent', '?')} in {result.get('dir', '?')}"


def _follow_line(event: dict[str, Any]) -> str | None:
    """Print one task event for a person; return the final state when it ended the task."""
    data, kind = event["data"], event["type"]
    if kind == "task_started":
        print(f"running (pid {data['pid']})" + (f" in tmux {data['window']}" if data.get(
            "window") else ""), flush=True)  # fmt: skip
    elif kind == "task_progress":
        print(f"  {data['text']}", flush=True)
    elif kind == "task_blocked":
        print(f"blocked: {data.get('tool', '')} {data.get('detail', '')}".rstrip(), flush=True)
    elif kind == "task_unblocked":
        print(f"prompt answered: {data.get('answer')}", flush=True)
    elif kind == "task_interrupted":
        print(f"{data.get('how')} asked", flush=True)
    elif kind == "task_ended":
        state = str(data["state"])
        status = data.get("exit_status")
        extra = f" (exit status {status})" if status is not None else ""
        reason = f": {data['reason']}" if data.get("reason") else ""
        print(f"{state}{extra}{reason}", flush=True)
        if data.get("diff_stat"):
            print(data["diff_stat"].rstrip(), flush=True)
        if data.get("result"):
            print("--- result ---\n" + data["result"], flush=True)
        return state
    elif kind == "task_refused":
        print(f"refused: {data.get('reason')}", flush=True)
        return "refused"
    return None


# -- policy --------------------------------------------------------------------------------------


def allow(args: argparse.Namespace, settings: Settings) -> int:
    """Let a device spawn here."""
    dirs = [os.path.abspath(os.path.expanduser(d)) for d in args.dir]
    result = call(settings, "spawn.allow", {"device": args.device, "harness": args.harness,
                                            "dir": dirs, "answer": args.answer,
                                            "term_read": args.term_read,
                                            "term_type": args.term_type})  # fmt: skip
    return _print_policy(args, result)


def deny(args: argparse.Namespace, settings: Settings) -> int:
    """Take a device's permission to spawn away."""
    result = call(settings, "spawn.deny", {"device": args.device})
    if not args.json and not result["changed"]:
        print(f"{args.device} had no permission to spawn here", file=sys.stderr)
    return _print_policy(args, result["policy"])


def show_policy(args: argparse.Namespace, settings: Settings) -> int:
    """Show the spawn policy."""
    return _print_policy(args, call(settings, "spawn.policy", {}))


def _grant_line(who: str, grant: dict[str, Any]) -> str:
    if not grant["allowed"]:
        return f"{who}: not allowed"
    return (f"{who}: harnesses {', '.join(grant['harnesses']) or '-'}; dirs "
            f"{', '.join(grant['dirs']) or '-'}; answers {', '.join(grant['answer']) or '-'}"
            + ("" if grant["answer_own"] else "; not its own tasks' prompts")
            + (f"; reads terminals {', '.join(grant['term_read'])}" if grant.get("term_read")
               else "")
            + (f"; types into terminals {', '.join(grant['term_type'])}"
               if grant.get("term_type") else ""))  # fmt: skip


def _print_policy(args: argparse.Namespace, policy: dict[str, Any]) -> int:
    if args.json:
        output.print_json(policy)
        return 0
    lines = [
        f"max_tasks {policy['max_tasks']}, max_runtime {policy['max_runtime']:g} s, "
        f"grace {policy['grace']:g} s",
        _grant_line("local", policy["local"]),
    ]
    lines += [_grant_line(f"{d['device']} {d['name']}".rstrip(), d) for d in policy["devices"]]
    if not policy["devices"]:
        lines.append("no other device may spawn here")
    for name, rule in policy["harnesses"].items():
        args_text = " ".join(rule["args"]) if rule["args"] else "(built-in)"
        skip = "; skips its permission prompts" if rule["skip_permissions"] else ""
        lines.append(f"harness {name}: {args_text} (task on {rule['task']}){skip}")
    output.print_lines(lines)
    return 0


# -- tasks ---------------------------------------------------------------------------------------


def list_tasks(args: argparse.Namespace, settings: Settings) -> int:
    """List tasks of every device."""
    rows = call(settings, "tasks", {"all": args.all})
    if args.json:
        output.print_json(rows)
        return 0
    if not rows:
        print("no tasks" + ("" if args.all else " (--all: also older ones)"))
        return 0
    table = (
        (t["id"], t["device"], t["state"], t["harness"], t["agent"], _runtime(t["runtime"]),
         output.clip(t["text"], 40))
        for t in rows
    )  # fmt: skip
    output.print_lines(output.table(("ID", "DEVICE", "STATE", "HARNESS", "AGENT", "TIME",
                                     "TASK"), table))  # fmt: skip
    return 0


def _runtime(seconds: Any) -> str:
    if seconds is None:
        return "-"
    seconds = int(seconds)
    return f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"


def show(args: argparse.Namespace, settings: Settings) -> int:
    """Show one task (``--patch``: its patch alone, for ``> change.patch``)."""
    if args.patch:
        result = call(settings, "task.patch", {"task": args.id})
        if args.json:
            output.print_json(result)
        else:
            sys.stdout.write(result["patch"])
        return 0
    task = call(settings, "task.show", {"task": args.id})
    if args.json:
        output.print_json(task)
        return 0
    fields = [
        ("task", task["id"]), ("state", task["state"]), ("device", task["device"]),
        ("harness", task["harness"]), ("agent", task["agent"]),
        ("requester", task["requester"]), ("directory", task["dir"]),
        ("requested", output.when(task["requested"])), ("started", output.when(task["started"])),
        ("runtime", _runtime(task["runtime"])), ("exit status", task["exit_status"]),
        ("reason", task["reason"]), ("window", task["window"]),
        ("prompt", _prompt(task["prompt"])), ("text", task["text"]),
    ]  # fmt: skip
    lines = [f"{name:<10} {value}" for name, value in fields if value not in (None, "")]
    if task["diff_stat"]:
        lines += ["", task["diff_stat"].rstrip()]
    tail = task["output"] if task["output"] is not None else task["progress"]
    if tail:
        lines += ["", "--- output (last lines) ---", tail]
    if task["result"] and task["state"] in _FINAL:
        lines += ["", "--- result ---", task["result"]]
    output.print_lines(lines)
    return 0


def _prompt(prompt: dict[str, Any] | None) -> str:
    if not prompt:
        return ""
    return f"{prompt.get('tool', '')} {prompt.get('detail', '')} ({prompt.get('id')})".strip()


def logs(args: argparse.Namespace, settings: Settings) -> int:
    """Print a task's output (``--follow``: until it ends; Ctrl-C stops quietly)."""
    with connect(settings) as client, contextlib.suppress(KeyboardInterrupt):
        for piece in client.stream("task.logs", {"task": args.id, "follow": args.follow}):
            sys.stdout.write(piece["text"])
            sys.stdout.flush()
    return 0


def nudge(args: argparse.Namespace, settings: Settings) -> int:
    """Send the task's agent a message."""
    text = " ".join(args.text)
    if not text.strip():
        raise UserError("nudge text is empty")
    result = call(settings, "task.nudge", {"agent": settings.acting_agent(), "task": args.id,
                                           "text": text})  # fmt: skip
    if args.json:
        output.print_json(result)
    else:
        output.print_lines(output.send_lines(result))
    return 0


def stop(args: argparse.Namespace, settings: Settings) -> int:
    """Stop a task (graceful, then forced)."""
    return _interrupt(args, settings, "task.stop")


def kill(args: argparse.Namespace, settings: Settings) -> int:
    """Kill a task."""
    return _interrupt(args, settings, "task.kill")


def _interrupt(args: argparse.Namespace, settings: Settings, method: str) -> int:
    result = call(settings, method, {"agent": settings.acting_agent(), "task": args.id})
    if args.json:
        output.print_json(result)
    else:
        print(f"task {result['id']}: {result['asked']} asked")
    return 0


# -- permission prompts --------------------------------------------------------------------------


def approvals(args: argparse.Namespace, settings: Settings) -> int:
    """List the permission prompts pending on every device."""
    rows = call(settings, "approvals", {})
    if args.json:
        output.print_json(rows)
    elif not rows:
        print("no pending permission prompts")
    else:
        table = ((r["prompt"], r["task"] or "-", r["agent"], r["tool"],
                  output.clip(r["detail"], 50), output.when(r["asked"])) for r in rows)  # fmt: skip
        output.print_lines(output.table(("PROMPT", "TASK", "AGENT", "TOOL", "ASKS", "SINCE"),
                                        table))  # fmt: skip
    return 0


def approve(args: argparse.Namespace, settings: Settings) -> int:
    """Allow a prompt."""
    return _answer(args, settings, "allow", "")


def deny_prompt(args: argparse.Namespace, settings: Settings) -> int:
    """Deny a prompt."""
    return _answer(args, settings, "deny", args.reason)


def _answer(args: argparse.Namespace, settings: Settings, answer: str, reason: str) -> int:
    values = {"agent": settings.acting_agent(), "prompt": args.id, "answer": answer,
              "reason": reason}  # fmt: skip
    result = call(settings, "prompt.answer", values)
    if args.json:
        output.print_json(result)
    else:
        of = f"task {result['task']}" if result.get("task") else result.get("agent", "")
        print(f"prompt {result['prompt']} of {of}: {result['answer']}")
    return 0
