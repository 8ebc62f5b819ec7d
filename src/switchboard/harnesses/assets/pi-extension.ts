// switchboard: managed file (switchboard uninstall removes it)
//
// Switchboard for Pi: registers the agent, records its activity, and brings messages from
// other agents into the session. Every decision is made by `switchboard hook pi EVENT` (JSON
// on stdin, JSON on stdout); this file only moves JSON between Pi and it.
//
// - tool_result: messages due are appended to the tool result (mid-turn).
// - agent_end and a poll every few seconds while idle: messages due are sent with
//   pi.sendUserMessage (followUp starts a run when idle; urgent ones steer).
// - A message counts as delivered only once Pi has taken it: when the user message shows up
//   in the conversation (message_start). If sendUserMessage throws, or no such message comes
//   within HANDOVER_MS (no API key, any error Pi reports on its own), we tell switchboard it
//   was not taken: it stays unread and is offered again at a later poll (after 1, 2, 4 ...
//   polls while it keeps failing), and polling goes on.
// Pi has no MCP: the agent answers with the switchboard command line.
// (Plain JavaScript syntax, which is also valid TypeScript, so Pi loads it as it is.)

import { spawn } from "node:child_process";

const COMMAND = __SWITCHBOARD_COMMAND__;
const POLL_MS = 5000;
const HOOK_TIMEOUT_MS = 5000;
const HANDOVER_MS = 60000;
const MAX_SKIPPED_POLLS = 59;

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

function textOf(message) {
  const content = message && message.content;
  if (typeof content === "string") return content;
  if (!Array.isArray(content)) return "";
  return content.filter((part) => part && part.type === "text").map((part) => part.text).join("\n");
}

export default function switchboard(pi) {
  let session = `pi-${process.pid}`;
  let cwd = process.cwd();
  let busy = false;
  let pending = null; // the message handed to Pi, until it shows up in the conversation
  let failures = 0; // hand-overs failed in a row
  let skip = 0; // polls to let pass before the next try

  const payload = (extra) => ({ session_id: session, cwd, ...extra });
  const settle = (taken, error) => {
    if (!pending) return;
    const { handover, timer } = pending;
    clearTimeout(timer);
    pending = null;
    if (taken) {
      failures = 0;
      skip = 0;
    } else {
      failures += 1;
      skip = Math.min(2 ** (failures - 1) - 1, MAX_SKIPPED_POLLS);
    }
    if (!handover) return;
    hook(taken ? "injected" : "inject_failed", payload({ handover, error: error || "" })).catch(() => {});
  };
  const deliver = (answer) => {
    if (!answer.prompt || pending) return;
    pending = { text: answer.prompt, handover: answer.handover || "" };
    pending.timer = setTimeout(
      () => settle(false, `Pi started no turn with the message within ${HANDOVER_MS / 1000} s`),
      HANDOVER_MS,
    );
    if (pending.timer.unref) pending.timer.unref();
    try {
      pi.sendUserMessage(answer.prompt, { deliverAs: answer.urgent ? "steer" : "followUp" });
    } catch (error) {
      settle(false, `sendUserMessage failed: ${(error && error.message) || error}`);
    }
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
  pi.on("message_start", async (event) => {
    const message = event && event.message;
    if (pending && message && message.role === "user" && textOf(message) === pending.text) settle(true);
  });
  pi.on("tool_result", async (event) => {
    const answer = await hook("tool_result", payload({ tool: event.toolName, tool_input: event.input }));
    if (!answer.context) return undefined;
    return { content: [...(event.content || []), { type: "text", text: answer.context }] };
  });
  pi.on("agent_end", async () => {
    busy = false;
    skip = 0; // a turn just ran: worth trying at once
    deliver(await hook("agent_end", payload({})));
  });
  pi.on("session_shutdown", async () => {
    settle(false, "Pi shut down before taking the message");
    await hook("session_shutdown", payload({}));
  });

  const timer = setInterval(() => {
    if (busy || pending) return undefined;
    if (skip > 0) {
      skip -= 1;
      return undefined;
    }
    return hook("poll", payload({})).then(deliver, () => {});
  }, POLL_MS);
  if (timer.unref) timer.unref();
}
