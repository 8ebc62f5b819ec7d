// switchboard: managed file (switchboard uninstall removes it)
//
// Switchboard for Pi: registers the agent, records its activity, and brings messages from
// other agents into the session. Every decision is made by `switchboard hook pi EVENT` (JSON
// on stdin, JSON on stdout); this file only moves JSON between Pi and it.
//
// - tool_result: messages due are appended to the tool result (mid-turn).
// - agent_end and a poll every few seconds while idle: messages due are sent with
//   pi.sendUserMessage (followUp starts a run when idle; urgent ones steer).
// Pi has no MCP: the agent answers with the switchboard command line.
// (Plain JavaScript syntax, which is also valid TypeScript, so Pi loads it as it is.)

import { spawn } from "node:child_process";

const COMMAND = __SWITCHBOARD_COMMAND__;
const POLL_MS = 5000;
const HOOK_TIMEOUT_MS = 5000;

export function hook(event, payload) {
  return new Promise((resolve) => {
    let out = "";
    let child;
    try {
      child = spawn(COMMAND[0], [...COMMAND.slice(1), "hook", "pi", event], {
        stdio: ["pipe", "pipe", "ignore"],
      });
    } catch {
      resolve({});
      return;
    }
    const timer = setTimeout(() => child.kill(), HOOK_TIMEOUT_MS);
    child.stdout.on("data", (chunk) => {
      out += chunk;
    });
    child.on("error", () => {
      clearTimeout(timer);
      resolve({});
    });
    child.on("close", () => {
      clearTimeout(timer);
      try {
        resolve(JSON.parse(out || "{}"));
      } catch {
        resolve({});
      }
    });
    child.stdin.on("error", () => {});
    child.stdin.end(JSON.stringify(payload));
  });
}

export default function switchboard(pi) {
  let session = `pi-${process.pid}`;
  let cwd = process.cwd();
  let busy = false;

  const payload = (extra) => ({ session_id: session, cwd, ...extra });
  const deliver = (answer) => {
    if (!answer.prompt) return;
    busy = true;
    pi.sendUserMessage(answer.prompt, { deliverAs: answer.urgent ? "steer" : "followUp" });
  };

  pi.on("session_start", async (_event, ctx) => {
    const manager = ctx && ctx.sessionManager;
    const id = manager && (manager.getSessionId ? manager.getSessionId() : manager.getSessionFile && manager.getSessionFile());
    if (id) session = String(id);
    if (ctx && ctx.cwd) cwd = ctx.cwd;
    await hook("session_start", payload({}));
  });
  pi.on("agent_start", async () => {
    busy = true;
    await hook("agent_start", payload({}));
  });
  pi.on("tool_result", async (event) => {
    const answer = await hook("tool_result", payload({ tool: event.toolName, tool_input: event.input }));
    if (!answer.context) return undefined;
    return { content: [...(event.content || []), { type: "text", text: answer.context }] };
  });
  pi.on("agent_end", async () => {
    busy = false;
    deliver(await hook("agent_end", payload({})));
  });
  pi.on("session_shutdown", async () => {
    await hook("session_shutdown", payload({}));
  });

  const timer = setInterval(() => {
    if (busy) return;
    hook("poll", payload({})).then(deliver, () => {});
  }, POLL_MS);
  if (timer.unref) timer.unref();
}
