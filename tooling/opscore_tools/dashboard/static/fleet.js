// Fleet: every agent (GET /agents, every page) with its state, last contact, queue and quarantine; filter by state,
// sort by any column. Filters live in the URL: #/fleet?state=busy&sort=last_seen&dir=desc.

import { all, enc, isFinal } from "./api.js";
import { h, put, ago, badge, empty, localTime, refusal } from "./dom.js";

const STATES = ["initializing", "idle", "busy", "paused", "error", "offline"];
const COLUMNS = [
  { key: "agent", label: "Agent", value: (a) => a.agent_id },
  { key: "state", label: "State", value: (a) => a.state || "" },
  { key: "last_seen", label: "Last seen", value: (a) => a.last_seen_at || "" },
  { key: "queued", label: "Queued", value: (a) => a.queued, numeric: true },
  { key: "in_flight", label: "In flight", value: (a) => a.in_flight, numeric: true },
  { key: "quarantined", label: "Quarantined", value: (a) => (a.quarantined ? 1 : 0), numeric: true },
  { key: "failure_streak", label: "Error streak", value: (a) => a.failure_streak, numeric: true },
];
const REFRESH_MS = 3000;

export function mount(root, { params, navigate }) {
  const state = params.get("state") || "";
  const sort = COLUMNS.some((c) => c.key === params.get("sort")) ? params.get("sort") : "agent";
  const dir = params.get("dir") === "desc" ? "desc" : "asc";
  const filters = () => ({ state, sort, dir });

  const stateSelect = h("select", { id: "fleet-state", onchange: (event) => navigate({ ...filters(), state: event.target.value }) },
    h("option", { value: "" }, "every state"),
    STATES.map((name) => h("option", { value: name, selected: name === state }, name)));
  const body = h("div", { id: "fleet-body" }, h("p", { class: "pending" }, "Loading the fleet…"));
  const note = h("p", { class: "hint", id: "fleet-note" });
  put(root, h("section", { class: "view" },
    h("div", { class: "title" }, h("h1", {}, "Fleet"),
      h("div", { class: "filters" }, h("label", { for: "fleet-state" }, "State "), stateSelect)),
    body, note));

  function header(column) {
    const active = column.key === sort;
    const next = active && dir === "asc" ? "desc" : "asc";
    const arrow = active ? (dir === "asc" ? " ▲" : " ▼") : "";
    return h("th", { scope: "col", "aria-sort": active ? (dir === "asc" ? "ascending" : "descending") : "none", class: column.numeric ? "num" : "" },
      h("button", { type: "button", class: "sort", "data-sort": column.key, "data-focus": `sort:${column.key}`, onclick: () => navigate({ ...filters(), sort: column.key, dir: next }) },
        column.label + arrow));
  }

  function row(agent) {
    const now = Date.now();
    return h("tr", { "data-agent": agent.agent_id, class: agent.quarantined ? "quarantined" : "" },
      h("th", { scope: "row" }, h("a", { href: `#/agent/${enc(agent.agent_id)}`, "data-focus": `agent:${agent.agent_id}` }, agent.agent_id),
        agent.name && agent.name !== agent.agent_id ? h("span", { class: "hint" }, ` ${agent.name}`) : null),
      h("td", { "data-col": "state", title: agent.state_timestamp ? `since ${localTime(agent.state_timestamp)}` : "" }, badge(agent.state)),
      h("td", { "data-col": "last_seen" }, ago(agent.last_seen_at, now)),
      h("td", { class: "num", "data-col": "queued" }, agent.queued),
      h("td", { class: "num", "data-col": "in_flight" }, `${agent.in_flight} / ${agent.max_concurrency}`),
      h("td", { class: "num", "data-col": "quarantined" }, agent.quarantined ? h("span", { class: "badge state-error" }, "quarantined") : "no"),
      h("td", { class: "num", "data-col": "failure_streak" }, agent.failure_streak));
  }

  async function refresh() {
    const { items, more } = await all("/agents", { state, limit: 100 });
    const column = COLUMNS.find((c) => c.key === sort);
    const sign = dir === "asc" ? 1 : -1;
    items.sort((a, b) => {
      const [x, y] = [column.value(a), column.value(b)];
      const order = column.numeric ? x - y : String(x).localeCompare(String(y));
      return sign * (order || a.agent_id.localeCompare(b.agent_id));
    });
    note.textContent = more ? "Showing the first 1,000 agents; filter by state to see others." : `${items.length} agent${items.length === 1 ? "" : "s"}`;
    if (!items.length) {
      put(body, state
        ? empty(`No agent is ${state} now.`)
        : empty("No agents yet — make an agent key as an admin (its api_key is $AGENT_KEY), then register the agent with it:",
          `curl -X POST ${location.origin}/v1/opscore/keys \\\n  -H "X-API-Key: $ADMIN_KEY" -H 'Content-Type: application/json' -d '{"agent_id": "my-agent"}'\n` +
          `curl -X PUT ${location.origin}/v1/opscore/agent/my-agent \\\n  -H "X-API-Key: $AGENT_KEY" -H 'Content-Type: application/json' -d '{"name": "my agent"}'`));
      return;
    }
    put(body, h("div", { class: "scroll" }, h("table", { class: "grid", id: "fleet-table" },
      h("thead", {}, h("tr", {}, COLUMNS.map(header))),
      h("tbody", {}, items.map(row)))));
  }

  function failed(error) {
    if (isFinal(error)) put(body, refusal(error));
  }

  return { refresh, failed, every: () => REFRESH_MS };
}
