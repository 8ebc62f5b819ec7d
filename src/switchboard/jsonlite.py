"""JSON for the paths that start a process (hooks, everyday CLI commands), without ``json``.

Importing the ``json`` package imports ``re`` and compiles seven regular expressions (``re``
brings ``enum``, ``functools`` and ``collections``): about 40 % of a bare interpreter's
start-up, paid by every hook call of every tool call of every agent. The scanner and encoder
that ``json`` itself uses are CPython's C module ``_json``, which imports nothing; this module
drives them with the same settings as ``json.loads`` and ``json.dumps`` (ASCII output, default
separators or compact ones), so the results are the same.

Where ``_json`` is missing (another interpreter), or a document is not one this fast path
takes as it stands (not UTF-8 or invalid JSON), the call goes to ``json`` itself, so
behaviour and error messages are those of ``json`` (``ValueError`` for bad input).
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

_c: Any
try:
    import _json as _c
except ImportError:  # pragma: no cover - not CPython
    _c = None

_WHITESPACE = " \t\n\r"
_CONSTANTS = {"-Infinity": float("-inf"), "Infinity": float("inf"), "NaN": float("nan")}


class _Context:
    """What ``_json.make_scanner`` reads from a ``json.JSONDecoder``: its default settings."""

    strict = True
    object_hook = None
    object_pairs_hook = None
    parse_float = float
    parse_int = int
    parse_constant = _CONSTANTS.__getitem__


def _default(value: object) -> object:
    raise TypeError(f"Object of type {value.__class__.__name__} is not JSON serializable")


_scan: Callable[[str, int], tuple[Any, int]] | None = None


def loads(data: bytes | str) -> Any:
    """``json.loads(data)``.

    Raises:
        ValueError: ``data`` is not one JSON document (``json.JSONDecodeError``).
    """
    global _scan  # noqa: PLW0603 - built on first use, not at import
    if _c is not None:
        try:
            text = data.decode() if isinstance(data, bytes) else data
            if _scan is None:
                _scan = _c.make_scanner(_Context())
            start = len(text) - len(text.lstrip(_WHITESPACE))
            value, end = _scan(text, start)
            if not text[end:].strip(_WHITESPACE):
                return value
        except (StopIteration, ValueError, RecursionError, SystemError):
            # json says what is wrong, in its own words. (Until json.decoder is imported, the
            # C scanner cannot make its error and raises SystemError instead.)
            pass
    import json  # noqa: PLC0415 - only for what the fast path does not take

    return json.loads(data)


def dumps(
    value: object, *, compact: bool = False, ascii: bool = True, indent: int | None = None
) -> str:
    """``json.dumps(value)``; ``compact``: with ``separators=(",", ":")``; ``ascii=False``: with
    ``ensure_ascii=False``; ``indent=N``: with ``indent=N`` (``compact`` does not apply).

    Raises:
        TypeError: ``value`` holds something JSON cannot carry.
        ValueError: ``value`` holds itself (a circular reference).
    """
    if _c is None:  # pragma: no cover - not CPython
        import json  # noqa: PLC0415

        separators = (",", ":") if compact else None
        return json.dumps(value, separators=separators, ensure_ascii=ascii, indent=indent)
    strings = _c.encode_basestring_ascii if ascii else _c.encode_basestring
    if indent is not None:
        return _indented(value, strings, " " * indent)
    key, item = (":", ",") if compact else (": ", ", ")
    # A new encoder each time, as json does: its circular-reference markers are left behind
    # by a call that fails half way.
    encoder = _c.make_encoder({}, _default, strings, None, key, item, False, False, True)
    return "".join(encoder(value, 0))


def _float(value: float) -> str:
    # json's floatstr with allow_nan: NaN and the infinities as JavaScript spells them.
    if value != value:  # noqa: PLR0124 - NaN
        return "NaN"
    if value in (float("inf"), float("-inf")):
        return "Infinity" if value > 0 else "-Infinity"
    return float.__repr__(value)


def _key(key: object) -> str:
    # json's conversion of a dict key, in its order of checks (skipkeys off).
    if isinstance(key, str):
        return key
    if isinstance(key, float):
        return _float(key)
    if key is True or key is False or key is None:
        return {True: "true", False: "false", None: "null"}[key]
    if isinstance(key, int):
        return int.__repr__(key)
    raise TypeError(f"keys must be str, int, float, bool or None, not {key.__class__.__name__}")


def _indented(value: object, strings: Callable[[str], str], step: str) -> str:
    """``value`` as ``json.dumps(value, indent=...)`` writes it (for indented output json uses
    its pure-Python encoder: the C one takes no indent before Python 3.13), in json's order of
    checks; ``strings`` encodes a string, ``step`` is one level of indentation."""
    out: list[str] = []
    seen: set[int] = set()

    def encode(value: object, newline: str) -> None:  # newline: the break and indentation
        if isinstance(value, str):
            out.append(strings(value))
        elif value is None or value is True or value is False:
            out.append("null" if value is None else "true" if value else "false")
        elif isinstance(value, int):
            out.append(int.__repr__(value))
        elif isinstance(value, float):
            out.append(_float(value))
        elif isinstance(value, list | tuple | dict):
            if not value:
                out.append("{}" if isinstance(value, dict) else "[]")
                return
            if id(value) in seen:
                raise ValueError("Circular reference detected")
            seen.add(id(value))
            inner = newline + step
            out.append("{" if isinstance(value, dict) else "[")
            if isinstance(value, dict):
                for number, (key, item) in enumerate(value.items()):
                    out.append(("," if number else "") + inner + strings(_key(key)) + ": ")
                    encode(item, inner)
            else:
                for number, item in enumerate(value):
                    out.append(("," if number else "") + inner)
                    encode(item, inner)
            out.append(newline + ("}" if isinstance(value, dict) else "]"))
            seen.discard(id(value))
        else:
            encode(_default(value), newline)

    encode(value, "\n")
    return "".join(out)
