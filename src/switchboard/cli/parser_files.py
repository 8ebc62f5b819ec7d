"""Parser entries of shared files: ``file send``, ``file get``, ``files`` (and ``files gc``).

``cli.parser.build_parser`` calls ``add_files``; like the parser, this imports nothing heavy.
``file send``'s note comes after ``--`` (``cli.main`` splits it off before parsing).
"""

from __future__ import annotations

import argparse
from typing import Any


def _bytes(text: str) -> int:
    units = {"k": 1024, "m": 1024**2, "g": 1024**3}
    number, unit = (text[:-1], text[-1].lower()) if text[-1:].isalpha() else (text, "")
    try:
        value = int(float(number) * units.get(unit, 1)) if unit in ("", *units) else -1
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a size such as 500M, got {text!r}")
    return value


def add_files(b: Any, sub: Any) -> None:
    """Add ``file`` (``send``, ``get``) and ``files``."""
    group = b.group(sub, "file", "share a file with agents, or save one shared with you")
    p = b.command(
        group,
        "send",
        "files:send",
        "share a file: file send TARGET... PATH [-- NOTE]",
        "Share a file with agents: its bytes stay on this device (and on devices that fetch "
        "it) and travel sealed, device to device; the log and the relay carry only a small "
        "file_shared event. The recipients get a message naming the file, its size, SHA-256, "
        "type and sender. TARGET is as for send: @name, @name:DEV, #room, +tag or @all. A "
        "note may follow '--'.",
        usage="%(prog)s [-h] [--as NAME] [--home DIR] [--name NAME] [--json] "
        "TARGET... PATH [-- NOTE]",
    )
    p.set_defaults(text_words=None)
    p.add_argument("args", nargs="+", metavar="TARGET... PATH", help="recipients, then the file")
    p.add_argument("--name", metavar="NAME", help="share it under this name (default: its own)")
    p.add_argument("--json", action="store_true", help="print the result as one JSON object")
    p = b.command(
        group,
        "get",
        "files:get",
        "save a file shared with you (fetching it if need be)",
        "Save a shared file: fetched from a device that holds it if this one does not, every "
        "chunk and the whole checked against its SHA-256, then written to your downloads "
        "directory (<home>/downloads/<agent>/) or to -o PATH. Shows a progress bar on a "
        "terminal. An existing file of other content is replaced only with --force.",
    )
    p.add_argument("file", metavar="HASH_OR_NAME", help="its SHA-256 (or a prefix) or its name")
    p.add_argument("-o", "--output", metavar="PATH", help="save it here (a file or a directory)")
    p.add_argument("--force", action="store_true", help="replace a file of other content")
    p.add_argument(
        "--json", action="store_true", help="print progress and the result as JSON lines"
    )
    p = b.command(
        sub,
        "files",
        "files:files",
        "list files shared with and by you; files gc drops blobs nothing needs",
        "List the files shared with or by the acting agent (--all: in the whole group): "
        "name, size, sender, whether this device holds it. 'files gc' drops the stored "
        "bytes of files shared more than --max-age days ago or no longer shared at all, "
        "then the least recently used beyond --keep (default: the quota).",
    )
    p.add_argument("action", nargs="?", choices=["gc"], help="gc: collect unneeded blobs")
    p.add_argument("--all", action="store_true", help="every file shared in the group")
    p.add_argument("--keep", type=_bytes, metavar="SIZE", help="gc: keep at most SIZE (500M)")
    p.add_argument("--max-age", type=float, metavar="DAYS", help="gc: drop older (default: 30)")
    p.add_argument("--json", action="store_true", help="print a JSON array (gc: an object)")
