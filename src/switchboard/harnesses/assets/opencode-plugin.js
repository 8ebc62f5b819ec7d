// switchboard: managed file (switchboard uninstall removes it)
//
// Switchboard for OpenCode: registers the agent, records its activity, and brings messages
// from other agents into its sessions. Every decision is made by `switchboard hook opencode
// EVENT` (JSON on stdin, JSON on stdout); this file only moves JSON between OpenCode and it.
//
// - tool.execute.after: messages due are appended to the tool's output (mid-turn).
// - session.idle and a poll every few seconds while idle: messages due start a new turn
//   through the in-process SDK client (client.session.promptAsync).
// - A message counts as delivered only once OpenCode has taken it: when the prompt's text
//   part shows up in the session (message.part.updated). If promptAsync fails, OpenCode
//   reports session.error for the session first, or nothing comes within HANDOVER_MS, we
//   tell switchboard it was not taken: it stays unread and is offered again at a later poll
//   (after 1, 2, 4 ... polls while it keeps failing), and polling goes on.
// - permission.asked: a permission prompt travels (switchboard approvals on every device);
//   an answer from a device this one allows is given to OpenCode as the reply (once or
//   reject, with the reason). No answer in time: nothing, OpenCode's own prompt stays (the
//   TUI's answer wins when it comes first; permission.replied tells switchboard).
// Written for the OpenCode 1.x plugin API; OpenCode 2 plugins use another API. It imports
// nothing but node's own modules, so it needs no package of its own.

import { spawn } from "node:child_process";

const COMMAND = __SWITCHBOARD_COMMAND__;
const POLL_MS = 5000;
const HOOK_TIMEOUT_MS = 5000;
const HANDOVER_MS = 60000;
const MAX_SKIPPED_POLLS = 59;
// A permission hook waits for an answer from elsewhere (SWITCHBOARD_PROMPT_WAIT, as the hook).
const PROMPT_WAIT_MS = 1000 * Number(process.env.SWITCHBOARD_PROMPT_WAIT || 120);

export function hook(event, payload, timeoutMs = HOOK_TIMEOUT_MS) {
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
    const timer = setTimeout(() => child.kill(), timeoutMs);
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

function failure(result) {
  // The SDK answers HTTP errors with { error, response } instead of throwing.
  if (!result || typeof result !== "object") return "";
  if (result.error) return `prompt failed: ${JSON.stringify(result.error).slice(0, 200)}`;
  if (result.response && result.response.ok === false) return `prompt failed: HTTP ${result.response.status}`;
  return "";
}

async function reply(client, asked, answer) {
  // OpenCode 1.18: POST /permission/{requestID}/reply {reply, message} (the message reaches
  // the model); older 1.x: the session route, which takes no message.
  const response = answer.permission === "allow" ? "once" : "reject";
  const body = { reply: response, ...(answer.message ? { message: answer.message } : {}) };
  const raw = client._client || client.client;
  if (raw && typeof raw.post === "function") {
    const result = await raw.post({ url: "/permission/{requestID}/reply", path: { requestID: asked.id }, body });
    if (!failure(result)) return;
  }
  await client.postSessionIdPermissionsPermissionId({
    path: { id: asked.sessionID, permissionID: asked.id },
    body: { response },
  });
}

function askedPayload(asked, directory) {
  const patterns = Array.isArray(asked.patterns) ? asked.patterns : [];
  const meta = asked.metadata || {};
  const input = asked.permission === "bash"
    ? { command: meta.command || patterns.join(" ") }
    : { filePath: meta.filepath || meta.filePath || patterns[0] || "" };
  return { session_id: asked.sessionID, cwd: directory, tool: asked.permission, tool_input: input };
}

function errorText(error) {
  if (!error) return "OpenCode reported an error";
  const data = error.data || {};
  return String(data.message || error.message || error.name || JSON.stringify(error)).slice(0, 300);
}

export const Switchboard = async ({ client, directory }) => {
  const idle = new Map(); // sessionID -> true while the session waits for input
  const args = new Map(); // callID -> tool arguments (tool.execute.before)
  const pending = new Map(); // sessionID -> the prompt handed to OpenCode, until it is taken
  const failures = new Map(); // sessionID -> hand-overs failed in a row
  const skip = new Map(); // sessionID -> polls to let pass before the next try

  function settle(sessionID, taken, error) {
    const handed = pending.get(sessionID);
    if (!handed) return;
    clearTimeout(handed.timer);
    pending.delete(sessionID);
    if (taken) {
      failures.delete(sessionID);
      skip.delete(sessionID);
    } else {
      const count = (failures.get(sessionID) || 0) + 1;
      failures.set(sessionID, count);
      skip.set(sessionID, Math.min(2 ** (count - 1) - 1, MAX_SKIPPED_POLLS));
      idle.set(sessionID, true);
      if (client.app && client.app.log) {
        Promise.resolve(
          client.app.log({ body: { service: "switchboard", level: "warn", message: `message not delivered: ${error}` } }),
        ).catch(() => {});
      }
    }
    if (!handed.handover) return;
    const payload = { session_id: sessionID, cwd: directory, handover: handed.handover, error: error || "" };
    hook(taken ? "injected" : "inject_failed", payload).catch(() => {});
  }

  async function prompt(sessionID, answer) {
    if (pending.has(sessionID)) return;
    const text = answer.prompt;
    const request = { path: { id: sessionID }, body: { parts: [{ type: "text", text }] } };
    const handed = { text, handover: answer.handover || "" };
    handed.timer = setTimeout(
      () => settle(sessionID, false, `OpenCode started no turn with the message within ${HANDOVER_MS / 1000} s`),
      HANDOVER_MS,
    );
    if (handed.timer.unref) handed.timer.unref();
    pending.set(sessionID, handed);
    idle.set(sessionID, false);
    // Older OpenCode 1.x without promptAsync: prompt, which waits for the whole turn.
    const send = typeof client.session.promptAsync === "function" ? "promptAsync" : "prompt";
    let error = "";
    try {
      error = failure(await client.session[send](request));
    } catch (exc) {
      error = `${send} failed: ${(exc && exc.message) || exc}`;
    }
    if (error) settle(sessionID, false, error);
  }

  async function poll() {
    for (const [sessionID, isIdle] of idle) {
      if (!isIdle || pending.has(sessionID)) continue;
      const skipped = skip.get(sessionID) || 0;
      if (skipped > 0) {
        skip.set(sessionID, skipped - 1);
        continue;
      }
      const answer = await hook("poll", { session_id: sessionID, cwd: directory });
      if (answer.prompt) await prompt(sessionID, answer);
    }
  }

  const timer = setInterval(() => poll().catch(() => {}), POLL_MS);
  if (timer.unref) timer.unref();

  return {
    event: async ({ event }) => {
      const props = event.properties || {};
      const part = props.part || {};
      const sessionID = props.sessionID || part.sessionID || (props.info && (props.info.sessionID || props.info.id));
      if (!sessionID) return;
      const payload = { session_id: sessionID, cwd: directory };
      if (event.type === "message.part.updated") {
        const handed = pending.get(sessionID);
        if (handed && part.type === "text" && part.text === handed.text) settle(sessionID, true);
      } else if (event.type === "session.error") {
        if (pending.has(sessionID)) settle(sessionID, false, errorText(props.error));
      } else if (event.type === "session.created") {
        idle.set(sessionID, true);
        await hook("session.created", payload);
      } else if (event.type === "session.idle") {
        idle.set(sessionID, true);
        skip.delete(sessionID); // a turn just ended: worth trying at once
        if (pending.has(sessionID)) return;
        const answer = await hook("session.idle", payload);
        if (answer.prompt) await prompt(sessionID, answer);
      } else if (event.type === "session.status" && props.status && props.status.type === "busy") {
        idle.set(sessionID, false);
      } else if (event.type === "permission.asked") {
        const answer = await hook("permission.asked", askedPayload(props, directory), PROMPT_WAIT_MS + HOOK_TIMEOUT_MS);
        if (answer.permission === "allow" || answer.permission === "deny") {
          await reply(client, props, answer).catch(() => {});
        }
      } else if (event.type === "permission.replied") {
        await hook("permission.replied", payload);
      } else if (event.type === "session.compacted") {
        await hook("session.compacted", payload);
      } else if (event.type === "session.deleted") {
        settle(sessionID, false, "the session was deleted before it took the message");
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
