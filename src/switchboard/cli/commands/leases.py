"""``lease acquire|release|list|check`` and ``lease git-hook install``.

Lease paths are relative to the repository's top directory and name the repository by its
identity (``switchboard.repos``: origin URL, else root commit), so agents of one repository on
several machines, in folders of any name, see each other's leases. Outside a git repository,
paths are taken as given.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from switchboard.cli import output
from switchboard.cli.calls import call
from switchboard.errors import Forbidden, UserError
from switchboard.repos import repository

TYPE_CHECKING = False  # no typing at run time (mypy takes it as true)
if TYPE_CHECKING:
    import argparse
    from typing import Any

    from switchboard.config import Settings

#: Set (to anything but empty) to commit paths others lease exclusively.
OVERRIDE_ENV = "SWITCHBOARD_LEASE_OVERRIDE"
HOOK_MARKER = "# switchboard lease hook"


def _relative(paths: list[str], top: Path | None) -> list[str]:
    if top is None:
        return paths
    out = []
    for path in paths:
        full = os.path.normpath(os.path.join(os.getcwd(), path))
        relative = os.path.relpath(full, top)
        if relative.startswith(".."):
            raise UserError(f"{path} is outside the repository {top}")
        out.append(relative)
    return out


def _lease_line(lease: dict[str, Any]) -> str:
    kind = "exclusive" if lease.get("exclusive") else "shared"
    reason = f"  ({lease['reason']})" if lease.get("reason") else ""
    return (
        f"{lease['path']}  {kind}  {lease['holder']}  until {output.when(lease['expires'])}{reason}"
    )


def acquire(args: argparse.Namespace, settings: Settings) -> int:
    """Lease paths of this repository."""
    top, repo = repository()
    values = {
        "agent": settings.acting_agent(),
        "paths": _relative(args.paths, top),
        "repo": repo,
        "ttl": args.ttl,
        "reason": args.reason,
        "exclusive": args.exclusive,
    }
    result = call(settings, "lease.acquire", values)
    if args.json:
        output.print_json(result)
        return 0
    for lease in result["leases"]:
        print("leased " + _lease_line(lease))
    for warning in result["warnings"]:
        print(f"warning: {warning}", file=sys.stderr)
    return 0


def release(args: argparse.Namespace, settings: Settings) -> int:
    """Release the acting agent's leases."""
    top, repo = repository()
    values = {"agent": settings.acting_agent(), "paths": _relative(args.paths, top), "repo": repo}
    result = call(settings, "lease.release", values)
    if args.json:
        output.print_json(result)
        return 0
    for lease in result["released"]:
        print("released " + _lease_line(lease))
    return 0


def list_leases(args: argparse.Namespace, settings: Settings) -> int:
    """List active leases of this repository (``--all``: everything)."""
    _, repo = repository()
    leases = call(settings, "lease.list", {"repo": "" if args.all else repo, "all": args.all})
    if args.json:
        output.print_json(leases)
    elif leases:
        rows = (
            (lease["path"], "exclusive" if lease["exclusive"] else "shared", lease["holder"],
             lease["state"], output.when(lease["expires"]), lease["reason"])
            for lease in leases
        )  # fmt: skip
        output.print_lines(output.table(("PATH", "KIND", "HOLDER", "STATE", "UNTIL", "WHY"), rows))
    else:
        print("no leases")
    return 0


def _staged(top: Path) -> list[str]:
    import subprocess  # noqa: PLC0415 - only the commit hook needs it

    done = subprocess.run(
        ["git", "diff", "--cached", "--name-only", "-z"],
        cwd=top,
        capture_output=True,
        check=False,
    )
    if done.returncode != 0:
        raise UserError(f"git diff failed: {done.stderr.decode(errors='replace').strip()}")
    return [name for name in done.stdout.decode(errors="replace").split("\0") if name]


def check(args: argparse.Namespace, settings: Settings) -> int:
    """Exit 1 if any path is leased exclusively by another agent."""
    if os.environ.get(OVERRIDE_ENV):
        print(f"switchboard: lease check skipped ({OVERRIDE_ENV} is set)", file=sys.stderr)
        if args.json:
            output.print_json({"ok": True, "conflicts": [], "skipped": True})
        return 0
    top, repo = repository()
    paths = _relative(args.paths, top)
    if args.staged:
        if top is None:
            raise UserError("not in a git repository")
        paths += _staged(top)
    if not paths:
        if args.json:
            output.print_json({"ok": True, "conflicts": []})
        return 0
    result = call(settings, "lease.check", {"agent": settings.acting_agent(), "paths": paths,
                                            "repo": repo})  # fmt: skip
    if args.json:
        output.print_json(result)  # and still exit 1 below when blocked
    if not result["ok"]:
        found = "; ".join(c["message"] for c in result["conflicts"])
        raise Forbidden(f"blocked: {found}. To commit anyway: {OVERRIDE_ENV}=1 git commit ...")
    return 0


def hook_install(args: argparse.Namespace, settings: Settings) -> int:
    """Write a pre-commit hook that runs ``lease check --staged``."""
    import subprocess  # noqa: PLC0415

    top, _ = repository()
    if top is None:
        raise UserError("not in a git repository")
    done = subprocess.run(
        ["git", "rev-parse", "--git-path", "hooks"], cwd=top, capture_output=True, check=False
    )
    if done.returncode != 0:
        raise UserError("cannot find the repository's hooks directory")
    hooks = (top / done.stdout.decode().strip()).resolve()
    hook = hooks / "pre-commit"
    if hook.exists() and HOOK_MARKER not in hook.read_text(errors="replace") and not args.force:
        raise UserError(f"{hook} exists; add a line running 'switchboard lease check --staged'"
                        " to it, or pass --force to replace it")  # fmt: skip
    hooks.mkdir(parents=True, exist_ok=True)
    hook.write_text(
        "#!/bin/sh\n"
        f"{HOOK_MARKER}: blocks a commit touching paths another agent leases exclusively.\n"
        f"# Override once with: {OVERRIDE_ENV}=1 git commit ...\n"
        f'exec "{sys.executable}" -m switchboard lease check --staged\n'
    )
    hook.chmod(0o755)
    if args.json:
        output.print_json({"installed": str(hook)})
    else:
        print(f"installed {hook}")
    return 0
