"""The shapes of a transcript: exchanges of messages with their tool calls (JSON via msgspec).

An *exchange* is one prompt of the agent's user (or of whoever drives it) and everything the
agent did until the next one: its messages and tool calls. Exchanges are numbered from 1 in
the order of the transcript, so a message can cite ``luna#12``; the numbers of a session never
change as it grows (only a harness's own rewind renumbers what follows it).
"""

from __future__ import annotations

import msgspec

# What a summary keeps of a tool's input or output, and of a message without --full.
SUMMARY_CHARS = 200


class ToolCall(msgspec.Struct, omit_defaults=True):
    """One tool call: its name, its input summarised (a command, a path), what it returned."""

    name: str
    input: str = ""
    output: str = ""
    error: bool = False
    id: str = ""


class Message(msgspec.Struct, omit_defaults=True):
    """One message of a conversation.

    ``role`` is ``user`` (a prompt: it opens an exchange) or ``assistant`` (the model's text
    and tool calls); ``ts`` is ISO 8601 UTC, ``""`` when the harness records none.
    """

    role: str
    text: str = ""
    ts: str = ""
    tools: list[ToolCall] = msgspec.field(default_factory=list)


class Exchange(msgspec.Struct):
    """One exchange: ``n`` (from 1), when it began and ended, its prompt, its messages."""

    n: int
    ts: str
    end: str
    prompt: str
    messages: list[Message]

    @property
    def reply(self) -> str:
        """The agent's last text of the exchange."""
        for message in reversed(self.messages):
            if message.role == "assistant" and message.text:
                return message.text
        return ""


class Transcript(msgspec.Struct):
    """A page of an agent's transcript: ``total`` exchanges in all, these ``exchanges``."""

    agent: str
    harness: str
    session: str
    total: int
    exchanges: list[Exchange]
    source: str = ""  # the file (or database) read, on the agent's own device


class Hit(msgspec.Struct):
    """A search hit: the agent, the exchange and the matching message's text around it."""

    agent: str
    n: int
    role: str
    ts: str
    text: str


def clip(text: str, limit: int = SUMMARY_CHARS) -> str:
    """``text`` on one line, at most ``limit`` characters (an ellipsis when cut)."""
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def summarised(exchange: Exchange, limit: int = SUMMARY_CHARS) -> Exchange:
    """The exchange with every text, tool input and output clipped to ``limit``."""
    messages = [
        Message(
            role=m.role,
            text=clip(m.text, limit * 4 if m.role == "assistant" else limit * 2),
            ts=m.ts,
            tools=[
                ToolCall(t.name, clip(t.input, limit), clip(t.output, limit), t.error, t.id)
                for t in m.tools
            ],
        )
        for m in exchange.messages
    ]
    return Exchange(exchange.n, exchange.ts, exchange.end, clip(exchange.prompt, limit * 2),
                    messages)  # fmt: skip


def group(messages: list[Message]) -> list[Exchange]:
    """Number ``messages`` by exchange: each user message opens one; what comes before the
    first (a harness's own preamble) opens exchange 1 without a prompt."""
    exchanges: list[Exchange] = []
    for message in messages:
        if message.role == "user" or not exchanges:
            prompt = message.text if message.role == "user" else ""
            exchanges.append(Exchange(len(exchanges) + 1, message.ts, message.ts, prompt, []))
        current = exchanges[-1]
        current.messages.append(message)
        if message.ts:
            current.end = message.ts
            current.ts = current.ts or message.ts
    return exchanges
