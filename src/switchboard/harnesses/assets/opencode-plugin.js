// switchboard: managed file (switchboard uninstall removes it)
//
// Switchboard for OpenCode: registers the agent, records its activity, and brings messages
// from other agents into its sessions. Every decision is made by `switchboard hook opencode
// EVENT` (JSON on stdin, JSON on stdout); this file only moves JSON between OpenCode and it.
//
// - tool.execute.after: messages due are appended to the tool's output (mid-turn).
// - session.idle and a poll every few seconds while idle: messages due start a new turn
//   through the in-process SDK client (client.session.promptAsync).
// Written for the OpenCode 1.x plugin API; OpenCode 2 plugins use another API.

import { spawn } from "node:child_process";

const COMMAND = __SWITCHBOARD_COMMAND__;
const POLL_MS = 5000;
const HOOK_TIMEOUT_MS = 5000;

export function hook(event, payload) {
  return new Promise((resolve) => {
    let out = "";
    let child;
    try {
      child = spawn(COMMAND[0], [...COMMAND.slice(1), "hook", "opencode", event], {
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

export const Switchboard = async ({ client, directory }) => {
  const idle = new Map(); // sessionID -> true while the session waits for input
  const args = new Map(); // callID -> tool arguments (tool.execute.before)

  async function prompt(sessionID, text) {
    const request = { path: { id: sessionID }, body: { parts: [{ type: "text", text }] } };
    idle.set(sessionID, false);
    try {
      await client.session.promptAsync(request);
    } catch {
      try {
        await client.session.prompt(request);
      } catch {
        idle.set(sessionID, true);
      }
    }
  }

  async function poll() {
    for (const [sessionID, isIdle] of idle) {
      if (!isIdle) continue;
      const answer = await hook("poll", { session_id: sessionID, cwd: directory });
      if (answer.prompt) await prompt(sessionID, answer.prompt);
    }
  }

  const timer = setInterval(() => {
    poll().catch(() => {});
  }, POLL_MS);
  if (timer.unref) timer.unref();

  return {
    event: async ({ event }) => {
      const props = event.properties || {};
      const sessionID = props.sessionID || (props.info && props.info.id);
      if (!sessionID) return;
      const payload = { session_id: sessionID, cwd: directory };
      if (event.type === "session.created") {
        idle.set(sessionID, true);
        await hook("session.created", payload);
      } else if (event.type === "session.idle") {
        idle.set(sessionID, true);
        const answer = await hook("session.idle", payload);
        if (answer.prompt) await prompt(sessionID, answer.prompt);
      } else if (event.type === "session.status" && props.status && props.status.type === "busy") {
        idle.set(sessionID, false);
      } else if (event.type === "session.compacted") {
        await hook("session.compacted", payload);
      } else if (event.type === "session.deleted") {
        idle.delete(sessionID);
        await hook("session.deleted", payload);
      }
    },
    "chat.message": async (input) => {
      idle.set(input.sessionID, false);
      await hook("chat.message", { session_id: input.sessionID, cwd: directory });
    },
    "tool.execute.before": async (input, output) => {
      args.set(input.callID, output.args);
    },
    "tool.execute.after": async (input, output) => {
      const toolInput = args.get(input.callID) || {};
      args.delete(input.callID);
      const answer = await hook("tool.execute.after", {
        session_id: input.sessionID,
        cwd: directory,
        tool: input.tool,
        tool_input: toolInput,
      });
      if (answer.context) output.output = `${output.output || ""}\n\n${answer.context}`;
    },
  };
};
