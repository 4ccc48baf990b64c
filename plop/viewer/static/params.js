// The shared data layer of the profile page: its URL parameters and the JSON it fetches.
//
// Every tab is a function of the URL: the selection (file, view, thread and
// the focus / ignore / hide filters, held by the toolbar's form) plus each
// tab's own state (`tab`, the graph's `max_nodes`, the flame graph's `zoom` and `fraction`,
// the top table's `sort`, the search text `q`, and the function shown by the
// function tab). A link therefore shares the view, and a reload keeps it.

export const form = document.getElementById("controls");

/**
 * Parameters that choose the samples: what every /data and /api request carries. The profiles
 * (`filename`, repeated to merge, or `service` with `since` / `until`) and the base they are
 * compared with (`base`, repeated, or `base_service`, `base_since`, `base_until`) come from the
 * form's hidden fields; `normalize` from the compare control.
 */
const SELECTION = ["filename", "service", "since", "until", "base", "base_service", "base_since", "base_until",
  "normalize", "view", "thread", "focus", "ignore", "hide"];
/** Per-tab state kept in the URL, with the values that leave it out. */
const STATE_DEFAULTS = { tab: "graph", zoom: "", fraction: "", sort: "", q: "", function: "", file: "", firstlineno: "" };

export const state = {};
{
  const url = new URLSearchParams(location.search);
  for (const [key, empty] of Object.entries(STATE_DEFAULTS)) state[key] = url.get(key) || empty;
}

/** The selection of the form as a query: empty fields left out. */
export function selection() {
  const params = new URLSearchParams();
  const data = new FormData(form);
  for (const key of SELECTION) {
    for (const value of data.getAll(key)) if (value) params.append(key, String(value));
  }
  return params;
}

/** The page's URL for the current form and state (with `changes` to the state applied). */
export function pageUrl(changes = {}) {
  const params = selection();
  const maxNodes = new FormData(form).get("max_nodes");
  if (maxNodes) params.set("max_nodes", String(maxNodes));
  const next = { ...state, ...changes };
  for (const [key, empty] of Object.entries(STATE_DEFAULTS)) if (next[key] && next[key] !== empty) params.set(key, next[key]);
  return `/view?${params}`;
}

/** Apply `changes` to the state and write the URL (a new history entry with `push`). */
export function setState(changes = {}, push = false) {
  Object.assign(state, changes);
  const url = pageUrl();
  if (url !== location.pathname + location.search) history[push ? "pushState" : "replaceState"](null, "", url);
}

/** Fetch JSON from the viewer; a failed request throws an Error with the server's message. */
export async function fetchJson(url) {
  const response = await fetch(url);
  let body = null;
  try {
    body = await response.json();
  } catch {
    // not JSON: a proxy's page, say; the status text will do
  }
  if (!response.ok) throw new Error(body && body.error ? body.error.message : `${response.status} ${response.statusText}`);
  return body;
}

/** The state that opens the function tab on one function (any object with name or funcname, filename, firstlineno). */
export function functionState(fn) {
  return { tab: "function", function: fn.name ?? fn.funcname, file: fn.filename, firstlineno: String(fn.firstlineno || 0) };
}

/** Escape a string for use inside a regular expression (a filter that means exactly this function). */
export function reEscape(text) {
  return text.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
}

/** Case-insensitive "contains" test over a function's shown name and file, for the search box. */
export function matcher(query) {
  const q = query.trim().toLowerCase();
  if (!q) return null;
  return (fn) => (fn.label || fn.name || fn.funcname || "").toLowerCase().includes(q) || (fn.filename || "").toLowerCase().includes(q);
}

/** Is the page comparing with a base? (Its answers then carry base_ counts and deltas.) */
export function comparing() {
  const data = new FormData(form);
  return ["base", "base_service", "base_since", "base_until"].some((key) => data.getAll(key).some(Boolean));
}
