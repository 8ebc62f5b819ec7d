// Drives our OpenCode plugin or Pi extension the way the harness would, with a fake harness
// object that records what the plugin asks of it. Steps are paced by lines on stdin ("go"), so
// the Python test can send messages in between; results go out as JSON lines on stdout.
import { createInterface } from "node:readline";

const [kind, path] = process.argv.slice(2);
const lines = createInterface({ input: process.stdin })[Symbol.asyncIterator]();
const next = async () => (await lines.next()).value;
const say = (value) => console.log(JSON.stringify(value));
const mod = await import(path);

if (kind === "opencode") {
  const prompts = [];
  const client = { session: { promptAsync: async (request) => { prompts.push(request); } } };
  const hooks = await mod.Switchboard({ client, directory: "/repo" });
  await hooks.event({ event: { type: "session.created", properties: { info: { id: "oc-s1" } } } });
  await hooks["chat.message"]({ sessionID: "oc-s1" }, {});
  say({ step: "ready" });
  await next();
  await hooks["tool.execute.before"]({ tool: "edit", sessionID: "oc-s1", callID: "c1" }, { args: { filePath: "/repo/a.ts" } });
  const output = { title: "edit", output: "edited a.ts", metadata: {} };
  await hooks["tool.execute.after"]({ tool: "edit", sessionID: "oc-s1", callID: "c1" }, output);
  say({ step: "tool", output: output.output });
  await next();
  await hooks.event({ event: { type: "session.idle", properties: { sessionID: "oc-s1" } } });
  say({ step: "idle", prompts });
} else {
  const handlers = {};
  const sent = [];
  const pi = { on: (name, fn) => { handlers[name] = fn; }, sendUserMessage: (text, options) => sent.push({ text, options }) };
  mod.default(pi);
  await handlers.session_start({}, { cwd: "/repo", sessionManager: { getSessionId: () => "pi-s1" } });
  await handlers.agent_start({});
  say({ step: "ready" });
  await next();
  const result = await handlers.tool_result({ toolName: "bash", input: { command: "make test" }, content: [{ type: "text", text: "ok" }] });
  say({ step: "tool", result });
  await next();
  await handlers.agent_end({});
  say({ step: "end", sent });
}
process.exit(0);
