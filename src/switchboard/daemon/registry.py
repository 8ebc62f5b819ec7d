"""What a daemon feature declares (``Feature``), and the one registry that merges them.

Theory of operation
-------------------
A feature module ends with one ``FEATURE = Feature(...)``: its API methods as a table of plain
async functions ``fn(ctx, p)`` (streaming ones, async generators, in ``streams``), the
event types it reacts to and in which phase (``Reaction``), the directed-channel request kinds
it answers, and optional ``start``/``stop`` hooks. ``daemon/features.py`` lists the features
(one line each); ``Registry`` merges their tables, refusing a method, stream or request kind
declared twice, and is what the API server dispatches through and what the daemon calls when
events are stored. Nothing else names a feature.

A method's second parameter is annotated with the msgspec Struct of its params (a subclass
of ``params.AgentParams`` when it acts for an agent): that annotation is the one declaration
of the method's parameters. The registry validates each request's params into it at the door
(``params.params_of``: bad input is one clear ``UserError`` naming the field), and tests check
the CLI's options and the MCP tools' arguments against it (``Registry.params``).

Reactions come in two phases:

- ``IN_TXN``: ``fn(ctx, conn, stored) -> [(agent, body), ...]`` runs inside the writer's
  transaction that stores events received from the group (on the writer thread, or the
  caller's for a small write), and what it returns is appended by this device in that same
  transaction. It must be bounded and synchronous: indexed reads on ``conn``, no awaits, no
  I/O. A delivered receipt for a message to a local agent is the model: it can never be lost
  between two commits. If it raises, the error is logged and the events are stored unanswered.
- ``AFTER_COMMIT``: ``fn(ctx, stored)`` runs on the event loop after every commit that stored
  events (local or received), in registration order. It must not block: set an event, resolve
  a waiter, or start a task.

An ``IN_TXN`` reaction that raises is logged and skipped, so the others still answer and the
received events are stored (the log must keep replicating whatever a feature does). An
``AFTER_COMMIT`` reaction must not raise: a bug there surfaces to whoever committed.

Each reaction sees only the stored events whose type it named (``types=None``: all of them) and
is not called when none match.
"""

from __future__ import annotations

import enum
import inspect
import logging
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final

import msgspec

from switchboard.daemon.params import params_of

if TYPE_CHECKING:
    from switchboard.daemon.context import Context, RequestHandler, StreamHandler
    from switchboard.events import Body, Event

log = logging.getLogger("switchboard.daemon.registry")

Stored = tuple[int, "Event"]
#: An API method: ``fn(ctx, p)``, ``p`` the request's params validated into the Struct its
#: annotation names -> a JSON-able result or a msgspec Struct (``daemon/shapes.py``).
Method = Callable[["Context", Any], Awaitable[Any]]
#: A streaming API method: an async generator of items.
Stream = Callable[["Context", Any], AsyncIterator[Any]]
InTxn = Callable[["Context", sqlite3.Connection, list[Stored]], Sequence[tuple[str, "Body"]]]
AfterCommit = Callable[["Context", list[Stored]], None]


class Phase(enum.Enum):
    """Where a reaction runs."""

    IN_TXN = "in_txn"
    AFTER_COMMIT = "after_commit"


@dataclass(frozen=True)
class Reaction:
    """A feature's answer to stored events of some types.

    Use ``in_txn(...)`` or ``after_commit(...)`` to make one with a checked signature.
    """

    phase: Phase
    fn: Callable[..., Any]
    types: frozenset[str] | None = None

    def wants(self, stored: list[Stored], present: frozenset[str] | None = None) -> list[Stored]:
        """The stored events this reaction is for (``present``: the types ``stored`` holds,
        when known; a catch-up of thousands of events then costs no pass per reaction)."""
        if self.types is None:
            return stored
        if present is not None:
            if self.types.isdisjoint(present):
                return []
            if present <= self.types:
                return stored
        return [item for item in stored if item[1].type in self.types]


def in_txn(fn: InTxn, *types: str) -> Reaction:
    """A reaction in the writer's transaction that stores received events of ``types``."""
    return Reaction(Phase.IN_TXN, fn, frozenset(types) if types else None)


def after_commit(fn: AfterCommit, *types: str) -> Reaction:
    """A reaction on the loop after each commit that stored events of ``types``."""
    return Reaction(Phase.AFTER_COMMIT, fn, frozenset(types) if types else None)


@dataclass(frozen=True)
class Feature:
    """One daemon feature: its API methods, streams, reactions and request handlers."""

    name: str
    methods: Mapping[str, Method] = field(default_factory=dict)
    streams: Mapping[str, Stream] = field(default_factory=dict)
    reactions: Sequence[Reaction] = ()
    requests: Mapping[str, RequestHandler] = field(default_factory=dict)
    """Directed-channel request kinds this feature answers (``Context.call_device``)."""
    request_streams: Mapping[str, StreamHandler] = field(default_factory=dict)
    """Request kinds it answers with a stream of chunks (``Context.stream_device``)."""
    start: Callable[[Context], None] | None = None
    """Called once on the loop when the daemon starts, before the API listens."""
    stop: Callable[[Context], Awaitable[None]] | None = None
    """Awaited when the daemon stops (bounded by the daemon's close step timeout)."""


class Registry:
    """The merged tables of a sequence of features.

    Raises:
        ValueError: two features declare the same method, stream or request kind.
    """

    def __init__(self, features: Sequence[Feature]) -> None:
        self.features: Final = tuple(features)
        self.methods: dict[str, Method] = {}
        self.streams: dict[str, Stream] = {}
        self.requests: dict[str, RequestHandler] = {}
        self.request_streams: dict[str, StreamHandler] = {}
        #: Each method's params Struct (streams too), from its annotation.
        self.params: dict[str, type[msgspec.Struct]] = {}
        owner: dict[str, str] = {}
        for feature in self.features:
            for table, merged in (
                (feature.methods, self.methods),
                (feature.streams, self.streams),
                (feature.requests, self.requests),
                (feature.request_streams, self.request_streams),
            ):
                served = merged is self.requests or merged is self.request_streams
                for name, fn in table.items():
                    key = ("request " if served else "method ") + name
                    if key in owner:
                        raise ValueError(f"{key} is declared by {owner[key]} and {feature.name}")
                    owner[key] = feature.name
                    merged[name] = fn  # type: ignore[assignment]
                    if not served:
                        self.params[name] = params_type(fn)
        reactions = [r for f in self.features for r in f.reactions]
        self._in_txn = [r for r in reactions if r.phase is Phase.IN_TXN]
        self._after = [r for r in reactions if r.phase is Phase.AFTER_COMMIT]

    @property
    def names(self) -> frozenset[str]:
        """Every callable API method, streaming or not."""
        return frozenset(self.methods) | frozenset(self.streams)

    def bind(self, ctx: Context) -> dict[str, tuple[Callable[[Any], Any], bool]]:
        """The API server's dispatch table: name -> (``fn(params)`` on ``ctx``, is streaming)."""
        table: dict[str, tuple[Callable[[Any], Any], bool]] = {}
        for name, fn in self.methods.items():
            table[name] = (_bound(fn, self.params[name], ctx), False)
        for name, stream in self.streams.items():
            table[name] = (_bound(stream, self.params[name], ctx), True)
        return table

    def start(self, ctx: Context) -> None:
        """Run every feature's ``start`` hook, in order."""
        for feature in self.features:
            if feature.start is not None:
                feature.start(ctx)

    def stops(self, ctx: Context) -> list[tuple[str, Awaitable[None]]]:
        """The ``stop`` hooks to await, in reverse order of the features."""
        return [(f.name, f.stop(ctx)) for f in reversed(self.features) if f.stop is not None]

    def react_in_txn(
        self, ctx: Context, conn: sqlite3.Connection, stored: list[Stored]
    ) -> list[tuple[str, Body]]:
        """Run the ``IN_TXN`` reactions; return the events they append, in order."""
        out: list[tuple[str, Body]] = []
        present = _types(stored)
        for reaction in self._in_txn:
            wanted = reaction.wants(stored, present)
            if not wanted:
                continue
            try:
                out.extend(reaction.fn(ctx, conn, wanted))
            except Exception:
                log.exception("! in-transaction reaction %s failed", _name(reaction.fn))
        return out

    def react_after_commit(self, ctx: Context, stored: list[Stored]) -> None:
        """Run the ``AFTER_COMMIT`` reactions, in order. They must not raise: a bug there
        surfaces to whoever committed (an ``append`` caller, or the loop's error handler)."""
        present = _types(stored)
        for reaction in self._after:
            wanted = reaction.wants(stored, present)
            if wanted:
                reaction.fn(ctx, wanted)


def params_type(fn: Callable[..., Any]) -> type[msgspec.Struct]:
    """The params Struct a method's second parameter is annotated with.

    Raises:
        TypeError: the method has no such parameter, or its annotation is not a Struct.
    """
    parameters = list(inspect.signature(fn).parameters.values())
    annotation = parameters[1].annotation if len(parameters) == 2 else None
    if isinstance(annotation, str):  # ``from __future__ import annotations``: a name
        annotation = getattr(fn, "__globals__", {}).get(annotation)
    if not (isinstance(annotation, type) and issubclass(annotation, msgspec.Struct)):
        raise TypeError(f"{_name(fn)} must take (ctx, p: <a params Struct>)")
    return annotation


def _bound(fn: Callable[..., Any], cls: type[msgspec.Struct], ctx: Context) -> Callable[[Any], Any]:
    def call(params: Any) -> Any:
        return fn(ctx, params_of(cls, params))

    call.__name__ = call.__qualname__ = getattr(fn, "__name__", "method")
    return call


def _types(stored: list[Stored]) -> frozenset[str]:
    return frozenset(item[1].type for item in stored)


def _name(fn: Callable[..., Any]) -> str:
    return f"{getattr(fn, '__module__', '?')}.{getattr(fn, '__qualname__', '?')}"
