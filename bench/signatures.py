"""``make bench`` (signatures): what per-device signatures cost, per core, beside unsigned.

One process, one thread (so every figure is per core), a typical event (a message of about
200 bytes of text). For each batch size, events/s through:

1. **unsigned**: ``encode_event`` + ``GroupKeys.seal`` on the way out, ``open`` + decode on the
   way in (what the wire did before signatures);
2. **signed**: ``links.supervisor.seal_events`` (one Ed25519 signature per batch over a Merkle
   root of its events) and ``open_envelope`` (path walk per event, one signature check per
   batch root), as the links run them.

Batch size 1 is what one signature per event would cost. Also shown: the bytes a proof adds
to an envelope. Figures are printed (and written as JSON with ``--json``), never asserted.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from switchboard.crypto import GroupKeys, new_group_secret  # noqa: E402
from switchboard.events import Event, decode_event, encode_event  # noqa: E402
from switchboard.keyring import Keyring  # noqa: E402
from switchboard.links.supervisor import open_envelope, seal_events  # noqa: E402
from switchboard.signatures import Signer, Verifier  # noqa: E402

GROUP = "bench"
SIZES = (1, 16, 100, 500, 2000)


def events(origin: str, count: int) -> list[Event]:
    return [
        Event(
            origin=origin,
            seq=seq,
            ts="2026-12-06T21:00:00.000000Z",
            type="message_posted",
            agent="luna",
            data={"to": ["@nova"], "recipients": ["nova:abcd"], "text": "x" * 200},
        )
        for seq in range(1, count + 1)
    ]


def rate(count: int, fn: Any) -> float:
    """Events/s of ``fn`` over ``count`` events, best of three runs."""
    best = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return count / best


def measure(total: int) -> dict[str, Any]:
    secret = new_group_secret()
    keys = GroupKeys.derive(GROUP, secret)
    ring = Keyring.single(GROUP, secret)  # what the links seal with (keyring)
    signer = Signer(GROUP, Ed25519PrivateKey.generate())
    origin = signer.origin
    out: dict[str, Any] = {"events": total, "batches": []}
    all_events = events(origin, total)
    plain = [keys.seal(e.origin, e.seq, encode_event(e)) for e in all_events]
    out["unsigned_seal"] = rate(
        total, lambda: [keys.seal(e.origin, e.seq, encode_event(e)) for e in all_events]
    )
    out["unsigned_open"] = rate(total, lambda: [decode_event(keys.open(env)) for env in plain])
    for size in SIZES:
        chunks = [all_events[i : i + size] for i in range(0, total, size)]
        sealed = [seal_events(ring, signer, chunk, {}) for chunk in chunks]

        def open_all(sealed: list[list[Any]] = sealed) -> None:
            verifier = Verifier(GROUP)  # a receiver: each batch root checked once
            for batch in sealed:
                for env in batch:
                    open_envelope(ring, verifier, env)

        signed_box = sum(len(env.box) for batch in sealed for env in batch) / total
        plain_box = sum(len(env.box) for env in plain) / total
        out["batches"].append(
            {
                "size": size,
                "signed_seal": rate(
                    total,
                    lambda chunks=chunks: [seal_events(ring, signer, c, {}) for c in chunks],
                ),
                "signed_open": rate(total, open_all),
                "proof_bytes": round(signed_box - plain_box, 1),
            }
        )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer events, for a smoke run")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    figures = measure(2000 if args.quick else 20_000)
    print(f"signatures, per core, {figures['events']} events of ~250 bytes")
    print(
        f"  unsigned              seal {figures['unsigned_seal']:>9,.0f}/s"
        f"   open {figures['unsigned_open']:>9,.0f}/s"
    )
    for row in figures["batches"]:
        print(
            f"  signed, batch {row['size']:>5}   seal {row['signed_seal']:>9,.0f}/s"
            f"   open+verify {row['signed_open']:>9,.0f}/s   +{row['proof_bytes']:.0f} B/event"
        )
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
