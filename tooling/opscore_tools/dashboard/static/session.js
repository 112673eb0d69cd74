// Session: the waterfall of the trace route (each task attempt on the session's time axis, its queue wait and its
// run as distinct segments, waits hatched, retries, timeouts and fallbacks marked with their reason), and a task's
// input, output and error on click. An admin cancels an open session. #/agent/<id>/session/<sid>?task=<task id>

import { call, enc, get, isFinal } from "./api.js";
import { h, put, clock, confirmThen, duration, json, localTime, refusal } from "./dom.js";

const REFRESH_MS = 3000;
const OPEN = new Set(["waiting", "processing"]);

function ms(stamp) {
  return new Date(stamp).getTime();
}

// The marks of a span, as `opscore trace` prints them: why it is not a plain success.
export function marks(span) {
  const a = span.attributes;
  const found = [];
  if (a.timed_out) found.push({ kind: "timeout", text: "timed out" });
  if ("retry_at" in a) found.push({ kind: "retry", text: `retried${a["error.type"] ? ` after ${a["error.type"]}` : ""}` });
  if (span.kind === "fallback") {
    const cause = a["cause.type"] ? ` after ${a["cause.type"]}${a["cause.message"] ? `: ${a["cause.message"]}` : ""}` : "";
    found.push({ kind: "fallback", text: `fallback for ${a.fallback_for || "?"}${cause}` });
  }
  if (span.status === "ERROR" && a["error.type"] && !("retry_at" in a)) {
    found.push({ kind: "error", text: `${a["error.type"]}${a["error.message"] ? `: ${a["error.message"]}` : ""}` });
  }
  return found;
}

function depths(spans) {
  const depth = {};
  for (const span of spans) depth[span.span_id] = span.parent_span_id ? (depth[span.parent_span_id] ?? -1) + 1 : 0;
  return depth;
}

export function mount(root, { agentId, sessionId, params, navigate, admin }) {
  const selected = params.get("task") || "";
  const head = h("div", { id: "session-head" }, h("p", { class: "pending" }, "Loading the session…"));
  const waterfall = h("div", { id: "waterfall" });
  const detail = h("div", { id: "task-detail" });
  const answer = h("div", { id: "action-answer", class: "answer-slot", "aria-live": "polite" });
  put(root, h("section", { class: "view" },
    h("p", { class: "crumbs" }, admin ? [h("a", { href: "#/fleet" }, "Fleet"), " / "] : null,
      h("a", { href: `#/agent/${enc(agentId)}` }, `agent ${agentId}`), ` / session ${sessionId}`),
    head, answer, waterfall, detail));

  function renderHead(trace) {
    const open = OPEN.has(trace.status);
    const t = trace.totals;
    put(head,
      h("div", { class: "title" }, h("h1", {}, `Session ${trace.workflow_id} v${trace.version}`),
        h("span", { class: `badge status-${trace.status}`, id: "session-status" }, trace.status),
        admin && open ? h("button", { type: "button", id: "cancel-session", class: "danger", "data-focus": "cancel-session", onclick: () => confirmThen(
          `Cancel session ${sessionId}? Its open tasks are skipped and its runner stopped.`,
          () => call("POST", `/agent/${enc(agentId)}/sessions/${enc(sessionId)}/cancel`), answer) }, "Cancel session") : null),
      h("p", { class: "facts mono" }, sessionId),
      h("p", { class: "facts" }, `started ${localTime(trace.start_time)} · ${trace.duration_ms === null ? "still open" : `took ${duration(trace.duration_ms)}`}`),
      h("p", { class: "facts", id: "trace-totals" },
        `attempts ${t.attempts} (retried ${t.retries}, timed out ${t.timeouts}), fallbacks ${t.fallbacks}; queue wait ${duration(t.queue_wait_ms)}, run ${duration(t.run_ms)}, waits ${duration(t.wait_ms)}`));
  }

  function segment(cls, from, to, start, span) {
    return h("span", { class: `seg ${cls}`, style: { left: `${((from - start) / span) * 100}%`, width: `${Math.max(0.3, ((to - from) / span) * 100)}%` } });
  }

  function bar(span, start, total, now) {
    const from = ms(span.start_time);
    const to = span.end_time ? ms(span.end_time) : now;
    const bits = [];
    if (span.kind === "attempt") {
      const leased = span.attributes.leased_at ? ms(span.attributes.leased_at) : to;
      const failed = span.status === "ERROR" ? " failed" : "";
      bits.push(segment(`queue${failed}`, from, leased, start, total));
      if (to > leased || span.attributes.leased_at) bits.push(segment(`run${failed}`, leased, to, start, total));
    } else {
      bits.push(segment(span.kind, from, to, start, total));
    }
    if (!span.end_time) bits.push(h("span", { class: "open-end", style: { left: `${((to - start) / total) * 100}%` } }, "▸"));
    return h("div", { class: "track" }, bits);
  }

  function describe(span) {
    const a = span.attributes;
    if (span.kind === "attempt") {
      const wait = a.queue_wait_ms !== undefined ? `queued ${duration(a.queue_wait_ms)}` : "queued";
      return `${wait}${a.run_ms !== undefined ? `, ran ${duration(a.run_ms)}` : a.leased_at ? ", running" : ""}`;
    }
    return duration(span.duration_ms);
  }

  function renderWaterfall(trace, view) {
    const now = Date.now();
    const start = ms(trace.start_time);
    const ends = trace.spans.map((s) => (s.end_time ? ms(s.end_time) : now));
    const total = Math.max(1, Math.max(...ends) - start);
    const depth = depths(trace.spans);
    const taskIds = new Set(view.tasks.map((t) => t.id));
    const rows = trace.spans.map((span) => {
      const taskId = span.attributes.template_task_id || (span.kind === "fallback" ? span.name.split(" ")[1] : null);
      const clickable = taskId && taskIds.has(taskId);
      const label = h("span", { class: "span-name", title: span.name, style: { paddingLeft: `${(depth[span.span_id] || 0) * 1.1}rem` } }, span.name);
      return h("li", { class: `span kind-${span.kind} status-${span.status}${clickable && taskId === selected ? " selected" : ""}`, "data-span": span.name },
        clickable
          ? h("button", { type: "button", class: "span-head", "data-focus": `span:${span.span_id}`, "aria-pressed": taskId === selected ? "true" : "false",
            onclick: () => navigate({ task: taskId === selected ? "" : taskId }) }, label)
          : h("span", { class: "span-head" }, label),
        h("span", { class: "span-time" }, clock(span.start_time)),
        h("span", { class: "span-took" }, describe(span)),
        bar(span, start, total, now),
        h("span", { class: "marks" }, marks(span).map((m) => h("span", { class: `mark mark-${m.kind}` }, m.text))));
    });
    const ticks = [0, 0.25, 0.5, 0.75, 1].map((f) => h("span", { style: { left: `${f * 100}%` } }, duration(f * total)));
    put(waterfall,
      h("h2", {}, "Waterfall"),
      h("div", { class: "waterfall" },
        h("div", { class: "span header" }, h("span", { class: "span-head" }, "span"), h("span", { class: "span-time" }, "start"),
          h("span", { class: "span-took" }, "took"), h("div", { class: "track ticks", "aria-hidden": "true" }, ticks), h("span", { class: "marks" }, "")),
        h("ol", { class: "spans" }, rows)),
      h("ul", { class: "legend" },
        h("li", {}, h("span", { class: "swatch seg queue" }), "queue wait"),
        h("li", {}, h("span", { class: "swatch seg run" }), "run"),
        h("li", {}, h("span", { class: "swatch seg run failed" }), "failed attempt"),
        h("li", {}, h("span", { class: "swatch seg wait" }), "delay, retry backoff"),
        h("li", {}, h("span", { class: "swatch seg fallback" }), "fallback"),
        h("li", {}, "Click a task's row for its input, output and error.")));
  }

  function renderDetail(view) {
    const task = view.tasks.find((t) => t.id === selected);
    if (!task) {
      put(detail, view.error ? h("p", { class: "error" }, `Session error: ${view.error.type}: ${view.error.message}`) : "");
      return;
    }
    put(detail, h("section", { class: "task", "aria-label": `task ${task.id}` },
      h("h2", {}, `Task ${task.id}`, h("span", { class: `badge status-${task.status}` }, task.status)),
      h("p", { class: "facts" }, `${task.action} · ${task.attempts} attempt(s) · priority ${task.priority ?? "—"}`,
        task.fallback_for.length ? ` · ran in place of ${task.fallback_for.join(", ")}` : ""),
      h("div", { class: "columns three" },
        h("section", {}, h("h3", {}, "Input"), task.input === null ? h("p", { class: "hint" }, "not queued yet") : json(task.input)),
        h("section", {}, h("h3", {}, "Output"), task.output === null ? h("p", { class: "hint" }, "none") : json(task.output)),
        h("section", { id: "task-error" }, h("h3", {}, "Error"), task.error === null ? h("p", { class: "hint" }, "none") : json(task.error))),
      h("h3", {}, "Attempts"),
      h("div", { class: "scroll" }, h("table", { class: "grid compact" },
        h("thead", {}, h("tr", {}, ["#", "status", "queued", "leased", "ended", "error"].map((l) => h("th", { scope: "col" }, l)))),
        h("tbody", {}, task.history.map((r) => h("tr", {},
          h("td", {}, r.attempt), h("td", {}, r.status), h("td", {}, clock(r.queued_at)), h("td", {}, clock(r.leased_at)),
          h("td", {}, clock(r.ended_at)), h("td", { class: "error" }, r.error ? `${r.error.type}: ${r.error.message || ""}` : ""))))))));
  }

  async function refresh() {
    const base = `/agent/${enc(agentId)}/sessions/${enc(sessionId)}`;
    const [trace, view] = await Promise.all([get(`${base}/trace`), get(base)]);
    renderHead(trace);
    renderWaterfall(trace, view);
    renderDetail(view);
    if (!OPEN.has(trace.status)) stop = true;
  }

  let stop = false;
  function failed(error) {
    if (error.status === 404) put(head, h("p", { class: "error", role: "alert", id: "view-error" }, `No session ${sessionId} for agent ${agentId} (404).`));
    else if (isFinal(error)) put(head, refusal(error));
  }
  // An ended session changes no more: it is read once (a cancel reloads the view).
  return { refresh, failed, every: () => (stop ? 30000 : REFRESH_MS) };
}
