// The Top tab: every function of /api/top with its self and total samples,
// like `pprof -top`. Column headers sort (the order is kept in the URL's
// `sort`, a leading "-" reversing it); the search box filters the rows by
// function or file; a row opens the function tab.

import { fmtChange } from "./diff.js";
import { packageColor, swatch, useColors } from "./colors.js";
import { fetchJson, functionState, matcher, selection, setState, state } from "./params.js";
import { el, fmtInt, fmtPct } from "./util.js";

const panel = document.getElementById("top");
const table = document.getElementById("top-table");
const body = table.querySelector("tbody");
const status = document.getElementById("top-status");
const message = document.getElementById("top-message");
const search = document.getElementById("search");
const searchCount = document.getElementById("search-count");

/** Each column's order: numbers heaviest first, names alphabetically; ties by self, total, name. */
const ORDERS = {
  self: (a, b) => b.self - a.self || b.total - a.total || a.label.localeCompare(b.label),
  total: (a, b) => b.total - a.total || b.self - a.self || a.label.localeCompare(b.label),
  name: (a, b) => a.label.localeCompare(b.label) || a.filename.localeCompare(b.filename) || a.firstlineno - b.firstlineno,
  file: (a, b) => a.filename.localeCompare(b.filename) || a.firstlineno - b.firstlineno || a.label.localeCompare(b.label),
  // Compared with a base: the base's counts and the changes (the largest loss of speed first).
  base_self: (a, b) => b.base_self - a.base_self || b.base_total - a.base_total || a.label.localeCompare(b.label),
  base_total: (a, b) => b.base_total - a.base_total || b.base_self - a.base_self || a.label.localeCompare(b.label),
  delta_self: (a, b) => b.delta_self - a.delta_self || b.delta_total - a.delta_total || a.label.localeCompare(b.label),
  delta_total: (a, b) => b.delta_total - a.delta_total || b.delta_self - a.delta_self || a.label.localeCompare(b.label),
};
const NUMERIC = new Set(["self", "total", "base_self", "base_total", "delta_self", "delta_total"]);

const plainHead = table.querySelector("thead tr");
/** The head of a compared table: new, base and change for self and total. */
const compareHead = el("tr", {},
  ...[["self", "Self"], ["total", "Total"]].flatMap(([key, label]) => [
    el("th", { class: "num" }, el("button", { type: "button", "data-sort": key }, label)),
    el("th", { class: "num" }, `${label} %`),
    el("th", { class: "num" }, el("button", { type: "button", "data-sort": `base_${key}`, title: `The base's ${label.toLowerCase()} samples` }, `Base ${label.toLowerCase()}`)),
    el("th", { class: "num" }, el("button", { type: "button", "data-sort": `delta_${key}`, title: "Change from the base (red: slower, blue: faster)" }, `Δ ${label.toLowerCase()}`)),
  ]),
  el("th", {}, el("button", { type: "button", "data-sort": "name" }, "Function")),
  el("th", {}, el("button", { type: "button", "data-sort": "file" }, "Location")));

/** Rows put in the page at first (a table of thousands lays out slowly); the rest on request. */
const ROW_LIMIT = 1000;

let data = null;
let showAll = false;
let loaded = null;
let ticket = 0;

function sortKey() {
  const key = state.sort || "self";
  const name = key.replace(/^-/, "");
  const usable = ORDERS[name] && (NUMERIC.has(name) && !["self", "total"].includes(name) ? !!(data && data.base) : true);
  return usable ? { name, reverse: key.startsWith("-") } : { name: "self", reverse: false };
}

function render() {
  if (!data) return;
  const started = performance.now();
  const { name, reverse } = sortKey();
  const order = ORDERS[name];
  const matches = matcher(search.value);
  const rows = (matches ? data.functions.filter(matches) : data.functions.slice()).sort(reverse ? (a, b) => order(b, a) : order);
  const total = data.total_samples;
  const fragment = document.createDocumentFragment();
  const shownRows = showAll ? rows : rows.slice(0, ROW_LIMIT);
  const compared = !!data.base;
  const baseTotal = data.base_total_samples;
  const counts = (key, fn) => compared ? [
    el("td", { class: "num" }, fmtInt(fn[key])),
    el("td", { class: "num" }, fmtPct(fn[key], total)),
    el("td", { class: "num" }, `${fmtInt(fn[`base_${key}`])} · ${fmtPct(fn[`base_${key}`], baseTotal)}`),
    el("td", { class: `num delta ${fn[`delta_${key}`] > 0 ? "slower" : fn[`delta_${key}`] < 0 ? "faster" : ""}` },
      fmtChange(fn[`delta_${key}`], data.normalize)),
  ] : [el("td", { class: "num" }, fmtInt(fn[key])), el("td", { class: "num" }, fmtPct(fn[key], total))];
  for (const fn of shownRows) {
    const row = el("tr", { class: compared && fn.side !== "both" ? `link side-${fn.side}` : "link", tabindex: "0" },
      ...counts("self", fn),
      ...counts("total", fn),
      el("td", { class: "fn" }, swatch(packageColor(fn.group), fn.group), fn.label),
      el("td", { class: "loc" }, fn.line ? `${fn.filename}:${fn.line}` : fn.filename),
    );
    row.fn = fn;
    fragment.append(row);
  }
  if (shownRows.length < rows.length) {
    const more = el("button", { type: "button", class: "show-all" }, `Show all ${fmtInt(rows.length)} functions`);
    more.addEventListener("click", (event) => {
      event.stopPropagation();
      showAll = true;
      render();
    });
    fragment.append(el("tr", { class: "more" }, el("td", { colspan: compared ? "10" : "6" },
      `${fmtInt(rows.length - shownRows.length)} lighter functions not listed · `, more)));
  }
  body.replaceChildren(fragment);
  for (const th of table.querySelectorAll("button[data-sort]")) {
    const active = th.dataset.sort === name;
    th.classList.toggle("sorted", active);
    th.closest("th").setAttribute("aria-sort", active ? (reverse === NUMERIC.has(name) ? "ascending" : "descending") : "none");
  }
  const shown = rows.reduce((sum, fn) => sum + fn.self, 0);
  status.replaceChildren(el("strong", {}, fmtInt(total)), " samples",
    compared ? ` (base: ${fmtInt(baseTotal)}; change of ${data.normalize ? "share of samples, in percentage points" : "samples"})` : "", " · ",
    matches ? `${fmtInt(rows.length)} of ${fmtInt(data.functions.length)} functions match, with ${fmtPct(shown, total)} of samples in their own code`
      : `${fmtInt(rows.length)} functions`,
    data.samples_without_frames ? ` · ${fmtInt(data.samples_without_frames)} samples without frames not counted` : "");
  if (matches) searchCount.textContent = rows.length ? `${rows.length} found` : "none";
  else searchCount.textContent = "";
  table.dataset.rows = String(rows.length);
  table.dataset.shown = String(shownRows.length);
  table.dataset.renderMs = (performance.now() - started).toFixed(1);
}

function open(row) {
  if (row && row.fn && !row.classList.contains("more")) window.dispatchEvent(new CustomEvent("plop:open", { detail: functionState(row.fn) }));
}

body.addEventListener("click", (event) => open(event.target.closest("tr")));
body.addEventListener("keydown", (event) => { if (event.key === "Enter") open(event.target.closest("tr")); });
table.querySelector("thead").addEventListener("click", (event) => {
  const button = event.target.closest("button[data-sort]");
  if (!button) return;
  const current = sortKey();
  const name = button.dataset.sort;
  setState({ sort: current.name === name && !current.reverse ? `-${name}` : name === "self" ? "" : name });
  render();
});

async function load(query) {
  const mine = ++ticket;
  message.textContent = "Loading the functions…";
  message.classList.remove("error");
  message.hidden = false;
  let answer;
  try {
    answer = await fetchJson(`/api/top?${query}`);
  } catch (error) {
    if (mine === ticket) {
      data = null;
      body.replaceChildren();
      status.replaceChildren();
      message.textContent = `Cannot show the functions: ${error.message}`;
      message.classList.add("error");
    }
    return;
  }
  if (mine !== ticket) return;
  data = answer;
  useColors(data);
  showAll = false;
  table.querySelector("thead").replaceChildren(data.base ? compareHead : plainHead);
  table.classList.toggle("compared", !!data.base);
  message.hidden = data.functions.length > 0;
  if (!data.functions.length) message.textContent = data.message ? `No functions: ${data.message}.` : "No samples (the filters may have left none).";
  render();
  table.dataset.query = query;
}

export const topTab = {
  panel,
  show() {
    const query = selection().toString();
    if (query !== loaded) {
      loaded = query;
      load(query);
    } else {
      render();
    }
  },
  search: () => render(),
};
