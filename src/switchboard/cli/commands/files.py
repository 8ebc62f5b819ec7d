"""``file send``, ``file get`` and ``files`` (``files gc``)."""

from __future__ import annotations

import os
import sys

from switchboard.cli import output
from switchboard.cli.calls import call, params

TYPE_CHECKING = False  # no typing at run time (mypy takes it as true)
if TYPE_CHECKING:
    import argparse
    from typing import Any

    from switchboard.config import Settings

# Hashing and copying a big file into the store takes a while.
SEND_TIMEOUT = 600.0


def send(args: argparse.Namespace, settings: Settings) -> int:
    """Share a file with the targets; print the file's hash and each recipient's state."""
    from switchboard.errors import UserError  # noqa: PLC0415

    *targets, path = args.args
    if not targets:
        raise UserError("give at least one TARGET before the file")
    note = " ".join(args.text_words or [])
    values = params(agent=settings.acting_agent(), to=targets, path=os.path.abspath(path),
                    name=args.name, note=note)  # fmt: skip
    result = call(settings, "file.send", values, timeout=SEND_TIMEOUT)
    if args.json:
        output.print_json(result)
    else:
        print(f"shared {result['name']} ({_size(result['size'])}, sha256 {result['hash']})")
        output.print_lines(output.send_lines(result["message"]))
    return 0


def get(args: argparse.Namespace, settings: Settings) -> int:
    """Fetch and save a file; a progress bar on a terminal, JSON lines with ``--json``."""
    from switchboard.daemon.autostart import connect  # noqa: PLC0415

    out = None if args.output is None else os.path.abspath(os.path.expanduser(args.output))
    values = params(agent=settings.acting_agent(), file=args.file, output=out,
                    force=args.force or None)  # fmt: skip
    bar = _Bar() if not args.json and sys.stderr.isatty() else None
    saved: dict[str, Any] = {}
    try:
        with connect(settings) as client:
            for item in client.stream("file.get", values):
                if "progress" in item:
                    if args.json:
                        output.print_json_line(item)
                    elif bar is not None:
                        bar.show(item["progress"])
                else:
                    saved = item
    finally:
        if bar is not None:
            bar.close()
    if not saved:
        from switchboard.errors import SwitchboardError  # noqa: PLC0415

        raise SwitchboardError("the daemon ended the fetch without saying where the file went")
    if args.json:
        output.print_json_line(saved)
    else:
        print(f"saved {saved['saved']} ({_size(saved['size'])}, sha256 {saved['hash']})")
    return 0


def files(args: argparse.Namespace, settings: Settings) -> int:
    """List shared files, or collect unneeded blobs (``files gc``)."""
    if args.action == "gc":
        max_age = None if args.max_age is None else args.max_age * 86400
        result = call(settings, "files.gc", params(keep_bytes=args.keep, max_age=max_age))
        if args.json:
            output.print_json(result)
        else:
            print(f"removed {len(result['removed'])} blob(s), freed {_size(result['freed_bytes'])}"
                  f", {_size(result['kept_bytes'])} kept")  # fmt: skip
        return 0
    rows = call(settings, "files", params(agent=settings.acting_agent(), all=args.all or None))
    if args.json:
        output.print_json(rows)
    elif rows:
        output.print_lines(output.table(
            ("HASH", "NAME", "SIZE", "FROM", "WHEN", "HERE"),
            [(r["hash"][:12], output.clip(r["name"], 40), _size(r["size"]), r["from"],
              output.when(r["ts"]), r["path"] or ("held" if r["held"] else "-"))
             for r in rows],
        ))  # fmt: skip
    else:
        print("no files shared with or by you")
    return 0


def _size(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024  # type: ignore[assignment]
    return f"{n} B"


class _Bar:
    """A rich progress bar on stderr, made on the first progress item (rich is imported only
    then: a `file get` of a file already here never pays for it)."""

    def __init__(self) -> None:
        self._progress: Any = None
        self._task: Any = None

    def show(self, p: dict[str, Any]) -> None:
        if self._progress is None:
            from rich.console import Console  # noqa: PLC0415
            from rich.progress import (  # noqa: PLC0415
                BarColumn,
                DownloadColumn,
                Progress,
                TextColumn,
                TimeRemainingColumn,
                TransferSpeedColumn,
            )

            self._progress = Progress(
                TextColumn("{task.description}"), BarColumn(), DownloadColumn(),
                TransferSpeedColumn(), TimeRemainingColumn(),
                console=Console(stderr=True), transient=True,
            )  # fmt: skip
            self._progress.start()
            self._task = self._progress.add_task(p["name"][:40], total=p["size"] or None)
        self._progress.update(self._task, completed=p["bytes"])

    def close(self) -> None:
        if self._progress is not None:
            self._progress.stop()
