// Small helpers every view shares: building elements (text only: nothing from the API is ever parsed as HTML),
// times in the browser's zone, durations, and the confirm-then-answer pattern of actions.

export function h(tag, attributes = {}, ...children) {
  const element = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (name.startsWith("on")) element.addEventListener(name.slice(2), value);
    else if (name === "class") element.className = value;
    else if (name === "style") Object.assign(element.style, value);
    else element.setAttribute(name, value === true ? "" : value);
  }
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null || child === false) continue;
    element.append(child instanceof Node ? child : String(child));
  }
  return element;
}

// Replace an element's children, skipping what is absent (null, undefined, false) as h() does.
export function put(element, ...children) {
  element.replaceChildren(...children.flat(Infinity).filter((child) => child !== null && child !== undefined && child !== false));
  return element;
}

const zoneFormat = new Intl.DateTimeFormat(undefined, {
  year: "numeric", month: "2-digit", day: "2-digit",
  hour: "2-digit", minute: "2-digit", second: "2-digit", hour12: false, timeZoneName: "short",
});
const clockFormat = new Intl.DateTimeFormat(undefined, {
  hour: "2-digit", minute: "2-digit", second: "2-digit", fractionalSecondDigits: 3, hour12: false,
});

// A stored UTC time in the browser's zone, with the zone named.
export function localTime(stamp) {
  return stamp ? zoneFormat.format(new Date(stamp)) : "—";
}

// Hours to the millisecond, for spans within one session.
export function clock(stamp) {
  return stamp ? clockFormat.format(new Date(stamp)) : "—";
}

// "12 s ago", with the full local time in a title.
export function ago(stamp, now = Date.now()) {
  if (!stamp) return h("span", {}, "never");
  const seconds = Math.max(0, Math.round((now - new Date(stamp).getTime()) / 1000));
  let text = `${seconds} s ago`;
  if (seconds >= 86400) text = `${Math.floor(seconds / 86400)} d ago`;
  else if (seconds >= 3600) text = `${Math.floor(seconds / 3600)} h ago`;
  else if (seconds >= 120) text = `${Math.floor(seconds / 60)} min ago`;
  return h("time", { datetime: stamp, title: localTime(stamp) }, text);
}

export function duration(ms) {
  if (ms === null || ms === undefined) return "—";
  if (ms < 1000) return `${Math.round(ms)} ms`;
  if (ms < 60000) return `${(ms / 1000).toFixed(1)} s`;
  const minutes = Math.floor(ms / 60000);
  if (minutes < 60) return `${minutes}m${String(Math.floor((ms % 60000) / 1000)).padStart(2, "0")}s`;
  return `${Math.floor(minutes / 60)}h${String(minutes % 60).padStart(2, "0")}m`;
}

export function percent(value) {
  return value === null || value === undefined ? "—" : `${(value * 100).toFixed(1)} %`;
}

export function json(value) {
  return h("pre", { class: "json" }, JSON.stringify(value, null, 2));
}

export function badge(state) {
  const name = state || "no report";
  return h("span", { class: `badge state-${state || "none"}` }, name);
}

// A view's answer when the API refused its read for good (a 4xx): said where the view would be.
export function refusal(error) {
  return h("p", { class: "error", role: "alert", id: "view-error" }, `The API refused this view: ${error.message}`);
}

export function empty(text, command) {
  return h("div", { class: "empty" }, h("p", {}, text), command ? h("pre", { class: "command" }, command) : null);
}

// Ask first (a modal dialog: keyboard and screen reader friendly), then run `act`, which resolves to the API's
// {status, body}; the answer is shown in `where`, errors included.
// The focus goes back to the control that asked (by its data-focus: a refresh may have redrawn it meanwhile).
export async function confirmThen(question, act, where) {
  const dialog = document.getElementById("confirm");
  const opener = document.activeElement && document.activeElement.dataset ? document.activeElement.dataset.focus : null;
  document.getElementById("confirm-text").textContent = question;
  dialog.returnValue = "";
  dialog.showModal();
  const choice = await new Promise((resolve) => dialog.addEventListener("close", () => resolve(dialog.returnValue), { once: true }));
  // (Chromium may leave the focus on the closed dialog's button when the opener is gone: that is lost focus too.)
  const lost = !document.activeElement || document.activeElement === document.body || dialog.contains(document.activeElement);
  if (opener && lost) {
    const again = document.querySelector(`[data-focus="${CSS.escape(opener)}"]`);
    if (again) again.focus();
  }
  if (choice !== "ok") return null;
  put(where, h("p", { class: "pending" }, "Sending…"));
  let answer;
  try {
    answer = await act();
  } catch (error) {
    answer = { status: 0, body: { message: `cannot reach the dashboard's server: ${error.message}` } };
  }
  showAnswer(answer, where);
  return answer;
}

export function showAnswer(answer, where) {
  const ok = answer.status >= 200 && answer.status < 300;
  const error = answer.body && answer.body.error;
  const headline = ok ? `${answer.status}: done` : `${answer.status || "error"}: ${error ? `${error.code}: ${error.message}` : (answer.body && answer.body.message) || "failed"}`;
  put(where,
    h("div", { class: `answer ${ok ? "ok" : "failed"}`, role: "alert" },
      h("p", { class: "headline" }, headline),
      h("details", {}, h("summary", {}, "The API's answer"), json(answer.body))),
  );
}
