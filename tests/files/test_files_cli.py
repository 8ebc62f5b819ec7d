"""The surfaces of shared files on real daemons: the CLI (file send with a note, files --json,
file get --json, files gc) and the MCP tools share_file and get_file."""

from __future__ import annotations

import asyncio
import hashlib
import json
from pathlib import Path

from cluster import Relay, group_of
from filekit import downloads, payload, wait_for, write

from switchboard.mcp.bridge import Bridge
from switchboard.mcp.server import build_registry


def test_files_cli_and_mcp_tools_share_and_save(tmp_path: Path) -> None:
    """A file shared from the CLI with a note is listed, fetched with JSON progress lines
    and saved; one shared with share_file comes back from get_file as a readable path."""
    with group_of(tmp_path, "laptop", "server", relay=Relay(tmp_path / "relay")) as (_, (a, b)):
        b.call("register", agent="nova")
        wait_for(lambda: any(r["name"] == "nova" for r in a.call("agents")))
        data = payload(3_000_000, seed=5)
        path = write(tmp_path, "build.tar", data)
        sent = a.cli("file", "send", "@nova", str(path), "--", "the", "build", agent="luna")
        assert "shared build.tar" in sent.stdout and "nova:" in sent.stdout
        listed = b.cli_json("files", agent="nova")
        assert [(f["name"], f["size"], f["note"], f["held"]) for f in listed] == [
            ("build.tar", len(data), "the build", False)
        ]
        lines = b.cli("file", "get", "build.tar", "--json", agent="nova").stdout.splitlines()
        last = json.loads(lines[-1])
        assert all("progress" in json.loads(line) for line in lines[:-1])
        assert Path(last["saved"]).read_bytes() == data
        out = tmp_path / "copy.tar"
        saved = b.cli("file", "get", listed[0]["hash"][:8], "-o", str(out), agent="nova")
        assert saved.stdout.startswith(f"saved {out} ") and out.read_bytes() == data
        gc = json.loads(b.cli("files", "gc", "--keep", "0", "--json").stdout)
        assert gc["removed"] == [listed[0]["hash"]] and out.exists()

        tools = build_registry()

        async def share_then_get() -> dict[str, object]:
            luna, nova = (Bridge(a.settings, agent="luna"), Bridge(b.settings, agent="nova"))
            try:
                small = write(tmp_path, "notes.md", b"# notes\n")
                shared = await tools.get("share_file").handler(  # type: ignore[union-attr]
                    luna, {"to": ["@nova"], "path": str(small), "note": "read me"}
                )
                assert shared["mime"] == "text/markdown" and shared["size"] == 8
                got: dict[str, object] = await tools.get("get_file").handler(  # type: ignore[union-attr]
                    nova, {"file": shared["hash"]}
                )
                return got
            finally:
                await luna.aclose()
                await nova.aclose()

        got = asyncio.run(share_then_get())
        assert got["path"] == str(downloads(b) / "notes.md")
        assert Path(str(got["path"])).read_bytes() == b"# notes\n"
        assert got["sha256"] == hashlib.sha256(b"# notes\n").hexdigest()
