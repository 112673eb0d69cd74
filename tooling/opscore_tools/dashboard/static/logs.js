// Logs: the `opscore logs` filters (agent, session, level, error type, event, time window, text), read by the
// dashboard's server from the same sources as the command (the local runtime's file, or a stack's CloudWatch);
// follow mode re-reads as often as the server says (two seconds for a file, slower for a stack, where each read is
// a Logs Insights query); without it the lines are read once. Each line expands to its JSON. Admin keys only.
// #/logs?agent=a1&level=WARNING&since=15m&follow=1

import { call } from "./api.js";
import { h, put, empty, json, localTime } from "./dom.js";

const FIELDS = [
  { name: "agent", label: "Agent", placeholder: "agent id" },
  { name: "session", label: "Session", placeholder: "session id" },
  { name: "event", label: "Event", placeholder: "task_failed" },
  { name: "error_type", label: "Error type", placeholder: "States.Timeout" },
  { name: "since", label: "Since", placeholder: "15m, 2h, 1d" },
  { name: "grep", label: "Text", placeholder: "a regular expression" },
];
// A window by its ends, in the browser's zone in the form and as UTC instants in the URL (the server's --start/--end).
const INSTANTS = [{ name: "start", label: "From" }, { name: "end", label: "Until" }];
const LEVELS = ["", "DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"];
const FOLLOW_MS = 2000; // until the server's first answer says how often to re-read
const ID_FIELDS = [["session", "session_id"], ["task", "task_id"], ["workflow", "workflow_id"]];

export function mount(root, { params, navigate }) {
  const follow = params.get("follow") === "1";
  let followMs = FOLLOW_MS;
  const expanded = new Set();
  const form = h("form", { class: "log-filters", id: "log-filters", onsubmit: (event) => {
    event.preventDefault();
    const data = new FormData(form);
    const next = {};
    for (const [name, value] of data.entries()) if (String(value).trim()) next[name] = String(value).trim();
    for (const { name } of INSTANTS) if (next[name]) next[name] = new Date(next[name]).toISOString();
    next.follow = data.get("follow") ? "1" : "";
    navigate(next);
  } },
  FIELDS.map((field) => h("label", {}, h("span", {}, field.label),
    h("input", { name: field.name, id: `log-${field.name}`, value: params.get(field.name) || "", placeholder: field.placeholder, autocomplete: "off", spellcheck: "false" }))),
  INSTANTS.map((field) => h("label", {}, h("span", {}, field.label),
    h("input", { name: field.name, id: `log-${field.name}`, type: "datetime-local", value: localInput(params.get(field.name)) }))),
  h("label", {}, h("span", {}, "Level"), h("select", { name: "level", id: "log-level" },
    LEVELS.map((level) => h("option", { value: level, selected: level === (params.get("level") || "") }, level ? `${level} and above` : "any")))),
  h("label", { class: "check" }, h("input", { type: "checkbox", name: "follow", id: "log-follow", value: "1", checked: follow }), "Follow"),
  h("button", { type: "submit", id: "log-apply" }, "Apply"));
  const body = h("div", { id: "log-lines" }, h("p", { class: "pending" }, "Reading the logs…"));
  const note = h("p", { class: "hint", id: "log-note" });
  put(root, h("section", { class: "view" }, h("h1", {}, "Logs"), form, note, body));

  function row(line) {
    const r = line.record;
    const id = JSON.stringify(r); // a line's own content: it keeps its expansion as follow mode adds lines
    const open = expanded.has(id);
    const ids = ID_FIELDS.filter(([, field]) => r[field]).map(([label, field]) => `${label}=${r[field]}`).join(" ");
    let message = r.message || "";
    if (r.method && r.path && r.status) message += ` ${r.method} ${r.path} ${r.status}`;
    if (r.error_type || r.error_message) message += ` [${[r.error_type, r.error_message].filter(Boolean).join(": ")}]`;
    return h("li", { class: `log level-${String(r.level).toUpperCase()}`, "data-event": r.event || "" },
      h("button", { type: "button", class: "log-line", "aria-expanded": open ? "true" : "false", "data-focus": `log:${line.time}:${r.event || ""}:${r.message || ""}`, onclick: (event) => {
        if (expanded.has(id)) expanded.delete(id); else expanded.add(id);
        event.currentTarget.setAttribute("aria-expanded", expanded.has(id) ? "true" : "false");
        event.currentTarget.nextSibling.hidden = !expanded.has(id);
      } },
      h("span", { class: "log-time" }, line.time ? localTime(line.time) : "—"),
      h("span", { class: "log-level" }, r.level),
      h("span", { class: "log-agent" }, r.agent_id || "—"),
      h("span", { class: "log-event" }, r.event || "—"),
      h("span", { class: "log-message" }, message, ids ? h("span", { class: "hint" }, ` ${ids}`) : null)),
      h("div", { class: "log-json", hidden: !open }, json(r)));
  }

  async function refresh() {
    const query = {};
    for (const name of ["agent", "session", "event", "error_type", "since", "start", "end", "grep", "level"]) query[name] = params.get(name);
    const answer = await call("GET", "/ui/api/logs", { query });
    if (answer.status !== 200) {
      const error = answer.body && answer.body.error;
      const text = `${answer.status} ${error ? `${error.code}: ${error.message}` : "failed"}`;
      put(body, h("p", { class: "error", role: "alert", id: "log-error" }, answer.status === 403
        ? "The log view is for admin keys (403): log lines name every agent. An agent key sees its own agent's view only."
        : text));
      return;
    }
    const { lines, matched, notes, source } = answer.body;
    if (answer.body.follow_seconds) followMs = answer.body.follow_seconds * 1000;
    const live = follow ? ` · following (every ${followMs / 1000} s)` : " · read once: tick Follow and Apply for new lines as they come";
    note.textContent = `${source} · ${lines.length} line${lines.length === 1 ? "" : "s"}${matched !== null && matched > lines.length ? ` of ${matched}` : ""}${notes.length ? ` · ${notes.join("; ")}` : ""}${live}`;
    if (!lines.length) {
      const source = answer.body.source_flags ? ` ${answer.body.source_flags}` : "";
      put(body, empty("No matching lines. The same search from a terminal:", `opscore logs${source}${commandFlags(params)}`));
      return;
    }
    const atBottom = window.innerHeight + window.scrollY >= document.body.scrollHeight - 40;
    put(body, h("ol", { class: "logs" }, lines.map(row)));
    if (follow && atBottom) window.scrollTo(0, document.body.scrollHeight);
  }

  return { refresh, every: follow ? () => followMs : null };
}

function commandFlags(params) {
  const flag = {
    agent: "--agent", session: "--session", event: "--event", error_type: "--error-type", since: "--since",
    start: "--start", end: "--end", grep: "--grep", level: "--level",
  };
  let text = "";
  for (const [name, option] of Object.entries(flag)) {
    const value = params.get(name);
    if (value) text += ` ${option} ${/^[\w.:-]+$/.test(value) ? value : `'${value.replace(/'/g, "'\\''")}'`}`;
  }
  return text + (params.get("follow") === "1" ? " --follow" : "");
}

// An instant as a datetime-local input's value, in the browser's zone ("" when there is none).
function localInput(stamp) {
  const moment = stamp ? new Date(stamp) : null;
  if (!moment || Number.isNaN(moment.getTime())) return "";
  const pad = (n) => String(n).padStart(2, "0");
  return `${moment.getFullYear()}-${pad(moment.getMonth() + 1)}-${pad(moment.getDate())}T${pad(moment.getHours())}:${pad(moment.getMinutes())}`;
}
