"""Fault soak: messages between two devices while the link's server and the receiver die.

For each link (``relay``, ``mqtt`` on Mosquitto, ``nats`` on nats-server) two daemons A and B
run as their own processes in one group, with agents ``luna`` on A and ``nova`` on B. A sends
``--count`` numbered messages to ``@nova`` while the soak kills with SIGKILL and starts again,
``--restarts`` times in all, alternately the link's server (the relay, Mosquitto or
nats-server, on the same port and data) and B's daemon. Each cycle sends part of its share of
messages while the victim is down (they wait in A's log, the relay's mailbox or the broker),
the rest once it is back, and does not wait for them before the next kill (some are in
flight when it comes).

The recovery time of a restart runs from the victim listening again (its "listening"/"ready"
line) to the next delivery of one of A's messages into B's log. At the end both links are
synced and the verdict is read from the two stores (read-only SQL, not from what the soak
saw): per origin (A and B), events received by the other device, lost (in the origin's own
log, not in the other's), duplicated and reordered (stored out of ``seq`` order); and for A's
numbered messages the same by number. Target: 0 lost, 0 duplicated, 0 reordered. Exit status
1 when a link misses it or a recovery never came.

Not part of ``make test``; ``make soak`` runs the full counts (1,000 messages, 100 restarts
per link); CI runs a short count, e.g. ``python bench/soak.py --count 100 --restarts 10``.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import signal
import sqlite3
import statistics
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "tests" / "brokers"), str(ROOT / "tests" / "integration")]

from brokerlab import Mosquitto, NatsServer  # noqa: E402
from cluster import Device, Relay, timeout  # noqa: E402

from switchboard.daemon.client import Client  # noqa: E402
from switchboard.errors import DaemonUnavailable, SwitchboardError  # noqa: E402

LINKS = ("relay", "mqtt", "nats")
PREFIX = "soak"


def text_of(number: int) -> str:
    return f"{PREFIX}{number:05d} " + "x" * 180


def number_of(text: str) -> int | None:
    if not text.startswith(PREFIX):
        return None
    return int(text[len(PREFIX) : len(PREFIX) + 5])


class Server:
    """The link's server behind one interface: kill with SIGKILL, start on the same port/data."""

    def __init__(self, kind: str, root: Path) -> None:
        self.kind = kind
        if kind == "relay":
            self.proc: Any = Relay(root / "relay")
        elif kind == "mqtt":
            self.proc = Mosquitto(root / "mosquitto")
        else:
            self.proc = NatsServer(root / "nats")

    @property
    def url(self) -> str:
        return str(self.proc.url)

    def start(self) -> None:
        self.proc.start()

    def kill(self) -> None:
        if isinstance(self.proc, Relay):
            self.proc.kill(signal.SIGKILL)
        else:
            self.proc.stop(signal.SIGKILL)

    def stop(self) -> None:
        if isinstance(self.proc, Relay):
            self.proc.kill(signal.SIGTERM)
        else:
            self.proc.stop()


class Arrivals:
    """Follow B's log in a thread, across B's restarts: when each of A's messages was seen."""

    def __init__(self, b: Device) -> None:
        self.b = b
        self.seen: dict[int, float] = {}
        self.after = 0
        self.error = ""
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._follow, daemon=True)
        self._thread.start()

    def _follow(self) -> None:
        while not self._stop.is_set():
            try:
                with Client.open(self.b.settings.socket_path) as client:
                    values = {"type": "message_posted", "after": self.after, "all_rooms": True}
                    for item in client.stream("events.follow", values, duration=3600):
                        now = time.perf_counter()
                        number = number_of(item["data"].get("text", ""))
                        with self._cond:
                            self.after = max(self.after, item["id"])
                            if number is not None:
                                self.seen.setdefault(number, now)
                            self._cond.notify_all()
                        if self._stop.is_set():
                            return
            except (DaemonUnavailable, SwitchboardError, OSError, EOFError) as exc:
                self.error = repr(exc)  # B is down or went away: follow again once it is back
            time.sleep(0.05)

    def first_after(self, since: float, limit: float) -> float | None:
        """Seconds from ``since`` to the first message seen after it, or None within ``limit``."""

        def first() -> float | None:
            later = [t for t in self.seen.values() if t >= since]
            return min(later) if later else None

        with self._cond:
            self._cond.wait_for(lambda: first() is not None, timeout=limit)
            found = first()
        return None if found is None else found - since

    def wait_all(self, count: int, limit: float) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: len(self.seen) >= count, timeout=limit)

    def close(self) -> None:
        self._stop.set()


def read_log(device: Device) -> list[tuple[int, str, int, str, str]]:
    """``(id, origin, seq, type, text)`` of every event in ``device``'s store, read-only."""
    uri = f"file:{device.settings.db_path}?mode=ro"
    with contextlib.closing(sqlite3.connect(uri, uri=True, timeout=30)) as conn:
        rows = conn.execute(
            "SELECT id, origin, seq, type, coalesce(json_extract(data, '$.text'), '') "
            "FROM events ORDER BY id"
        ).fetchall()
    return [(int(r[0]), str(r[1]), int(r[2]), str(r[3]), str(r[4])) for r in rows]


def inversions(values: list[int]) -> int:
    """Places where a value comes after a greater one (0 when stored in order)."""
    return sum(1 for before, after in itertools.pairwise(values) if after < before)


@dataclass
class Verdict:
    lines: list[str] = field(default_factory=list)
    ok: bool = True

    def add(self, label: str, received: int, lost: int, dup: int, reordered: int) -> None:
        self.ok = self.ok and lost == dup == reordered == 0
        self.lines.append(
            f"  {label:<28} received {received:>5}  lost {lost:>3}  duplicated {dup:>3}  "
            f"reordered {reordered:>3}"
        )


def verdict(a: Device, b: Device, ids: dict[str, str], count: int) -> Verdict:
    """Compare both stores: per origin, and A's numbered messages in B's log."""
    logs = {"A": read_log(a), "B": read_log(b)}
    result = Verdict()
    for name, other in (("A", "B"), ("B", "A")):
        origin = ids[name]
        own = {(o, s) for _, o, s, _, _ in logs[name] if o == origin}
        held = [(o, s) for _, o, s, _, _ in logs[other] if o == origin]  # in store order
        counts = Counter(held)
        result.add(
            f"origin {name} in {other}'s log",
            len(set(held)),
            len(own - set(held)),
            sum(n - 1 for n in counts.values()),
            inversions([s for _, s in held]),
        )
    numbers = [
        n for _, o, _, t, text in logs["B"]
        if o == ids["A"] and t == "message_posted" and (n := number_of(text)) is not None
    ]  # fmt: skip
    counts = Counter(numbers)
    result.add(
        f"A's {count} messages in B's log",
        len(counts),
        len(set(range(count)) - set(counts)),
        sum(n - 1 for n in counts.values()),
        inversions(numbers),
    )
    return result


def setup(kind: str, root: Path) -> tuple[Server, Device, Device]:
    server = Server(kind, root)
    server.start()
    a = Device(root / "a", "a").start()
    b = Device(root / "b", "b").start()
    for device in (a, b):
        device.call("init", name=device.name)
    invite = a.call("group.create", name="soak", relay=server.url)["invite"]
    b.call("join", invite=invite)
    b.call("register", agent="nova")
    a.call("register", agent="luna")
    b.wait_events(1, 60, type="agent_registered", agent="luna")
    a.wait_events(1, 60, type="agent_registered", agent="nova")
    return server, a, b


def soak(
    kind: str, count: int, restarts: int, down: float, root: Path, logs: Path | None = None
) -> bool:
    """One link's soak; print its figures; return whether it met the target."""
    started = time.perf_counter()
    server, a, b = setup(kind, root)
    ids = {"A": a.call("status")["device"]["id"], "B": b.call("status")["device"]["id"]}
    arrivals = Arrivals(b)
    recoveries: dict[str, list[float]] = {"server": [], "receiver": []}
    hangs: list[str] = []
    samples: list[str] = []
    b_logs: list[str] = []
    sent = 0
    try:
        with Client.open(a.settings.socket_path) as client:

            def send_upto(last: int, gap: float = 0.0) -> None:
                nonlocal sent
                while sent < last:
                    client.call(
                        "send", {"agent": "luna", "to": ["@nova"], "text": text_of(sent), "wait": 0}
                    )
                    sent += 1
                    time.sleep(gap)

            for cycle in range(restarts):
                share = count * (cycle + 1) // restarts
                half = sent + max(1, (share - sent) // 2)  # at least one sent while down
                victim = "server" if cycle % 2 == 0 else "receiver"
                killed = time.perf_counter()
                if victim == "server":
                    server.kill()
                else:
                    b_logs.append(b.log_text)
                    b.kill(signal.SIGKILL)
                send_upto(half)
                time.sleep(max(0.0, killed + down - time.perf_counter()))
                if victim == "server":
                    server.start()
                else:
                    b.start()
                listening = time.perf_counter()
                recovery = arrivals.first_after(listening, timeout(90))
                if recovery is None:
                    hangs.append(f"cycle {cycle} ({victim}): no delivery within 90 s")
                else:
                    recoveries[victim].append(recovery)
                samples.append(
                    f"{time.strftime('%H:%M:%S', time.gmtime(time.time() - (recovery or 0)))} "
                    f"cycle {cycle} {victim}: {'-' if recovery is None else f'{recovery:.3f}'} s"
                )
                send_upto(share, gap=0.02)
            send_upto(count)
        complete = arrivals.wait_all(count, timeout(180))
        for device in (a, b):
            device.call("link.sync", timeout=60)
        time.sleep(1.0)  # receipts and presence B made while syncing reach A
        for device in (a, b):
            device.call("link.sync", timeout=60)
        result = verdict(a, b, ids, count)
    finally:
        arrivals.close()
        if logs is not None:
            logs.mkdir(parents=True, exist_ok=True)
            (logs / f"{kind}-a.log").write_text(a.log_text)
            (logs / f"{kind}-b.log").write_text("".join(b_logs) + b.log_text)
            (logs / f"{kind}-recoveries.txt").write_text("\n".join(samples) + "\n")
        for device in (a, b):
            device.stop()
        server.stop()
    elapsed = time.perf_counter() - started
    print(f"{kind}: {count} messages A -> B, {restarts} SIGKILL restarts "
          f"({(restarts + 1) // 2} {server_name(kind)}, {restarts // 2} receiving daemon), "
          f"{down:.1f} s down each, {elapsed:.0f} s")  # fmt: skip
    for line in result.lines:
        print(line)
    for victim, values in recoveries.items():
        if values:
            who = server_name(kind) if victim == "server" else "receiver"
            median = statistics.median(values) * 1e3
            print(
                f"  recovery after {who} restart (listening -> next delivery): median "
                f"{median:.0f} ms  max {max(values) * 1e3:.0f} ms  ({len(values)} restarts)"
            )
    if not complete:
        hangs.append(f"only {len(arrivals.seen)} of {count} messages arrived by the end")
    for hang in hangs:
        print(f"  HANG: {hang}")
    ok = result.ok and not hangs
    print(f"  {'OK' if ok else 'FAILED'}: target 0 lost, 0 duplicated, 0 reordered", flush=True)
    return ok


def server_name(kind: str) -> str:
    return {"relay": "relay", "mqtt": "Mosquitto", "nats": "nats-server"}[kind]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=1000, help="messages per link (1000)")
    parser.add_argument("--restarts", type=int, default=100, help="restarts per link (100)")
    parser.add_argument("--down", type=float, default=0.5, help="seconds down (0.5)")
    parser.add_argument("--link", choices=LINKS, action="append", help="only this link (repeat)")
    parser.add_argument("--json", action="store_true", help="also print a JSON summary line")
    parser.add_argument("--logs", type=Path, help="write both daemons' logs and each recovery here")
    args = parser.parse_args()
    if args.restarts < 1 or args.count < args.restarts:
        parser.error("need --restarts >= 1 and --count >= --restarts")
    results = {}
    for kind in args.link or LINKS:
        with tempfile.TemporaryDirectory(prefix=f"switchboard-soak-{kind}-") as tmp:
            results[kind] = soak(kind, args.count, args.restarts, args.down, Path(tmp), args.logs)
    if args.json:
        print(json.dumps(results))
    return 0 if all(results.values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
