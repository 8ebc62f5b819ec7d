"""The handoff brief: what a successor agent is told about the work it takes over.

Pure: ``brief`` takes what the original's device gathered (its agent row, the last exchanges
of its transcript, its recent messages, the requests still open to it, the git state of its
checkout) and writes the task text the successor starts with. It stays under the task text
limit of the spawn policy: each part is cut to its share, the newest kept.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Final

from switchboard.tasks.policy import MAX_TASK_TEXT

# Shares of the brief (characters); what is left of the limit is headroom for the frame.
EXCHANGES_MAX: Final = 24_000
MESSAGES_MAX: Final = 12_000
ONE_TEXT_MAX: Final = 2_000
STAT_MAX: Final = 4_000


@dataclass(frozen=True)
class GitState:
    """The original's checkout, and what became of its uncommitted changes on the target."""

    repo: str = ""
    branch: str = ""
    commit: str = ""
    subject: str = ""
    stat: str = ""
    """``diff --stat`` of the uncommitted changes (``""``: none)."""
    applied: bool = False


@dataclass(frozen=True)
class Brief:
    """What a brief says."""

    original: str
    """Display address of the original agent."""
    harness: str
    cwd: str
    summary: str
    exchanges: Sequence[tuple[int, str, str]] = ()
    """``(number, role, text)`` of its transcript's last exchanges."""
    messages: Sequence[tuple[str, str, str, str]] = ()
    """``(ts, from, to, text)`` of the messages it sent or received lately."""
    requests: Sequence[tuple[str, str]] = ()
    """``(ref, from)`` of the requests it has not answered."""
    git: GitState = field(default_factory=GitState)
    note: str = ""
    """What the person handing over adds."""


def _cut(text: str, limit: int) -> str:
    text = text.strip()
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _newest(lines: list[str], limit: int) -> list[str]:
    """The newest lines that fit in ``limit`` characters, in their order."""
    kept: list[str] = []
    total = 0
    for line in reversed(lines):
        total += len(line) + 1
        if total > limit:
            kept.append("(earlier ones left out)")
            break
        kept.append(line)
    return kept[::-1]


def brief(b: Brief) -> str:
    """The successor's task text."""
    out = [
        f"You take over the work of {b.original} ({b.harness}, in {b.cwd}), which handed it to "
        "you through Switchboard. Its messages are offered to you now: answer them as its "
        "successor.",
    ]
    if b.note.strip():
        out += ["", "Note from the handover:", _cut(b.note, ONE_TEXT_MAX)]
    if b.summary.strip():
        out += ["", f"What it was doing: {_cut(b.summary, ONE_TEXT_MAX)}"]
    git = b.git
    if git.commit:
        out += ["", "Git state:"]
        out.append(f"- repository {git.repo or '(unnamed)'}, branch {git.branch or '(detached)'}")
        out.append(f"- last commit {git.commit[:12]} {git.subject}")
        if git.stat:
            how = "applied to your checkout" if git.applied else "NOT applied"
            out.append(f"- uncommitted changes ({how}):")
            out.append(_cut(git.stat, STAT_MAX))
        else:
            out.append("- no uncommitted changes")
    if b.exchanges:
        lines = [f"#{n} {role}: {_cut(text, ONE_TEXT_MAX)}" for n, role, text in b.exchanges]
        out += ["", "Its last exchanges:", *_newest(lines, EXCHANGES_MAX)]
    if b.messages:
        lines = [f"[{ts}] {sender} -> {to}: {_cut(text, ONE_TEXT_MAX)}"
                 for ts, sender, to, text in b.messages]  # fmt: skip
        out += ["", "Its recent messages:", *_newest(lines, MESSAGES_MAX)]
    if b.requests:
        out += ["", "Requests to it still open (reply to each):"]
        out += [f"- {ref} from {sender}" for ref, sender in b.requests[:50]]
    return _cut("\n".join(out), MAX_TASK_TEXT - 1000)
