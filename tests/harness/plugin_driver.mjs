// Drives our OpenCode plugin or Pi extension the way the harness would, with a fake harness
// object that records what the plugin asks of it. Steps are paced by lines on stdin, so the
// Python test can send messages and look at the daemon in between; each step's result goes out
// as one JSON line on stdout once every hook process it started has exited.
//
//   node plugin_driver.mjs KIND PLUGIN [HAND-OVERS]
//
// KIND is opencode or pi. HAND-OVERS scripts how the harness takes the prompts it is handed,
// one word each, comma-separated (then "ok" for ever): ok (taken), throw (the call throws),
// error (OpenCode: promptAsync answers { error }), reported (OpenCode: accepted, then
// session.error), silent (accepted, then nothing: the plugin's hand-over timer must fire).
//
// Steps (stdin lines): go (the next scripted scene), poll (one tick of the plugin's poll
// timer), expire (fire the plugin's hand-over timers), end (Pi: a run ends).
import childProcess from "node:child_process";
import { syncBuiltinESMExports } from "node:module";
import { createInterface } from "node:readline";

const [kind, path, script = ""] = process.argv.slice(2);
const handovers = script ? script.split(",") : [];
const nextHandover = () => handovers.shift() || "ok";

// Every hook the plugin starts: its event name, and a promise that settles when it exits.
const children = [];
const spawn = childProcess.spawn;
childProcess.spawn = (command, args, options) => {
  const child = spawn(command, args, options);
  children.push({ event: args[args.length - 1], done: new Promise((resolve) => child.on("close", resolve)) });
  return child;
};
syncBuiltinESMExports();

// The poll timer and the hand-over timers are the driver's to fire (no waiting in tests).
const polls = [];
const handoverTimers = new Set();
const realSetTimeout = globalThis.setTimeout;
const realClearTimeout = globalThis.clearTimeout;
globalThis.setInterval = (fn) => {
  polls.push(fn);
  return { unref() {} };
};
globalThis.setTimeout = (fn, ms, ...rest) => {
  if (ms < 30000) return realSetTimeout(fn, ms, ...rest);
  const timer = { fn, unref() {} };
  handoverTimers.add(timer);
  return timer;
};
globalThis.clearTimeout = (timer) => {
  if (handoverTimers.has(timer)) handoverTimers.delete(timer);
  else realClearTimeout(timer);
};

const lines = createInterface({ input: process.stdin })[Symbol.asyncIterator]();
const next = async () => (await lines.next()).value;
let seen = 0;
async function say(value) {
  // Hooks started by fire-and-forget calls (settling a hand-over) finish before we report.
  for (let i = 0; i < 50; i += 1) {
    await new Promise((resolve) => realSetTimeout(resolve, 0));
    const open = children.slice(seen);
    if (!open.length) break;
    await Promise.all(open.map((child) => child.done));
    seen += open.length;
  }
  console.log(JSON.stringify({ ...value, hooks: children.map((child) => child.event) }));
  children.length = 0;
  seen = 0;
}
const mod = await import(path);

async function tick() {
  for (const fn of polls) await fn();
}
function expire() {
  const due = [...handoverTimers];
  handoverTimers.clear();
  for (const timer of due) timer.fn();
}

if (kind === "opencode") {
  const prompts = [];
  let hooks;
  const emit = (type, properties) => hooks.event({ event: { type, properties } });
  const promptAsync = async (request) => {
    const how = nextHandover();
    prompts.push({ ...request, how });
    const sessionID = request.path.id;
    if (how === "throw") throw new Error("connection refused");
    if (how === "error") return { error: { name: "BadRequest" }, response: { ok: false, status: 400 } };
    if (how === "reported") {
      realSetTimeout(() => emit("session.error", { sessionID, error: { name: "ProviderAuthError", data: { message: "no API key for anthropic" } } }), 5);
    } else if (how === "ok") {
      const text = request.body.parts[0].text;
      realSetTimeout(() => emit("message.part.updated", { part: { sessionID, messageID: "m1", type: "text", text } }), 5);
    }
    return { data: undefined, response: { ok: true, status: 204 } };
  };
  const client = { session: { promptAsync }, app: { log: async () => ({}) } };
  hooks = await mod.Switchboard({ client, directory: "/repo" });
  await emit("session.created", { info: { id: "oc-s1" } });
  await hooks["chat.message"]({ sessionID: "oc-s1" }, {});
  await say({ step: "ready" });
  for (let step = await next(); step; step = await next()) {
    if (step === "go") {
      await hooks["tool.execute.before"]({ tool: "edit", sessionID: "oc-s1", callID: "c1" }, { args: { filePath: "/repo/a.ts" } });
      const output = { title: "edit", output: "edited a.ts", metadata: {} };
      await hooks["tool.execute.after"]({ tool: "edit", sessionID: "oc-s1", callID: "c1" }, output);
      await say({ step: "tool", output: output.output });
    } else if (step === "idle") {
      await emit("session.idle", { sessionID: "oc-s1" });
      await new Promise((resolve) => realSetTimeout(resolve, 20));
      await say({ step: "idle", prompts });
    } else if (step === "poll") {
      await tick();
      await new Promise((resolve) => realSetTimeout(resolve, 20));
      await say({ step: "poll", prompts });
    } else if (step === "expire") {
      expire();
      await say({ step: "expire", prompts });
    }
  }
} else {
  const handlers = {};
  const sent = [];
  const pi = {
    on: (name, fn) => {
      handlers[name] = fn;
    },
    sendUserMessage: (text, options) => {
      const how = nextHandover();
      sent.push({ text, options, how });
      if (how === "throw") throw new Error("No API key found for anthropic");
      if (how === "ok") {
        const message = { role: "user", content: [{ type: "text", text }] };
        realSetTimeout(() => handlers.message_start({ type: "message_start", message }), 5);
      }
    },
  };
  mod.default(pi);
  await handlers.session_start({}, { cwd: "/repo", sessionManager: { getSessionId: () => "pi-s1" } });
  await handlers.agent_start({});
  await say({ step: "ready" });
  for (let step = await next(); step; step = await next()) {
    if (step === "go") {
      const result = await handlers.tool_result({ toolName: "bash", input: { command: "make test" }, content: [{ type: "text", text: "ok" }] });
      await say({ step: "tool", result });
    } else if (step === "end") {
      await handlers.agent_end({});
      await new Promise((resolve) => realSetTimeout(resolve, 20));
      await say({ step: "end", sent });
    } else if (step === "poll") {
      await tick();
      await new Promise((resolve) => realSetTimeout(resolve, 20));
      await say({ step: "poll", sent });
    } else if (step === "expire") {
      expire();
      await say({ step: "expire", sent });
    }
  }
}
process.exit(0);
