"""Before/after start-up of the hook and everyday commands, interleaved in one run.

``python bench/compare.py BEFORE_SRC [AFTER_SRC]`` runs each command with ``PYTHONPATH`` set to
each source tree in turn (e.g. ``git archive main src | tar -x -C /tmp/before``, compiled with
``python -m compileall``), against one running daemon, and prints the p50s beside the
``python -c pass`` floor of the same run. ``--across`` instead times ``send`` on device A ->
device B's waiting ``inbox --wait`` prints it (a relay on loopback), both processes from the
same tree, the trees in turn. Figures are printed, never asserted.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "integration"))

from cluster import Device, Relay, group_of

SCRIPT = str(Path(sys.executable).parent / "switchboard")
PAYLOAD = json.dumps(
    {
        "session_id": "b1",
        "cwd": "/repo",
        "hook_event_name": "PostToolUse",
        "tool_name": "Read",
        "tool_input": {"file_path": "/repo/README.md"},
        "tool_response": {"type": "text"},
    }
).encode()
COMMANDS = {
    "hook claude PostToolUse": ([SCRIPT, "hook", "claude", "PostToolUse"], PAYLOAD),
    "send @nova -- hi": ([SCRIPT, "send", "@nova", "--", "hi"], b""),
    "agents": ([SCRIPT, "agents"], b""),
    "agents --json": ([SCRIPT, "agents", "--json"], b""),
    "send --json @nova -- hi": ([SCRIPT, "send", "--json", "@nova", "--", "hi"], b""),
    "inbox": ([SCRIPT, "--as", "nova", "inbox"], b""),
    "inbox --json": ([SCRIPT, "--as", "nova", "inbox", "--json"], b""),
    "send --help": ([SCRIPT, "send", "--help"], b""),
}


def run(cmd: list[str], env: dict[str, str], data: bytes = b"") -> float:
    start = time.perf_counter()
    done = subprocess.run(cmd, input=data, env=env, capture_output=True, check=False)
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"bench: {cmd[1:]} ({env['PYTHONPATH']}): {done.stderr.decode()}")
    return elapsed


def _arrival(reader: subprocess.Popen[bytes], start: float) -> float:
    assert reader.stdout is not None
    if not reader.stdout.readline():
        raise SystemExit("bench: the waiting reader ended without printing")
    return time.perf_counter() - start


def across(trees: dict[str, str], count: int) -> None:
    """send (A) starts -> B's waiting inbox --wait prints it, per tree, interleaved."""
    with (
        tempfile.TemporaryDirectory(prefix="sbab-", dir="/tmp") as tmp,
        group_of(Path(tmp), "alpha", "beta", relay=Relay(Path(tmp) / "relay")) as (_, devices),
    ):
        alpha, beta = devices
        beta.call("register", agent="nova")
        target = f"@nova:{beta.short}"
        deadline = time.monotonic() + 30
        while alpha.call("agents") and target[1:] not in str(alpha.call("agents")):
            if time.monotonic() > deadline:
                raise SystemExit("bench: alpha never learnt of nova")
            time.sleep(0.1)
        samples: dict[str, list[float]] = {tree: [] for tree in trees}
        floor = []
        for i in range(count):
            for tree, src in trees.items():
                a_env = {**alpha.env, "SWITCHBOARD_AGENT": "luna", "PYTHONPATH": src}
                b_env = {**beta.env, "SWITCHBOARD_AGENT": "nova", "PYTHONPATH": src}
                reader = subprocess.Popen(
                    [SCRIPT, "inbox", "--wait", "30"], env=b_env, stdout=subprocess.PIPE
                )
                time.sleep(0.3)  # let it reach its wait
                start = time.perf_counter()
                sender = subprocess.Popen(
                    [SCRIPT, "send", target, "--", f"ping {i}"],
                    env=a_env,
                    stdout=subprocess.DEVNULL,
                )
                samples[tree].append(_arrival(reader, start))
                sender.wait()
                reader.wait()
            floor.append(run([sys.executable, "-c", "pass"], {**alpha.env, "PYTHONPATH": ""}))
        base = statistics.median(floor) * 1000
        print(f"floor: python -c pass p50 {base:.1f} ms (n={count}, interleaved)")
        got = {t: statistics.median(samples[t]) * 1000 for t in trees}
        print(
            f"  send -> other device's inbox --wait   before {got['before']:6.1f} ms"
            f" ({got['before'] / base:4.2f}x)   after {got['after']:6.1f} ms"
            f" ({got['after'] / base:4.2f}x)"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("before", help="the source tree (a src directory) before")
    parser.add_argument("after", nargs="?", default=str(Path(__file__).parents[1] / "src"))
    parser.add_argument("--count", type=int, default=30)
    parser.add_argument("--across", action="store_true", help="time send -> inbox --wait")
    args = parser.parse_args()
    trees = {"before": args.before, "after": args.after}
    if args.across:
        across(trees, args.count)
        return
    with tempfile.TemporaryDirectory(prefix="sbab-", dir="/tmp") as tmp:
        device = Device(Path(tmp) / "d", "bench").start()
        try:
            device.call("init", name="bench")
            device.call("register", agent="nova")

            def env(tree: str) -> dict[str, str]:
                extra = {"SWITCHBOARD_AGENT": "luna", "SWITCHBOARD_HARNESS_PID": "4187001"}
                return {**device.env, **extra, "PYTHONPATH": trees[tree]}

            for tree in trees:  # registers luna
                run(COMMANDS["hook claude PostToolUse"][0], env(tree), PAYLOAD)
            samples: dict[tuple[str, str], list[float]] = {}
            floor = []
            for _ in range(args.count):
                floor.append(run([sys.executable, "-c", "pass"], env("after")))
                for name, (cmd, data) in COMMANDS.items():
                    for tree in trees:
                        samples.setdefault((name, tree), []).append(run(cmd, env(tree), data))
            base = statistics.median(floor) * 1000
            print(f"floor: python -c pass p50 {base:.1f} ms (n={args.count}, interleaved)")
            for name in COMMANDS:
                got = {t: statistics.median(samples[(name, t)]) * 1000 for t in trees}
                print(
                    f"  {name:<26} before {got['before']:6.1f} ms ({got['before'] / base:4.2f}x)"
                    f"   after {got['after']:6.1f} ms ({got['after'] / base:4.2f}x)"
                )
        finally:
            device.stop()


if __name__ == "__main__":
    main()
