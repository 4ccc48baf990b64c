// The profile page: tabs over one shared selection.
//
// The toolbar's form holds the selection (view, thread, filters); params.js
// keeps it and each tab's own state in the URL. This module shows one tab at
// a time and tells it to show itself when it becomes visible or the
// selection changed; each tab fetches what it needs only then.

import { flameTab } from "./flame.js";
import { functionTab } from "./function.js";
import { graphTab } from "./graph.js";
import { form, setState, state } from "./params.js";
import { topTab } from "./top.js";

const tabs = { graph: graphTab, flame: flameTab, top: topTab, function: functionTab };
const nav = document.getElementById("tabs");
const search = document.getElementById("search");
const tabInput = document.getElementById("tab-input");

search.value = state.q;

// The filter boxes fold away unless a filter is set (they cost the graph a row of the window).
const filtersToggle = document.getElementById("filters-toggle");
const filterBoxes = document.getElementById("filters");
function showFilterCount() {
  const count = ["focus", "ignore", "hide"].filter((name) => document.getElementById(name).value).length;
  filtersToggle.textContent = count ? `Filters (${count})` : "Filters";
}
filtersToggle.addEventListener("click", () => {
  filterBoxes.hidden = !filterBoxes.hidden;
  filtersToggle.setAttribute("aria-expanded", String(!filterBoxes.hidden));
  if (!filterBoxes.hidden) document.getElementById("focus").focus();
});

function show(name, push = false) {
  if (!tabs[name]) name = "graph";
  setState({ tab: name }, push);
  tabInput.value = name;
  nav.dataset.tab = name;
  document.body.dataset.tab = name;
  for (const link of nav.querySelectorAll("[data-tab-link]")) {
    const active = link.dataset.tabLink === name;
    link.classList.toggle("active", active);
    if (active) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
    link.href = pageUrlFor(link.dataset.tabLink);
  }
  for (const [key, tab] of Object.entries(tabs)) tab.panel.hidden = key !== name;
  tabs[name].show();
}

/** The link of a tab: the current URL with another `tab`. */
function pageUrlFor(name) {
  const params = new URLSearchParams(location.search);
  if (name === "graph") params.delete("tab");
  else params.set("tab", name);
  return `/view?${params}`;
}

nav.addEventListener("click", (event) => {
  const link = event.target.closest("[data-tab-link]");
  if (!link || event.ctrlKey || event.metaKey || event.shiftKey || event.button !== 0) return;
  event.preventDefault();
  show(link.dataset.tabLink, true);
});

// A changed selection: every tab is out of date; the visible one reloads now, a zoom no longer applies.
form.addEventListener("change", (event) => {
  if (event.target === search) return;
  showFilterCount();
  setState({ zoom: "" });
  show(state.tab);
});
form.addEventListener("submit", (event) => {
  event.preventDefault();
  setState({ zoom: "" });
  show(state.tab);
});
search.addEventListener("input", () => {
  setState({ q: search.value.trim() ? search.value : "" });
  tabs[state.tab].search();
});
search.addEventListener("keydown", (event) => {
  if (event.key === "Escape") {
    search.value = "";
    setState({ q: "" });
    tabs[state.tab].search();
  }
});
document.addEventListener("keydown", (event) => {
  const typing = ["INPUT", "SELECT", "TEXTAREA"].includes(document.activeElement && document.activeElement.tagName);
  if (event.key === "/" && !typing) {
    event.preventDefault();
    search.focus();
  }
});

window.addEventListener("plop:open", (event) => {
  Object.assign(state, event.detail);
  show("function", true);
});
window.addEventListener("plop:tab", (event) => show(event.detail, true));

// Back and forward: the URL is the state.
window.addEventListener("popstate", () => {
  const url = new URLSearchParams(location.search);
  for (const key of ["zoom", "sort", "q", "function", "file", "firstlineno"]) state[key] = url.get(key) || "";
  for (const name of ["focus", "ignore", "hide"]) document.getElementById(name).value = url.get(name) || "";
  showFilterCount();
  search.value = state.q;
  show(url.get("tab") || "graph");
});

/** The tabs, for scripts and tests (the flame graph's frame boxes, say). */
window.plopViewer = { tabs };

show(state.tab);
