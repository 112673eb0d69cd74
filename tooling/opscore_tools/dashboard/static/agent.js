// Agent: its state timeline over a chosen window (coloured bands from the state history), its stats, its queue by
// priority and its recent sessions; an admin lifts its quarantine, cancels a session or triggers a stored workflow.
// #/agent/<id>?window=1h

import { all, call, enc, get, isFinal } from "./api.js";
import { h, put, ago, badge, clock, confirmThen, duration, empty, localTime, percent, refusal } from "./dom.js";

const WINDOWS = ["15m", "1h", "6h", "24h"];
const STATES = ["initializing", "idle", "busy", "paused", "error", "offline"];
const REFRESH_MS = 3000;
const OPEN = new Set(["waiting", "processing"]);

function windowMs(text) {
  const amount = Number.parseInt(text, 10);
  return amount * (text.endsWith("h") ? 3600000 : 60000);
}

// The bands of the window: each history entry (newest first from the API) holds from its timestamp to the next one;
// before the first entry in the window the agent was in that entry's previous_state (unknown, when the history read
// stopped short of the window's start: `partial`).
export function bands(history, current, since, until, partial = false) {
  const entries = [...history].sort((a, b) => a.timestamp.localeCompare(b.timestamp));
  const result = [];
  let state = entries.length ? entries[0].previous_state : (current ? current.state : null);
  if (partial) state = null;
  let from = since;
  for (const entry of entries) {
    const at = Math.max(since, new Date(entry.timestamp).getTime());
    if (at > from) result.push({ state, from, to: at });
    state = entry.state;
    from = at;
  }
  if (until > from) result.push({ state, from, to: until });
  return result;
}

export function mount(root, { agentId, params, navigate, admin }) {
  const window_ = WINDOWS.includes(params.get("window")) ? params.get("window") : "1h";
  const answer = h("div", { id: "action-answer", class: "answer-slot", "aria-live": "polite" });
  const parts = {
    head: h("div", { id: "agent-head" }, h("p", { class: "pending" }, "Loading the agent…")),
    timeline: h("div", { id: "agent-timeline" }),
    stats: h("div", { id: "agent-stats" }),
    queue: h("div", { id: "agent-queue" }),
    sessions: h("div", { id: "agent-sessions" }),
  };
  const windowSelect = h("select", { id: "agent-window", onchange: (event) => navigate({ window: event.target.value }) },
    WINDOWS.map((name) => h("option", { value: name, selected: name === window_ }, name)));
  const trigger = admin ? triggerForm(agentId, answer) : null;
  put(root, h("section", { class: "view" },
    h("p", { class: "crumbs" }, admin ? h("a", { href: "#/fleet" }, "Fleet") : null, admin ? " / " : null, `agent ${agentId}`),
    parts.head,
    answer,
    h("div", { class: "title" }, h("h2", {}, "State timeline"),
      h("div", { class: "filters" }, h("label", { for: "agent-window" }, "Window "), windowSelect)),
    parts.timeline,
    h("div", { class: "columns" },
      h("section", {}, h("h2", {}, `Stats (last ${window_})`), parts.stats),
      h("section", {}, h("h2", {}, "Queue by priority"), parts.queue)),
    h("h2", {}, "Recent sessions"),
    parts.sessions,
    trigger));

  function renderHead(agent) {
    const quarantine = agent.quarantine;
    const state = agent.current_state ? agent.current_state.state : null;
    put(parts.head,
      h("div", { class: "title" }, h("h1", {}, agent.name && agent.name !== agent.agent_id ? `${agent.name} (${agent.agent_id})` : agent.agent_id), badge(state)),
      h("p", { class: "facts" },
        `last seen `, ago(agent.last_seen_at), ` · delivery ${agent.delivery} · max concurrency ${agent.max_concurrency}`,
        agent.capabilities.length ? ` · capabilities ${agent.capabilities.join(", ")}` : "",
        agent.current_state && agent.current_state.error ? h("span", { class: "error" }, ` · error ${agent.current_state.error.type}: ${agent.current_state.error.message || ""}`) : ""),
      quarantine ? h("div", { class: "banner", id: "quarantine" },
        h("p", {}, h("strong", {}, "Quarantined"), ` since ${localTime(quarantine.since)}: ${quarantine.failures} failure(s) in ${quarantine.window_seconds} s, last ${quarantine.last_error_type}`,
          quarantine.half_open ? " — half-open: it may lease one probe task" : ` — probe after ${localTime(quarantine.probe_after)}`),
        admin ? h("button", { type: "button", id: "lift-quarantine", class: "danger", "data-focus": "lift-quarantine", onclick: () => confirmThen(
          `Lift the quarantine of ${agentId}? Its failures are cleared and its queued tasks are handed out again.`,
          () => call("DELETE", `/agent/${enc(agentId)}/quarantine`), answer) }, "Lift quarantine") : null) : null);
  }

  function renderTimeline(history, more, current, since, until) {
    const span = until - since;
    const segments = bands(history, current, since, until, more);
    const bar = h("div", { class: "timeline", role: "img", "aria-label": `state timeline over the last ${window_}` },
      segments.map((band) => h("span", {
        class: `band state-${band.state || "none"}`,
        "data-state": band.state || "none",
        style: { left: `${((band.from - since) / span) * 100}%`, width: `${Math.max(0.2, ((band.to - band.from) / span) * 100)}%` },
        title: `${band.state || "no report"}: ${clock(new Date(band.from).toISOString())} – ${clock(new Date(band.to).toISOString())} (${duration(band.to - band.from)})`,
      })));
    put(parts.timeline, bar,
      h("div", { class: "axis" }, h("span", {}, localTime(new Date(since).toISOString())), h("span", {}, "now")),
      h("ul", { class: "legend" }, STATES.map((name) => h("li", {}, h("span", { class: `swatch state-${name}` }), name)),
        h("li", {}, h("span", { class: "swatch state-none" }), "no report")),
      h("p", { class: "hint" }, more
        ? `The newest ${history.length} state changes: the bands before them are not drawn from the history; choose a shorter window.`
        : `${history.length} state change${history.length === 1 ? "" : "s"} in the window`));
  }

  function renderStats(stats) {
    const t = stats.tasks;
    const rows = [
      ["Success rate", `${percent(t.success_rate)} (${t.succeeded} succeeded, ${t.failed} failed, ${t.timed_out} timed out)`, "success-rate"],
      ["Queue wait p50 / p95", `${duration(stats.queue_wait_ms.p50)} / ${duration(stats.queue_wait_ms.p95)} (${stats.queue_wait_ms.count} attempts)`, "queue-wait"],
      ["Run time p50 / p95", `${duration(stats.run_time_ms.p50)} / ${duration(stats.run_time_ms.p95)} (${stats.run_time_ms.count} attempts)`, "run-time"],
      ["Utilisation", percent(stats.utilisation), "utilisation"],
      ["Error streak", String(stats.failure_streak), "failure-streak"],
      ["Time in states", STATES.filter((s) => stats.state_seconds[s] > 0).map((s) => `${s} ${duration(stats.state_seconds[s] * 1000)}`).join(", ") || "—", "state-seconds"],
    ];
    put(parts.stats, h("dl", { class: "stats" }, rows.map(([label, value, id]) => [h("dt", {}, label), h("dd", { "data-stat": id }, value)])),
      stats.sampled ? h("p", { class: "hint" }, "Sampled: a read bound was reached; the figures cover the newest part of the window.") : null);
  }

  // The queue's list stays open or closed across refreshes, as the operator left it.
  let queueOpen = false;
  function renderQueue(queue, tasks) {
    const byPriority = queue.queued_by_priority;
    const most = Math.max(1, ...Object.values(byPriority));
    const rows = Object.keys(byPriority).sort().reverse().map((priority) => h("tr", { "data-priority": priority },
      h("th", { scope: "row" }, `priority ${priority}`),
      h("td", { class: "num" }, byPriority[priority]),
      h("td", { class: "meter-cell" }, h("span", { class: "meter", style: { width: `${(byPriority[priority] / most) * 100}%` } }))));
    put(parts.queue,
      h("p", { class: "facts", id: "queue-counts" }, `${queue.queued} queued, ${queue.in_flight} in flight`),
      rows.length ? h("table", { class: "grid compact" }, h("tbody", {}, rows)) : empty("Nothing is queued."),
      tasks.length ? h("details", { id: "queue-tasks", open: queueOpen, ontoggle: (event) => { queueOpen = event.currentTarget.open; } },
        h("summary", { "data-focus": "queue-tasks" }, `The queue, in dispatch order (${tasks.length})`),
        h("ol", { class: "queue" }, tasks.map((task) => h("li", {}, `p${task.priority} ${task.action} `,
          h("a", { href: `#/agent/${enc(agentId)}/session/${enc(task.session_id)}` }, task.task_id), ` · attempt ${task.attempt} · queued `, ago(task.enqueued_at))))) : null);
  }

  function renderSessions(items) {
    if (!items.length) {
      put(parts.sessions, empty("No sessions yet — start one:", `curl -X POST ${location.origin}/v1/opscore/agent/${agentId}/workflow \\\n  -H "X-API-Key: $ADMIN_KEY" -H 'Content-Type: application/json' -d '{"workflow_id": "my-workflow"}'`));
      return;
    }
    put(parts.sessions, h("div", { class: "scroll" }, h("table", { class: "grid", id: "sessions-table" },
      h("thead", {}, h("tr", {}, ["Session", "Workflow", "Status", "Created", "Took", "Error", admin ? "" : null].filter((x) => x !== null).map((label) => h("th", { scope: "col" }, label)))),
      h("tbody", {}, items.map((s) => h("tr", { "data-session": s.session_id },
        h("th", { scope: "row" }, h("a", { href: `#/agent/${enc(agentId)}/session/${enc(s.session_id)}`, class: "mono", "data-focus": `session:${s.session_id}` }, s.session_id.slice(0, 12) + "…")),
        h("td", {}, `${s.workflow_id} v${s.version}`),
        h("td", { "data-col": "status" }, h("span", { class: `badge status-${s.status}` }, s.status)),
        h("td", {}, localTime(s.created_at)),
        h("td", {}, s.ended_at ? duration(new Date(s.ended_at) - new Date(s.created_at)) : "open"),
        h("td", { class: "error" }, s.error ? s.error.type : ""),
        admin ? h("td", {}, OPEN.has(s.status) ? h("button", { type: "button", class: "danger small", "data-cancel": s.session_id, "data-focus": `cancel:${s.session_id}`, onclick: () => confirmThen(
          `Cancel session ${s.session_id}? Its open tasks are skipped and its runner stopped.`,
          () => call("POST", `/agent/${enc(agentId)}/sessions/${enc(s.session_id)}/cancel`), answer) }, "Cancel") : "") : null))))));
  }

  async function refresh() {
    const until = Date.now();
    const since = until - windowMs(window_);
    const base = `/agent/${enc(agentId)}`;
    const [agent, stats, history, sessions, tasks] = await Promise.all([
      get(base),
      get(`${base}/stats`, { window: window_ }),
      all(`${base}/state/history`, { since: new Date(since).toISOString(), limit: 100 }, 5),
      get(`${base}/sessions`, { limit: 15 }),
      get(`${base}/tasks`, { limit: 50 }),
    ]);
    renderHead(agent);
    renderTimeline(history.items, history.more, agent.current_state, since, until);
    renderStats(stats);
    renderQueue(stats.queue, tasks.items);
    renderSessions(sessions.items);
  }

  function failed(error) {
    if (error.status === 404) put(parts.head, empty(`No agent ${agentId} is registered.`));
    else if (error.status === 403) put(parts.head, empty(`This key may not see agent ${agentId} (403).`));
    else if (isFinal(error)) put(parts.head, refusal(error));
  }

  return { refresh, failed, every: () => REFRESH_MS };
}

// Trigger a stored workflow for the agent (POST /agent/{id}/workflow): pick a template from GET /workflows, an input.
function triggerForm(agentId, answer) {
  const select = h("select", { id: "trigger-workflow" }, h("option", { value: "" }, "loading…"));
  const input = h("textarea", { id: "trigger-input", rows: 3, spellcheck: "false" }, "{}");
  const priority = h("input", { id: "trigger-priority", type: "number", min: 0, max: 9, placeholder: "5" });
  const problem = h("p", { class: "error", id: "trigger-problem", role: "alert" });
  // Listed when the form is drawn and again each time the list gets the focus: a workflow stored since shows up.
  const load = () => all("/workflows", { limit: 100 }, 5).then(({ items }) => {
    const chosen = select.value;
    put(select, h("option", { value: "" }, items.length ? "choose a workflow" : "no stored workflows: POST /workflows first"),
      ...items.map((w) => h("option", { value: w.workflow_id, selected: w.workflow_id === chosen }, `${w.workflow_id} (v${w.latest_version})${w.description ? ` — ${w.description}` : ""}`)));
  }).catch((error) => { problem.textContent = `Cannot list workflows: ${error.message}`; });
  select.addEventListener("focus", load);
  load();
  return h("section", { class: "trigger" },
    h("h2", {}, "Trigger a workflow"),
    h("form", { id: "trigger-form", onsubmit: (event) => {
      event.preventDefault();
      problem.textContent = "";
      let parsed;
      try {
        parsed = JSON.parse(input.value || "{}");
      } catch (error) {
        problem.textContent = `The input is not JSON: ${error.message}`;
        return;
      }
      const body = { workflow_id: select.value, input: parsed };
      if (priority.value !== "") body.priority = Number(priority.value);
      confirmThen(`Start workflow ${select.value || "(none chosen)"} for ${agentId}?`,
        () => call("POST", `/agent/${enc(agentId)}/workflow`, { body }), answer);
    } },
    h("label", { for: "trigger-workflow" }, "Workflow"), select,
    h("label", { for: "trigger-input" }, "Input (JSON object)"), input,
    h("label", { for: "trigger-priority" }, "Priority (0 to 9)"), priority,
    h("button", { type: "submit", id: "trigger-submit" }, "Trigger…"),
    problem));
}
