"""The names shared files travel and land under: checked when a file is sent, made safe again
when one is received (a sender's device may be buggy or hostile), and the type they declare."""

from __future__ import annotations

import re
import unicodedata
from typing import Final

from switchboard.errors import UserError

# Longest name kept (bytes of UTF-8): within every file system's limit of 255.
MAX_NAME_BYTES: Final = 200
# Names Windows reserves for devices, with or without an extension (and some tools elsewhere).
RESERVED: Final = frozenset(
    ["con", "prn", "aux", "nul", "clock$", "conin$", "conout$"]
    + [f"{base}{n}" for base in ("com", "lpt") for n in "0123456789¹²³"]
)
_UNSAFE: Final = re.compile(r'[\x00-\x1f\x7f<>:"|?*\\/]')


def check_name(name: str) -> str:
    """A file name to share, or ``UserError`` saying what is wrong with it."""
    if not name or not name.strip():
        raise UserError("file name is empty")
    if "/" in name or "\\" in name:
        raise UserError(f"file name {_shown(name)} must not contain a path (/ or \\)")
    if name in (".", "..") or name.strip(". ") == "":
        raise UserError(f"file name {_shown(name)} is not a name")
    if any(unicodedata.category(c) in ("Cc", "Cf", "Zl", "Zp") for c in name):
        raise UserError(f"file name {_shown(name)} contains control characters or line breaks")
    if _UNSAFE.search(name):
        raise UserError(f'file name {_shown(name)} contains one of <>:"|?*')
    if name.split(".", maxsplit=1)[0].strip().lower() in RESERVED:
        raise UserError(f"file name {_shown(name)} is reserved for a device on Windows")
    if name != name.strip() or name.endswith("."):
        raise UserError(f"file name {_shown(name)} starts or ends with a space or a dot")
    if len(name.encode()) > MAX_NAME_BYTES:
        raise UserError(f"file name of {len(name.encode())} bytes exceeds {MAX_NAME_BYTES}")
    return name


def safe_name(name: str, fallback: str) -> str:
    """A received file's name made safe to create in a downloads directory: its last path
    part, without control characters or reserved characters, never a device or a dot name;
    ``fallback`` when nothing is left."""
    last = re.split(r"[\\/]", name)[-1]
    cleaned = "".join(
        "_" if unicodedata.category(c) in ("Cc", "Cf", "Zl", "Zp") else c for c in last
    )
    cleaned = _UNSAFE.sub("_", cleaned).strip(" .")
    if cleaned.split(".")[0].strip().lower() in RESERVED:
        cleaned = "_" + cleaned
    while len(cleaned.encode()) > MAX_NAME_BYTES:
        cleaned = cleaned[:-1]
    return cleaned or fallback


def mime_of(name: str) -> str:
    """The media type a name's extension implies (``application/octet-stream`` if none)."""
    import mimetypes  # noqa: PLC0415 - only when a file is shared

    kind, _ = mimetypes.guess_type(name, strict=False)
    return kind or "application/octet-stream"


def _shown(name: str) -> str:
    return repr(name[:60])
