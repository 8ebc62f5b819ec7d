"""Edit JSON and JSONC (comments, trailing commas) config files as text, keeping everything else.

Harness configs are the user's files: ``~/.claude.json``, ``settings.json``, ``hooks.json``,
``opencode.jsonc`` may hold comments, odd formatting and entries we know nothing about. We never
re-serialise them. ``JsonDoc`` parses the text into nodes that remember their spans and makes
each edit (set a member, append an array item, delete either) as a splice of the text, in the
file's own indentation. A removal undoes the matching insertion byte for byte, so install
followed by uninstall gives back the original text.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from switchboard.errors import UserError

_WS = " \t\r\n"
_LITERALS = {"true": True, "false": False, "null": None}
_NUMBER = re.compile(r"-?(?:0|[1-9]\d*)(?:\.\d+)?(?:[eE][+-]?\d+)?")


class JsoncError(UserError):
    """A config file is not JSON (or JSONC) we can edit safely."""


@dataclass
class Node:
    """A value in the text: its span, its Python value, and its children."""

    start: int
    end: int
    value: Any
    open: int = -1  # position of '{' or '['
    members: list[tuple[str, int, Node]] = field(default_factory=list)  # (key, key start, node)
    items: list[Node] = field(default_factory=list)


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0

    def fail(self, what: str) -> JsoncError:
        line = self.text.count("\n", 0, self.pos) + 1
        return JsoncError(f"{what} at line {line}")

    def skip(self) -> None:
        text = self.text
        while self.pos < len(text):
            if text[self.pos] in _WS:
                self.pos += 1
            elif text.startswith("//", self.pos):
                end = text.find("\n", self.pos)
                self.pos = len(text) if end < 0 else end
            elif text.startswith("/*", self.pos):
                end = text.find("*/", self.pos + 2)
                if end < 0:
                    raise self.fail("unterminated comment")
                self.pos = end + 2
            else:
                return

    def value(self) -> Node:
        self.skip()
        if self.pos >= len(self.text):
            raise self.fail("unexpected end of file")
        char = self.text[self.pos]
        if char == "{":
            return self.container("}")
        if char == "[":
            return self.container("]")
        if char == '"':
            start = self.pos
            text = self.string()
            return Node(start, self.pos, text)
        return self.scalar()

    def string(self) -> str:
        start = self.pos
        decoder = json.JSONDecoder()
        try:
            value, end = decoder.raw_decode(self.text, start)
        except ValueError as exc:
            raise self.fail("invalid string") from exc
        if not isinstance(value, str):
            raise self.fail("expected a string")
        self.pos = end
        return value

    def scalar(self) -> Node:
        start = self.pos
        for word, value in _LITERALS.items():
            if self.text.startswith(word, start):
                self.pos = start + len(word)
                return Node(start, self.pos, value)
        match = _NUMBER.match(self.text, start)
        if not match:
            raise self.fail("unexpected character")
        self.pos = match.end()
        return Node(start, self.pos, json.loads(match.group()))

    def container(self, close: str) -> Node:
        node = Node(self.pos, -1, {} if close == "}" else [], open=self.pos)
        self.pos += 1
        while True:
            self.skip()
            if self.text.startswith(close, self.pos):
                self.pos += 1
                node.end = self.pos
                return node
            if close == "}":
                self.member(node)
            else:
                child = self.value()
                node.items.append(child)
                node.value.append(child.value)
            self.skip()
            if self.text.startswith(",", self.pos):
                self.pos += 1
            elif not self.text.startswith(close, self.pos):
                raise self.fail(f"expected ',' or '{close}'")

    def member(self, node: Node) -> None:
        if not self.text.startswith('"', self.pos):
            raise self.fail("expected a quoted key")
        key_start = self.pos
        key = self.string()
        self.skip()
        if not self.text.startswith(":", self.pos):
            raise self.fail("expected ':'")
        self.pos += 1
        child = self.value()
        node.members.append((key, key_start, child))
        node.value[key] = child.value


def parse(text: str) -> Node:
    """Parse JSON or JSONC text (an empty text is an empty object).

    Raises:
        JsoncError: the text is not JSON/JSONC, with the line of the problem.
    """
    if not text.strip():
        text = "{}"
    parser = _Parser(text)
    root = parser.value()
    parser.skip()
    if parser.pos != len(text):
        raise parser.fail("unexpected text after the end")
    return root


class JsonDoc:
    """A JSON(C) document edited in place. ``value`` is always the parsed current text."""

    def __init__(self, text: str) -> None:
        self.text = text if text.strip() else "{}\n"
        self.root = parse(self.text)
        if not isinstance(self.root.value, dict):
            raise JsoncError("the top level is not an object")
        self.unit = _indent_unit(self.text)

    @property
    def value(self) -> dict[str, Any]:
        """The document's current value."""
        value: dict[str, Any] = self.root.value
        return value

    def _splice(self, edits: list[tuple[int, int, str]]) -> None:
        # Right to left; edits at one position land in the order given.
        ordered = sorted(enumerate(edits), key=lambda e: (e[1][0], e[0]), reverse=True)
        for _, (start, end, new) in ordered:
            self.text = self.text[:start] + new + self.text[end:]
        self.root = parse(self.text)

    def node(self, path: list[str | int]) -> Node | None:
        """The node at ``path`` (keys and indexes), or ``None``."""
        node = self.root
        for step in path:
            if isinstance(step, int):
                if step >= len(node.items):
                    return None
                node = node.items[step]
            else:
                found = [child for key, _, child in node.members if key == step]
                if not found or not isinstance(node.value, dict):
                    return None
                node = found[-1]
        return node

    def set(self, path: list[str], value: Any) -> None:
        """Set the member at ``path`` to ``value``, creating parent objects as needed."""
        node = self.root
        for depth, key in enumerate(path):
            child = _member(node, key)
            if child is None:
                nested: Any = value
                for inner in reversed(path[depth + 1 :]):
                    nested = {inner: nested}
                self._insert(node, f"{json.dumps(key)}: ", nested)
                return
            if depth == len(path) - 1:
                column = _column(self.text, child)
                self._splice([(child.start, child.end, self._render(value, column))])
                return
            if not isinstance(child.value, dict):
                raise JsoncError(f"{'.'.join(path[: depth + 1])} is not an object")
            node = child

    def append(self, path: list[str], value: Any) -> None:
        """Append ``value`` to the array at ``path`` (created, with parents, if missing)."""
        node = self.node(list(path))
        if node is None:
            self.set(path, [value])
            return
        if not isinstance(node.value, list):
            raise JsoncError(f"{'.'.join(path)} is not an array")
        self._insert(node, "", value)

    def delete(self, path: list[str | int]) -> bool:
        """Delete the member or item at ``path``; ``False`` if there is none."""
        parent = self.node(path[:-1])
        if parent is None:
            return False
        if isinstance(path[-1], int):
            children = [(child.start, child) for child in parent.items]
            index = path[-1]
        else:
            keyed = [(ks, child) for key, ks, child in parent.members if key == path[-1]]
            if not keyed:
                return False
            index = [k for _, k, _ in parent.members].index(keyed[-1][0])
            children = [(ks, child) for _, ks, child in parent.members]
        if index >= len(children):
            return False
        self._splice(self._removal(parent, children, index))
        return True

    # -- text surgery ------------------------------------------------------------------------

    def _render(self, value: Any, column: str) -> str:
        text = json.dumps(value, indent=self.unit, ensure_ascii=False)
        return text.replace("\n", "\n" + column)

    def _insert(self, node: Node, prefix: str, value: Any) -> None:
        children = [child for _, _, child in node.members] if node.members else node.items
        outer = _column(self.text, node)
        if not children:
            inner = outer + self.unit
            body = f"\n{inner}{prefix}{self._render(value, inner)}\n{outer}"
            self._splice([(node.open + 1, node.end - 1, body)])
            return
        first_start = node.members[0][1] if node.members else children[0].start
        inner = _column(self.text, Node(first_start, first_start, None))
        if inner == outer or "\n" not in self.text[node.open : first_start]:
            inner = outer + self.unit  # a one-line container: put ours on a line of its own
        last = children[-1]
        rendered = f"{prefix}{self._render(value, inner)}"
        after = _skip_inline(self.text, last.end)
        if self.text.startswith(",", after):  # a trailing comma: keep the style
            end = _line_end(self.text, after + 1)
            self._splice([(end, end, f"\n{inner}{rendered},")])
            return
        end = _line_end(self.text, last.end)
        if end >= node.end - 1:  # the closing bracket is on the same line
            self._splice([(last.end, last.end, f",\n{inner}{rendered}")])
            return
        self._splice([(last.end, last.end, ","), (end, end, f"\n{inner}{rendered}")])

    def _removal(
        self, parent: Node, children: list[tuple[int, Node]], index: int
    ) -> list[tuple[int, int, str]]:
        start, child = children[index]
        if len(children) == 1:
            return [(parent.open + 1, parent.end - 1, "")]
        line_start = _line_start(self.text, start)
        after = _skip_inline(self.text, child.end)
        has_comma = self.text.startswith(",", after)
        if index < len(children) - 1 or has_comma:
            end = after + 1 if has_comma else child.end
            return [(line_start, end, "")]
        previous = children[index - 1][1]
        comma = _skip_inline(self.text, previous.end)
        return [(comma, comma + 1, ""), (line_start, child.end, "")]


def _member(node: Node, key: str) -> Node | None:
    found = [child for name, _, child in node.members if name == key]
    return found[-1] if found else None


def _indent_unit(text: str) -> str:
    match = re.search(r"\n([ \t]+)\S", text)
    return match.group(1) if match else "  "


def _column(text: str, node: Node) -> str:
    """The indentation of the line where ``node`` starts."""
    line = text.rfind("\n", 0, node.start) + 1
    match = re.match(r"[ \t]*", text[line:])
    return match.group() if match else ""


def _skip_inline(text: str, pos: int) -> int:
    while pos < len(text) and text[pos] in " \t":
        pos += 1
    return pos


def _line_end(text: str, pos: int) -> int:
    """After ``pos``: past spaces and a ``//`` comment, up to (not including) the newline."""
    pos = _skip_inline(text, pos)
    if text.startswith("//", pos):
        end = text.find("\n", pos)
        return len(text) if end < 0 else end
    if text.startswith("/*", pos):
        end = text.find("*/", pos)
        if end >= 0 and "\n" not in text[pos:end]:
            return _line_end(text, end + 2)
    return pos


def _line_start(text: str, pos: int) -> int:
    """The newline before ``pos`` if only whitespace is between, else ``pos``."""
    back = pos
    while back > 0 and text[back - 1] in " \t":
        back -= 1
    return back - 1 if back > 0 and text[back - 1] == "\n" else pos
