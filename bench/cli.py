"""``make bench`` (shell users): what an everyday command costs, beside the interpreter's floor.

1. Start-up: ``switchboard agents [--json]``, ``send [--json] @nova -- TEXT``, ``inbox
   --peek``/``--json``, ``hook claude PostToolUse`` and ``send --help`` against a running
   daemon: wall time from spawn to exit, p50/p99, runs interleaved with the floors (so load on
   the machine hits all alike), and the ratios to them. The floors: ``python -c pass``,
   ``python -S -c pass`` (no site, no .pth files), ``python -I -S -c pass``, ``python -c
   "import switchboard.cli.main"`` (the console script's import), and per request a tiny script
   that starts python, connects to the socket, sends that command's one request and prints the
   answer (``socket floor``). Then the modules each command imports beyond the floor's
   (``-X importtime``, self time).
2. Across devices: ``switchboard send`` starts on device A -> device B's waiting
   ``inbox --wait`` prints the message (a relay on loopback), p50/p99.
3. With ``--hcom DIR`` (a virtualenv holding ``hcom``, e.g. made by ``--setup-hcom DIR``, which
   runs ``pip install hcom==0.7.31`` into it; never a project dependency): ``hcom send`` ->
   a waiting ``hcom listen`` prints it, both on this machine (hcom's own local path; ours in
   2. crosses a relay), and ``hcom send``'s own wall time beside ours. Without it, hcom is not
   measured.

Source files are timed as compiled: with ``PYTHONDONTWRITEBYTECODE`` set, run ``python -m
compileall src`` first, or every run compiles the changed modules again.
Figures are printed, never asserted. ``--quick`` shrinks the counts.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "integration"))

from cluster import Device, Relay, group_of

SCRIPT = str(Path(sys.executable).parent / "switchboard")
FLOOR = [sys.executable, "-c", "pass"]


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def report(
    label: str, samples: list[float], floor: list[float] | None = None, more: str = ""
) -> None:
    ms = [s * 1000 for s in samples]
    times = f" = {_ratio(samples, floor)}x floor" if floor else ""
    print(
        f"  {label:<40} p50 {pct(ms, 0.5):7.1f} ms   p99 {pct(ms, 0.99):7.1f} ms"
        f"   mean {statistics.mean(ms):7.1f} ms   n={len(ms)}{times}{more}"
    )


def wall(cmd: list[str], env: dict[str, str], data: bytes = b"") -> float:
    start = time.perf_counter()
    done = subprocess.run(cmd, input=data, capture_output=True, env=env, check=False)
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"bench: {cmd[1:]} failed: {done.stderr.decode().strip()}")
    return elapsed


def imports(cmd: list[str], env: dict[str, str], data: bytes = b"") -> dict[str, float]:
    """Module -> self import time (ms), from one ``-X importtime`` run of ``cmd``."""
    done = subprocess.run(
        [sys.executable, "-X", "importtime", *cmd],
        input=data,
        capture_output=True,
        env=env,
        check=False,
    )
    found: dict[str, float] = {}
    for line in done.stderr.decode().splitlines():
        if line.startswith("import time:") and "self" not in line:
            own, _, name = line[len("import time:") :].split("|")
            found[name.strip()] = int(own) / 1000
    return found


# The floors, each timed in the same interleaved run as the commands: the interpreter alone
# (with site and its .pth files, without them, isolated too); the console script's import of
# switchboard.cli.main (what pip's launcher does before main runs); and, per command, a tiny
# script that starts python, connects to the socket, sends that command's one request and
# prints the answer line (what no CLI can beat without a faster interpreter or daemon).
FLOORS = {
    "python -c pass": [sys.executable, "-c", "pass"],
    "python -S -c pass": [sys.executable, "-S", "-c", "pass"],
    "python -I -S -c pass": [sys.executable, "-I", "-S", "-c", "pass"],
    "import switchboard.cli.main": [sys.executable, "-c", "import switchboard.cli.main"],
}
SOCKET_FLOOR = """
import _socket, os, sys
s = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
s.connect(os.path.join(os.environ["SWITCHBOARD_HOME"], "daemon.sock"))
s.sendall(sys.argv[1].encode() + b"\\n")
line = b""
while not line.endswith(b"\\n"):
    chunk = s.recv(65536)
    if not chunk:
        break
    line += chunk
sys.stdout.buffer.write(line)
"""
HOOK_PAYLOAD = (
    b'{"session_id": "b1", "cwd": "/repo", "hook_event_name": "PostToolUse", '
    b'"tool_name": "Read", "tool_input": {"file_path": "/repo/README.md"}, '
    b'"tool_response": {"type": "text"}}'
)


def _hook_request(env: dict[str, str]) -> dict[str, object]:
    """The ``agent.hook`` params the hook sends for ``HOOK_PAYLOAD`` (harnesses/hook.py)."""
    from switchboard.harnesses import hook, payloads  # noqa: PLC0415

    payload = json.loads(HOOK_PAYLOAD)
    request = payloads.build_request("claude", "PostToolUse", payload)
    assert request is not None
    request.update(payloads.transcript_hint(request["kind"], payload, env))
    os.environ["SWITCHBOARD_HARNESS_PID"] = env["SWITCHBOARD_HARNESS_PID"]
    request.update(agent=env["SWITCHBOARD_AGENT"], anchor=hook.anchor(), wait=0.0)
    return request


def _socket_floor(method: str, params: dict[str, object]) -> list[str]:
    request = json.dumps({"id": 1, "method": method, "params": params}, separators=(",", ":"))
    return [sys.executable, "-c", SOCKET_FLOOR, request]


def bench_start(count: int) -> None:
    print("Start-up of everyday commands (spawn -> exit), a running daemon:")
    with tempfile.TemporaryDirectory(prefix="sbc-", dir="/tmp") as tmp:
        device = Device(Path(tmp) / "d", "bench").start()
        try:
            device.call("init", name="bench")
            device.call("register", agent="luna")
            device.call("register", agent="nova")
            env = {**device.env, "SWITCHBOARD_AGENT": "luna"}
            nova = {**device.env, "SWITCHBOARD_AGENT": "nova"}
            hook = {**env, "SWITCHBOARD_HARNESS_PID": "4187001"}
            wall([SCRIPT, "hook", "claude", "PostToolUse"], hook, HOOK_PAYLOAD)  # registers
            send = {"agent": "luna", "to": ["@nova"], "text": "hello"}
            # name -> (command, environment, stdin, its socket floor's request)
            commands = {
                "agents": ([SCRIPT, "agents"], env, b"", ("agents", {})),
                "agents --json": ([SCRIPT, "agents", "--json"], env, b"", ("agents", {})),
                "send @nova -- TEXT": (
                    [SCRIPT, "send", "@nova", "--", "hello"], env, b"", ("send", send)
                ),
                "send --json @nova -- TEXT": (
                    [SCRIPT, "send", "--json", "@nova", "--", "hello"], env, b"", ("send", send)
                ),
                "inbox --peek (as nova)": (
                    [SCRIPT, "inbox", "--peek"], nova, b"",
                    ("inbox", {"agent": "nova", "peek": True, "wait": 0.0}),
                ),
                "inbox --json (as nova)": (
                    [SCRIPT, "inbox", "--json"], nova, b"",
                    ("inbox", {"agent": "nova", "peek": False, "wait": 0.0}),
                ),
                "hook claude PostToolUse": (
                    [SCRIPT, "hook", "claude", "PostToolUse"], hook, HOOK_PAYLOAD,
                    ("agent.hook", _hook_request(hook)),
                ),
                "send --help": ([SCRIPT, "send", "--help"], env, b"", None),
            }  # fmt: skip
            runs: dict[str, tuple[list[str], dict[str, str], bytes]] = {
                name: (cmd, env, b"") for name, cmd in FLOORS.items()
            }
            for name, (cmd, cmd_env, data, request) in commands.items():
                runs[name] = (cmd, cmd_env, data)
                if request is not None:
                    runs[f"socket floor: {request[0]}"] = (_socket_floor(*request), cmd_env, b"")
            samples: dict[str, list[float]] = {name: [] for name in runs}
            for _ in range(count):
                for name, (cmd, cmd_env, data) in runs.items():
                    samples[name].append(wall(cmd, cmd_env, data))
            floor = samples["python -c pass"]
            for name in FLOORS:
                report(f"floor: {name}", samples[name], floor)
            for name in dict.fromkeys(n for n in runs if n.startswith("socket floor")):
                report(name, samples[name], floor)
            print("  commands (ratio to python -c pass; to the socket floor of the same request):")
            for name, (_, _, _, request) in commands.items():
                own = ""
                if request is not None:
                    ratio = _ratio(samples[name], samples[f"socket floor: {request[0]}"])
                    own = f", {ratio}x its socket floor"
                report(name, samples[name], floor, own)
            base = imports(["-c", "pass"], env)
            print("  imports beyond the floor's (-X importtime, self time):")
            for name, (cmd, cmd_env, data, _) in commands.items():
                extra = {m: ms for m, ms in imports(cmd, cmd_env, data).items() if m not in base}
                top = sorted(extra, key=extra.__getitem__, reverse=True)[:4]
                slowest = ", ".join(f"{m} {extra[m]:.1f}" for m in top)
                total = sum(extra.values())
                print(f"    {name:<26} {total:6.1f} ms  {len(extra):3} modules: {slowest}")
        finally:
            device.stop()


def _ratio(values: list[float], floor: list[float]) -> str:
    return f"{pct(values, 0.5) / pct(floor, 0.5):.2f}"


def _until_line(proc: subprocess.Popen[bytes]) -> float:
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line:
        raise SystemExit("bench: the waiting reader ended without printing")
    return time.perf_counter()


def bench_across(count: int) -> None:
    print("switchboard send (device A) starts -> device B's waiting inbox --wait prints it:")
    with (
        tempfile.TemporaryDirectory(prefix="sbc-", dir="/tmp") as tmp,
        group_of(Path(tmp), "alpha", "beta", relay=Relay(Path(tmp) / "relay")) as (_, devices),
    ):
        alpha, beta = devices
        beta.call("register", agent="nova")
        a_env = {**alpha.env, "SWITCHBOARD_AGENT": "luna"}
        b_env = {**beta.env, "SWITCHBOARD_AGENT": "nova"}
        target = f"@nova:{beta.short}"
        deadline = time.monotonic() + 30
        while subprocess.run([SCRIPT, "send", target, "--", "warm-up"], env=a_env,
                             capture_output=True, check=False).returncode != 0:  # fmt: skip
            if time.monotonic() > deadline:
                raise SystemExit("bench: alpha never learnt of nova")
            time.sleep(0.1)
        subprocess.run([SCRIPT, "inbox"], env=b_env, capture_output=True, check=False)
        # Interleaved: the CLI's send; the same request made from this process (the daemons'
        # and the relay's share: no process starts on A); the interpreter's floor.
        samples: dict[str, list[float]] = {"cli": [], "in-process": [], "floor": []}
        for i in range(count):
            for mode in ("cli", "in-process"):
                reader = subprocess.Popen(
                    [SCRIPT, "inbox", "--wait", "30"], env=b_env, stdout=subprocess.PIPE
                )
                time.sleep(0.3)  # let it reach its wait
                start = time.perf_counter()
                if mode == "cli":
                    sender = subprocess.Popen(
                        [SCRIPT, "send", target, "--", f"ping {i}"],
                        env=a_env,
                        stdout=subprocess.DEVNULL,
                    )
                    samples[mode].append(_until_line(reader) - start)
                    sender.wait()
                else:
                    alpha.call("send", agent="luna", to=[target], text=f"pong {i}")
                    samples[mode].append(_until_line(reader) - start)
                reader.wait()
            samples["floor"].append(wall(FLOOR, a_env))
        report("floor: python -c pass", samples["floor"])
        report("send -> other device's inbox --wait", samples["cli"], samples["floor"])
        report("same send from this process -> it prints", samples["in-process"])


def setup_hcom(where: Path) -> None:
    """A virtualenv at ``where`` with hcom 0.7.31 in it (for comparison only)."""
    subprocess.run([sys.executable, "-m", "venv", str(where)], check=True)
    pip = [str(where / "bin" / "python"), "-m", "pip", "install", "-q", "hcom==0.7.31"]
    subprocess.run(pip, check=True)


def _until_text(proc: subprocess.Popen[bytes], text: bytes) -> float:
    assert proc.stdout is not None
    for line in proc.stdout:
        if text in line:
            return time.perf_counter()
    raise SystemExit(f"bench: the reader ended without printing {text!r}")


def bench_hcom(venv: Path, count: int) -> None:
    print("hcom 0.7.31, one machine: hcom send starts -> a waiting hcom listen prints it:")
    hcom = str(venv.resolve() / "bin" / "hcom")  # hcom runs in a scratch directory
    with tempfile.TemporaryDirectory(prefix="sbh-", dir="/tmp", ignore_cleanup_errors=True) as tmp:
        env = {**os.environ, "HOME": tmp, "HCOM_DIR": str(Path(tmp) / ".hcom")}
        # hcom keys its state on the working directory too: run it in the scratch directory.
        start_nova = [hcom, "start", "--as", "nova"]
        subprocess.run(start_nova, env=env, capture_output=True, check=True, cwd=tmp)
        floor, sends, arrivals = [], [], []
        for i in range(count):
            floor.append(wall(FLOOR, env))
            reader = subprocess.Popen(
                [hcom, "listen", "--name", "nova", "30"],
                env=env,
                cwd=tmp,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
            )
            _until_text(reader, b"Listening")
            time.sleep(0.1)
            start = time.perf_counter()
            sender = subprocess.Popen(
                [hcom, "send", "@nova", "--from", "luna", "--", f"ping {i}"],
                env=env, stdout=subprocess.DEVNULL, cwd=tmp,
            )  # fmt: skip
            arrivals.append(_until_text(reader, f"ping {i}".encode()) - start)
            sender.wait()
            sends.append(time.perf_counter() - start)
            reader.kill()
            reader.wait()
        report("floor: python -c pass", floor)
        report("hcom send (spawn -> exit, >= arrival)", sends, floor)
        report("hcom send -> hcom listen prints", arrivals)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small counts, for a smoke run")
    parser.add_argument("--only", choices=("start", "across"), help="run one part")
    parser.add_argument("--hcom", type=Path, metavar="VENV", help="compare with hcom in VENV")
    parser.add_argument("--setup-hcom", type=Path, metavar="VENV", help="make VENV with hcom")
    args = parser.parse_args()
    if args.setup_hcom:
        setup_hcom(args.setup_hcom)
        return
    if args.only in (None, "start"):
        bench_start(10 if args.quick else 25)
    if args.only in (None, "across"):
        bench_across(5 if args.quick else 15)
    if args.hcom:
        bench_hcom(args.hcom, 5 if args.quick else 15)


if __name__ == "__main__":
    main()
