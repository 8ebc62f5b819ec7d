"""Print the session's transition table as Markdown, from ``transition_table()``.

    python docs/make_state_table.py           # print the table
    python docs/make_state_table.py --write   # replace it in docs/protocol.md

``tests/unit/test_protocol_doc.py`` checks that ``docs/protocol.md`` holds exactly this output
between the ``state-table`` markers (the way h11 generates its state diagrams from ``_state.py``).
"""

from __future__ import annotations

import sys
from pathlib import Path

from switchboard.proto.frames import AnyFrame, frame_name
from switchboard.proto.session import Role, State, transition_table

START = "<!-- state-table:start -->"
END = "<!-- state-table:end -->"
DOC = Path(__file__).with_name("protocol.md")


def state_table() -> str:
    """Return the Markdown table: one row per (role, state, frame) the session accepts."""
    roles = [role.value for role in Role]
    states = [state.value for state in State]
    tags = [frame_name(cls) for cls in AnyFrame.__args__]  # type: ignore[attr-defined]
    rows = sorted(
        transition_table().items(),
        key=lambda item: (
            roles.index(item[0][0]),
            states.index(item[0][1]),
            tags.index(item[0][2]),
        ),
    )
    lines = ["| Role | State | Frame | Handler |", "| --- | --- | --- | --- |"]
    lines += [
        f"| {role} | `{state}` | `{tag}` | `{handler}` |" for (role, state, tag), handler in rows
    ]
    return "\n".join(lines) + "\n"


def replace_table(text: str, table: str) -> str:
    """Return ``text`` with the part between the markers replaced by ``table``."""
    head, _, rest = text.partition(START)
    _, _, tail = rest.partition(END)
    return f"{head}{START}\n{table}{END}{tail}"


def main(argv: list[str]) -> int:
    """Print the table, or write it into docs/protocol.md with ``--write``."""
    table = state_table()
    if argv == ["--write"]:
        DOC.write_text(replace_table(DOC.read_text(), table))
    else:
        sys.stdout.write(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
