// The Graph tab: loads /data for the current controls, draws it, and wires up
// hover, selection and search. page.js shows it and tells it when the
// selection changed.

import { NEW_ONLY, diffColor, diffLegend, maxChange } from "./diff.js";
import { hasColor, otherColor, packageColor, useColors } from "./colors.js";
import { GraphView } from "./draw.js";
import { Details, Legend, Tooltip } from "./panels.js";
import { form, functionState, matcher, selection, setState } from "./params.js";
import { el, fmtInt, fmtPct, shorten } from "./util.js";

const d3 = window.d3;

const app = document.getElementById("app");
const message = document.getElementById("message");
const status = document.getElementById("status");
const search = document.getElementById("search");
const searchCount = document.getElementById("search-count");

const state = {
  dataUrl: app.dataset.dataUrl,
  data: null,         // the /data response being shown, with edges linked to node objects
  selected: null,     // selected node
  group: null,        // highlighted legend entry: {name, members?}
  matches: null,      // nodes matching the search, or null
  diff: null,         // comparing with a base: {nodeColor, edgeColor, max, normalize}
};

const legendElement = document.getElementById("legend");
const detailsElement = document.getElementById("details");
const tooltip = new Tooltip(document.getElementById("tooltip"), app);
const details = new Details(detailsElement, {
  select: (n) => select(n),
  close: () => select(null),
  open: (n) => window.dispatchEvent(new CustomEvent("plop:open", { detail: functionState(n) })),
});
const legend = new Legend(legendElement, {
  toggleGroup: (group) => {
    state.group = state.group && state.group.name === group.name ? null : group;
    applyHighlight();
    showLegend();
  },
  resized: () => view.scheduleLabels(),
});
const view = new GraphView(document.getElementById("graph"), {
  hover: (n, event) => tooltip.show(n, event, state.data.total_samples, state.diff && state.diff.normalize),
  leave: () => tooltip.hide(),
  select: (n) => select(state.selected === n ? null : n),
  background: () => select(null),
  obstacles,
  crowded: () => legend.autoFold(),
});

/** What covers the graph: the details panel at the right, and the legend. */
function obstacles() {
  const svg = app.getBoundingClientRect();
  const panels = [];
  if (!legendElement.hidden && legendElement.offsetWidth) {
    const box = legendElement.getBoundingClientRect();
    panels.push({ left: box.left - svg.left, top: box.top - svg.top, right: box.right - svg.left, bottom: box.bottom - svg.top });
  }
  return { right: detailsElement.hidden ? 0 : detailsElement.offsetWidth + 8, panels };
}

/** A function's colour: its package's, or its change when comparing with a base. */
const colorOf = (n) => {
  if (state.diff) return n.side === "new" ? NEW_ONLY : state.diff.nodeColor(n.delta);
  return packageColor(n.group);
};

/** The query of /data for the current controls. */
function currentParams() {
  const params = selection();
  const value = new FormData(form).get("max_nodes");
  if (value) params.set("max_nodes", String(value));
  return params;
}

/**
 * "auto" (no max_nodes in the URL): functions with at least this share of
 * the samples (pprof's default node fraction), but at least AUTO_MIN and at
 * most AUTO_CAP. The first request asks for AUTO_CAP, which /view already
 * started building (its default max_nodes); when fewer functions reach the
 * share, a second asks the server to trim the graph to them, so that calls
 * through the hidden functions are still drawn (dashed).
 */
const AUTO_SHARE = 0.005;
const AUTO_MIN = 20;
const AUTO_CAP = 100;
const maxNodes = document.getElementById("max-nodes");
if (!new URLSearchParams(location.search).has("max_nodes")) maxNodes.value = "";
let loading = 0;

async function fetchData(params) {
  const response = await fetch(`/data?${params}`);
  const body = await response.json();
  if (!response.ok) throw new Error(body.error ? body.error.message : response.statusText);
  return [body, params];
}

/** How many functions "auto" shows of this response (the heaviest first). */
function autoCount(body) {
  const enough = body.nodes.filter((n) => n.total >= AUTO_SHARE * body.total_samples).length;
  return Math.max(enough, Math.min(AUTO_MIN, body.nodes.length));
}

async function load() {
  const params = currentParams();
  setState();
  const auto = !params.has("max_nodes");
  const ticket = ++loading;
  showMessage("Loading the call graph…");
  status.replaceChildren();
  let body, drawn;
  try {
    if (auto) {
      params.set("max_nodes", String(AUTO_CAP));
      [body, drawn] = await fetchData(params);
      const wanted = autoCount(body);
      if (wanted < body.nodes.length && ticket === loading) {
        const fewer = new URLSearchParams(params);
        fewer.set("max_nodes", String(wanted));
        [body, drawn] = await fetchData(fewer);
      }
    } else {
      [body, drawn] = await fetchData(params);
    }
  } catch (error) {
    if (ticket === loading) showMessage(`Cannot show this graph: ${error.message}`, true);
    return;
  }
  if (ticket !== loading) return; // the controls changed meanwhile
  if (!body.nodes.length) {
    showMessage(body.message ? `Nothing to draw: ${body.message}.` : "This profile has no samples to draw.");
    return;
  }
  useColors(body);
  state.diff = compareColors(body);
  state.selected = null;
  state.group = null;
  details.hide();
  message.hidden = true;
  state.data = body;
  showLegend();
  showStatus(body, auto); // before drawing: it can change the height left for the graph
  app.dataset.drawn = `/data?${drawn}`;
  const done = view.render(body, colorOf, state.diff && ((e) => state.diff.edgeColor(e.delta)));
  state.data = { ...body, nodes: view.nodes, edges: view.edges };
  app.dataset.nodes = String(view.nodes.length);
  applySearch();
  await done;
}

function showMessage(text, isError = false) {
  message.textContent = text;
  message.classList.toggle("error", isError);
  message.hidden = false;
}

function showStatus(data, auto) {
  const shown = data.nodes.length;
  const parts = [el("strong", {}, fmtInt(data.total_samples)), " samples · "];
  if (data.hidden_nodes) {
    const share = auto && data.nodes.every((n) => n.total >= AUTO_SHARE * data.total_samples);
    parts.push(share
      ? `${fmtInt(shown)} of ${fmtInt(data.node_count)} functions (at least ${100 * AUTO_SHARE}% of samples); hidden: `
      : `the ${fmtInt(shown)} heaviest of ${fmtInt(data.node_count)} functions; hidden: `,
    el("strong", {}, fmtInt(data.hidden_nodes)), ` with ${fmtPct(data.hidden_samples, data.total_samples)}`);
    if (data.hidden_edges) parts.push(` and ${fmtInt(data.hidden_edges)} light calls`);
  } else {
    parts.push(`all ${fmtInt(shown)} functions`);
  }
  if (data.base) parts.push(` · compared with ${fmtInt(data.base_total_samples)} base samples`);
  if (data.view === "cpu") parts.push(" · on-CPU view");
  if (data.thread) parts.push(` · thread ${data.thread}`);
  status.replaceChildren(...parts);
}

/** The colours of a compared graph (null when not comparing): nodes and calls each on their own scale. */
function compareColors(data) {
  if (!data.base) return null;
  const max = maxChange(data.nodes);
  return { max, normalize: data.normalize, nodeColor: diffColor(max), edgeColor: diffColor(maxChange(data.edges)) };
}

/** The key to a compared graph: the scale, and the functions only the base ran (which are not drawn). */
function showDiffLegend() {
  const data = state.data;
  const notes = [];
  if (data.base_only_count) {
    const names = data.base_only.slice(0, 3).map((f) => shorten(f.label, 28)).join(", ");
    notes.push(el("span", { class: "base-only", title: data.base_only.map((f) => f.label).join("\n") },
      `${fmtInt(data.base_only_count)} function${data.base_only_count > 1 ? "s" : ""} only in the base, not drawn `
      + `(${fmtPct(data.base_only_samples, data.base_total_samples)} of its samples): ${names}${data.base_only_count > 3 ? ", …" : ""}`));
  }
  legendElement.replaceChildren(el("h2", { class: "diff-head" }, "Compared with the base"), diffLegend(state.diff.max, state.diff.normalize, notes));
  legendElement.classList.remove("collapsed");
  legendElement.hidden = false;
}

/** The packages of this view with a colour of their own, heaviest first here, then one grey entry for the rest. */
function showLegend() {
  if (state.diff) {
    showDiffLegend();
    return;
  }
  const self = d3.rollup(state.data.nodes, (ns) => d3.sum(ns, (n) => n.self), (n) => n.group);
  const names = [...self.keys()];
  const groups = names.filter(hasColor)
    .sort((a, b) => self.get(b) - self.get(a) || a.localeCompare(b))
    .map((name) => ({ name, color: packageColor(name), self: self.get(name) }));
  const others = names.filter((name) => !hasColor(name));
  if (others.length) {
    groups.push({
      name: `${others.length} other package${others.length > 1 ? "s" : ""}`,
      members: new Set(others),
      color: otherColor(),
      self: d3.sum(others, (name) => self.get(name)),
    });
  }
  legend.show(groups, state.data.total_samples, state.group && state.group.name);
}

/** Select a node (or none): open its details, light up its callers and callees, bring them into view. */
function select(node) {
  state.selected = node;
  if (node) details.show(node, state.data, colorOf);
  else details.hide();
  const lit = applyHighlight();
  if (node) view.fit(450, [...lit], 2);
}

/** Dim what is not selected, matched or in the highlighted package; returns the nodes left lit (or null). */
function applyHighlight() {
  const { selected, matches, group } = state;
  let lit = null;
  if (selected) {
    lit = new Set([selected]);
    for (const e of state.data.edges) {
      if (e.source === selected) lit.add(e.target);
      if (e.target === selected) lit.add(e.source);
    }
  } else if (matches || group) {
    const inGroup = (n) => (group.members ? group.members.has(n.group) : n.group === group.name);
    lit = new Set(state.data.nodes.filter((n) => (!matches || matches.has(n)) && (!group || inGroup(n))));
  }
  view.highlight({ selected, lit, matches });
  return lit;
}

function applySearch() {
  const matches = matcher(search.value);
  if (!state.data) return;
  if (!matches) {
    state.matches = null;
    searchCount.textContent = "";
  } else {
    state.matches = new Set(state.data.nodes.filter(matches));
    searchCount.textContent = state.matches.size ? `${state.matches.size} found` : "none";
  }
  applyHighlight();
}

search.addEventListener("keydown", (event) => {
  if (app.hidden) return;
  if (event.key === "Enter") {
    event.preventDefault();
    if (state.matches && state.matches.size) view.fit(500, [...state.matches]);
  } else if (event.key === "Escape") {
    search.value = "";
    applySearch();
  }
});
document.getElementById("fit").addEventListener("click", () => view.fit());
document.getElementById("unpin").addEventListener("click", () => view.unpinAll());
document.addEventListener("keydown", (event) => {
  if (app.hidden) return;
  if (event.key === "Escape" && document.activeElement !== search) select(null);
});

/** The tab as page.js drives it: `show()` when it becomes visible or the selection changed. */
export const graphTab = {
  panel: app,
  loaded: null, // the /data query last loaded
  show() {
    const query = currentParams().toString();
    if (query !== this.loaded) {
      this.loaded = query;
      load();
    } else {
      applySearch();
    }
  },
  search: () => applySearch(),
};
