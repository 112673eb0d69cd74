// The dashboard's shell: sign-in, the router (views and their filters live in the URL's hash, so a link can be
// shared: #/fleet?state=busy&sort=last_seen), and the refresh loop every view shares (a refresh never overlaps the
// one before it and never blanks what is shown: a failed refresh says so and keeps the last answer; a 4xx, which the
// same request would get again, is shown in the view and ends the polling).

import { call, enc, isFinal, session, ApiError } from "./api.js";
import { h, put } from "./dom.js";
import * as fleet from "./fleet.js";
import * as agent from "./agent.js";
import * as sessionView from "./session.js";
import * as logs from "./logs.js";

const main = document.getElementById("main");
const status = document.getElementById("status");
let generation = 0;
// Ends the current loop's wait at once (a tab shown again refreshes now, keeping what was typed in the view).
let wake = () => {};

function parseHash() {
  const raw = location.hash.replace(/^#/, "") || "/";
  const [path, query = ""] = raw.split("?");
  const parts = path.split("/").filter(Boolean).map(decodeURIComponent);
  return { parts, params: new URLSearchParams(query) };
}

// The view a route names: [module, its arguments]; null when the route is unknown.
function viewOf(parts) {
  if (parts[0] === "fleet" && parts.length === 1) return [fleet, {}];
  if (parts[0] === "logs" && parts.length === 1) return [logs, {}];
  if (parts[0] === "agent" && parts.length === 2) return [agent, { agentId: parts[1] }];
  if (parts[0] === "agent" && parts[2] === "session" && parts.length === 4) {
    return [sessionView, { agentId: parts[1], sessionId: parts[3] }];
  }
  return null;
}

function home() {
  return session.isAdmin() ? "#/fleet" : `#/agent/${enc(session.agent())}`;
}

export function navigate(params, replace = true) {
  // The view's filters, written back into the hash (replacing the entry: filters are not history steps).
  const { parts } = parseHash();
  const query = new URLSearchParams();
  for (const [name, value] of Object.entries(params)) {
    if (Array.isArray(value)) value.filter(Boolean).forEach((one) => query.append(name, one));
    else if (value !== undefined && value !== null && value !== "" && value !== false) query.set(name, value);
  }
  const text = query.toString();
  const hash = `#/${parts.map(enc).join("/")}${text ? `?${text}` : ""}`;
  if (hash === location.hash) return;
  if (replace) history.replaceState(null, "", hash);
  else history.pushState(null, "", hash);
  route();
}

function showChrome() {
  const signedIn = Boolean(session.key());
  document.getElementById("nav").hidden = !signedIn || !session.isAdmin();
  document.getElementById("sign-out").hidden = !signedIn;
  document.getElementById("who").textContent = signedIn
    ? (session.isAdmin() ? "signed in: admin key" : `signed in: agent ${session.agent()}`)
    : "";
  const current = parseHash().parts[0];
  for (const link of document.querySelectorAll("#nav a")) {
    if (link.dataset.view === current) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
}

function route() {
  generation += 1;
  const mine = generation;
  const focused = document.activeElement && document.activeElement.id;
  const focusKey = document.activeElement && document.activeElement.dataset ? document.activeElement.dataset.focus : null;
  showChrome();
  if (!session.key()) {
    signInView();
    return;
  }
  const { parts, params } = parseHash();
  const found = viewOf(parts);
  if (!found) {
    location.replace(home());
    return;
  }
  const [view, args] = found;
  if (!session.isAdmin() && (view === fleet || view === logs || args.agentId !== session.agent())) {
    put(main, h("section", { class: "view" }, h("h1", {}, "Not for this key"),
      h("p", { class: "error" }, `An agent key sees only its own agent (${session.agent()}).`),
      h("p", {}, h("a", { href: home() }, "Go to your agent"))));
    return;
  }
  const mounted = view.mount(main, { ...args, params, navigate, admin: session.isAdmin() });
  if (focused) {
    const again = document.getElementById(focused);
    if (again) again.focus();
  }
  loop(mounted, mine, focusKey);
}

// `focusKey`: the control that had the focus when the view was (re)mounted, given back once its row is drawn.
async function loop(mounted, mine, focusKey) {
  let first = true;
  while (mine === generation) {
    if (!document.hidden) {
      try {
        const active = document.activeElement && document.activeElement.dataset ? document.activeElement.dataset.focus : null;
        const focus = first ? focusKey || active : active;
        first = false;
        await mounted.refresh();
        if (mine !== generation) return;
        // A refresh redraws rows: give the focus back to the same row's control, for keyboard users.
        if (focus && (!document.activeElement || document.activeElement === document.body)) {
          const again = document.querySelector(`[data-focus="${CSS.escape(focus)}"]`);
          if (again) again.focus();
        }
        status.textContent = `Updated ${new Date().toLocaleTimeString()}`;
        status.className = "status";
      } catch (error) {
        if (mine !== generation) return;
        if (error instanceof ApiError && error.status === 401) {
          session.signOut();
          signInView("The API no longer accepts this key (401): sign in again.");
          return;
        }
        status.textContent = `Could not refresh: ${error.message}`;
        status.className = "status error";
        if (mounted.failed) mounted.failed(error);
        if (isFinal(error)) return;
      }
    }
    if (!mounted.every) return;
    await new Promise((resolve) => {
      const timer = setTimeout(resolve, mounted.every());
      wake = () => { clearTimeout(timer); resolve(); };
    });
  }
}

function signInView(notice) {
  generation += 1;
  showChrome();
  const message = h("p", { class: "error", id: "sign-in-error", role: "alert" }, notice || "");
  const keyInput = h("input", { id: "api-key", name: "key", type: "password", autocomplete: "off", required: true, spellcheck: "false" });
  const agentInput = h("input", { id: "agent-id", name: "agent", type: "text", autocomplete: "off", spellcheck: "false" });
  const submit = h("button", { type: "submit" }, "Sign in");
  const form = h("form", { class: "sign-in", onsubmit: async (event) => {
    event.preventDefault();
    submit.disabled = true;
    message.textContent = "Checking the key…";
    try {
      message.textContent = await signIn(keyInput.value.trim(), agentInput.value.trim());
    } catch (error) {
      message.textContent = `Cannot reach the API: ${error.message}`;
    } finally {
      submit.disabled = false;
    }
  } },
  h("label", { for: "api-key" }, "API key"),
  keyInput,
  h("label", { for: "agent-id" }, "Agent id ", h("span", { class: "hint" }, "(only for an agent's key: it sees only its agent)")),
  agentInput,
  submit,
  message);
  put(main, h("section", { class: "view narrow" },
    h("h1", {}, "Sign in"),
    h("p", {}, "The key is kept for this browser tab only (sessionStorage) and sent to the API as X-API-Key; it never goes in a URL."),
    form,
    h("p", { class: "hint" }, "Running locally? ", h("code", {}, "make run"), " prints the admin key (or set ", h("code", {}, "OPSCORE_ADMIN_KEY"), ").")));
  keyInput.focus();
}

// Returns a message to show when the key is not taken; moves on to the key's home view when it is.
async function signIn(key, agentId) {
  if (!key) return "Enter an API key.";
  const admin = await call("GET", "/agents", { key, query: { limit: 1 } });
  if (admin.status === 401) return "401: the API does not know this key (unknown or revoked).";
  if (admin.status === 200) {
    session.signIn(key, null);
  } else if (admin.status === 403) {
    if (!agentId) return "This is an agent's key (403 on the fleet, which is for admins): enter its agent id to see that agent.";
    const own = await call("GET", `/agent/${enc(agentId)}`, { key });
    if (own.status === 403) return `403: this key is not agent ${agentId}'s.`;
    if (own.status === 404) return `404: no agent ${agentId} is registered.`;
    if (own.status !== 200) return `${own.status}: ${own.body && own.body.error ? own.body.error.message : "unexpected answer"}`;
    session.signIn(key, agentId);
  } else {
    return `${admin.status}: ${admin.body && admin.body.error ? admin.body.error.message : "unexpected answer"}`;
  }
  const wanted = parseHash().parts;
  if (!viewOf(wanted)) location.hash = home();
  route();
  return "";
}

document.getElementById("sign-out").addEventListener("click", () => {
  session.signOut();
  history.replaceState(null, "", "#/");
  signInView("Signed out.");
});
window.addEventListener("hashchange", route);
document.addEventListener("visibilitychange", () => {
  if (!document.hidden) wake();
});
route();
