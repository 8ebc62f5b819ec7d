"""``invite`` (token, code, words, QR, link; ``invite list | revoke``) and ``discover``.

``invite`` prints what to pass on alone on the last line, whatever the form, so
``CODE=$(switchboard invite --code | tail -n 1)`` works like the token. With ``--confirm`` it
then stays, shows each device that proved the code (name, short id, key fingerprint) and asks
before admitting it; the code is already printed by then.
"""

from __future__ import annotations

import sys

from switchboard.cli import output
from switchboard.cli.calls import call, params
from switchboard.errors import UserError

TYPE_CHECKING = False  # no typing at run time (mypy takes it as true)
if TYPE_CHECKING:
    import argparse
    from typing import Any

    from switchboard.config import Settings

# Seconds between the questions' waits (each ``invite.pending`` call waits this long).
_PENDING_WAIT = 20.0


def invite(args: argparse.Namespace, settings: Settings) -> int:
    """Print an invite (or list or revoke the open ones)."""
    if args.action == "list":
        return _list(args, settings)
    if args.action == "revoke":
        if not args.id:
            raise UserError("invite revoke needs the invite's ID (see 'switchboard invite list')")
        row = call(settings, "invite.revoke", {"id": args.id})
        output.print_json(row) if args.json else print(f"invite {row['id']} revoked")
        return 0
    if args.id:
        raise UserError(f"unexpected argument {args.id!r}")
    if args.kind is None:
        if args.confirm or args.relay:
            raise UserError("--confirm and --relay go with --code, --words, --qr or --link")
        result = call(settings, "invite", params(group=args.group))
        output.print_json(result) if args.json else output.print_lines([result["invite"]])
        return 0
    values = params(
        kind=args.kind, ttl=args.ttl, uses=args.uses, confirm=args.confirm, relay=args.relay,
        group=args.group,
    )  # fmt: skip
    made = call(settings, "invite.create", values)
    if args.json:
        output.print_json(made)
    else:
        _show(made, args.kind)
    if args.confirm:
        _confirm_joiners(settings, made["id"])
    return 0


def _show(made: dict[str, Any], kind: str) -> None:
    uses = made["uses_left"]
    print(
        f"invite {made['id']} on {made['relay']}: expires {made['expires']}, "
        f"{uses} device{'s' if uses != 1 else ''}; on the other device: switchboard join "
        + ("LINK" if kind in ("qr", "link") else f"'{made['invite']}' --relay {made['relay']}"),
        file=sys.stderr,
    )
    if kind == "qr":
        import segno  # noqa: PLC0415 - only for --qr

        segno.make(made["invite"], error="m").terminal(out=sys.stdout, compact=True)
    print(made["invite"], flush=True)


def _confirm_joiners(settings: Settings, invite_id: str) -> None:
    while True:
        waiting = call(
            settings,
            "invite.pending",
            {"id": invite_id, "wait": _PENDING_WAIT},
            timeout=_PENDING_WAIT + 10,
        )
        if waiting is None:
            continue
        if waiting.get("ended"):
            print(f"invite {invite_id} ended", file=sys.stderr)
            return
        question = (
            f"{waiting['name']} ({waiting['device']}) wants to join, key fingerprint "
            f"{waiting['fingerprint']}. Admit? [y/N] "
        )
        print(question, end="", file=sys.stderr, flush=True)
        answer = sys.stdin.readline().strip().lower()
        admit = answer in ("y", "yes")
        values = {"id": invite_id, "attempt": waiting["attempt"], "admit": admit}
        try:
            call(settings, "invite.admit", values)
        except UserError as exc:
            print(f"too late: {exc}", file=sys.stderr)
        else:
            print("admitted" if admit else "refused", file=sys.stderr)


def _list(args: argparse.Namespace, settings: Settings) -> int:
    rows = call(settings, "invite.list")
    if args.json:
        output.print_json(rows)
        return 0
    if not rows:
        print("no pairing invites (make one with 'switchboard invite --code')")
        return 0
    for row in rows:
        joined = ", ".join(f"{j['name']} ({j['device']})" for j in row["joined"]) or "-"
        print(
            f"{row['id']:>4}  {row['kind']:<5}  {row['state']:<10}  expires {row['expires']}  "
            f"uses left {row['uses_left']}  wrong {row['wrong']}  joined {joined}"
        )
    return 0


def discover(args: argparse.Namespace, settings: Settings) -> int:
    """List relays and devices announced on the LAN."""
    from switchboard import runloop  # noqa: PLC0415 - lazy: only this command needs it
    from switchboard.transports import mdns  # noqa: PLC0415 - zeroconf only when used

    found = runloop.run(mdns.browse(args.wait))
    rows: list[dict[str, Any]] = [
        {"kind": f.kind, "name": f.name, "id": f.id, "fingerprint": f.fingerprint,
         "url": f.url, "addresses": list(f.addresses), "port": f.port}
        for f in found
    ]  # fmt: skip
    if args.json:
        output.print_json(rows)
    elif not rows:
        print("nothing announced on the LAN (relay serve --announce; [discovery] announce)")
    else:
        for row in rows:
            where = row["url"] or ", ".join(str(a) for a in row["addresses"])
            print(
                f"{row['kind']:<6}  {row['name']:<16}  {row['id']:<6}  {row['fingerprint']}", where
            )
    return 0
