// The Function tab: one function's callers and callees (a butterfly, like
// pprof's peek and speedscope's sandwich) and its lines with their samples,
// from /api/function. The source is shown only when the server may read it
// (files under a --source directory); otherwise the answer says why not.

import { fmtChange } from "./diff.js";
import { packageColor, swatch, useColors } from "./colors.js";
import { fetchJson, functionState, reEscape, selection, state } from "./params.js";
import { el, fmtInt, fmtPct } from "./util.js";

const panel = document.getElementById("function");
const content = document.getElementById("function-body");
const message = document.getElementById("function-message");

let loaded = null;
let ticket = 0;

function where(fn) {
  return fn.line ? `${fn.filename}:${fn.line}` : fn.filename;
}

function bar(value, whole, self = 0) {
  const b = el("div", { class: "bar", title: fmtPct(value, whole) });
  const fill = el("i");
  fill.style.width = `${Math.min(100, (100 * value) / (whole || 1))}%`;
  b.append(fill);
  if (self) {
    const own = el("i", { class: "self" });
    own.style.width = `${Math.min(100, (100 * self) / (whole || 1))}%`;
    b.append(own);
  }
  return b;
}

function go(fn) {
  window.dispatchEvent(new CustomEvent("plop:open", { detail: functionState(fn) }));
}

/** One side of the butterfly: callers or callees with the samples of each call. */
function side(title, rows, fn, empty, kind, normalize = null) {
  const body = el("tbody");
  const compared = normalize !== null;
  for (const other of rows) {
    const row = el("tr", { class: "link", tabindex: "0", title: where(other) },
      el("td", { class: "fn" }, swatch(packageColor(other.group), other.group), other.label, compared && other.side !== "both" ? el("span", { class: "via" }, other.side === "new" ? " new" : " only in base") : null),
      el("td", { class: "num" }, fmtInt(other.calls)),
      el("td", { class: "num" }, fmtPct(other.calls, fn.total)),
      compared ? el("td", { class: `num delta ${other.delta > 0 ? "slower" : other.delta < 0 ? "faster" : ""}`,
        title: `base: ${fmtInt(other.base_calls)} samples` }, fmtChange(other.delta, normalize)) : null,
      el("td", { class: "barcell" }, bar(other.calls, fn.total)));
    row.addEventListener("click", () => go(other));
    row.addEventListener("keydown", (event) => { if (event.key === "Enter") go(other); });
    body.append(row);
  }
  return el("section", { class: `butterfly-side ${kind}` },
    el("h3", {}, `${title} (${rows.length})`),
    rows.length ? el("table", { class: "rows" },
      el("thead", {}, el("tr", {}, el("th", {}, "Function"), el("th", { class: "num" }, "Samples"),
        el("th", { class: "num", title: "Share of this function's total" }, "Share"),
        compared ? el("th", { class: "num", title: "Change from the base" }, "Δ") : null, el("th", {}))),
      body) : el("p", { class: "none" }, empty));
}

function linesSection(answer) {
  const fn = answer.function;
  const lines = answer.lines.filter((l) => l.line);
  const source = answer.source;
  const section = el("section", { class: "lines" }, el("h3", {}, "Lines"));
  if (!lines.length) {
    section.append(el("p", { class: "none" }, "This profile did not record line numbers."));
  }
  if (source && source.shown) {
    const byLine = new Map(lines.map((l) => [l.line, l]));
    const body = el("tbody");
    source.lines.forEach((text, i) => {
      const number = source.first_line + i;
      const l = byLine.get(number);
      body.append(el("tr", { class: l ? "sampled" : null },
        el("td", { class: "num" }, String(number)),
        el("td", { class: "num" }, l ? fmtInt(l.self) : ""),
        el("td", { class: "num" }, l ? fmtInt(l.total) : ""),
        el("td", { class: "barcell" }, l ? bar(l.total, fn.total, l.self) : null),
        el("td", { class: "code" }, el("code", {}, text))));
    });
    section.append(el("div", { class: "path" }, source.path), el("table", { class: "rows source" },
      el("thead", {}, el("tr", {}, el("th", { class: "num" }, "Line"), el("th", { class: "num" }, "Self"),
        el("th", { class: "num" }, "Total"), el("th", {}), el("th", {}, "Source"))), body));
    return section;
  }
  if (lines.length) {
    const body = el("tbody");
    for (const l of lines) {
      body.append(el("tr", {}, el("td", { class: "num" }, String(l.line)), el("td", { class: "num" }, fmtInt(l.self)),
        el("td", { class: "num" }, fmtInt(l.total)), el("td", { class: "barcell" }, bar(l.total, fn.total, l.self))));
    }
    section.append(el("table", { class: "rows" },
      el("thead", {}, el("tr", {}, el("th", { class: "num" }, "Line"), el("th", { class: "num" }, "Self"),
        el("th", { class: "num" }, "Total"), el("th", {}))), body));
  }
  if (source && !source.shown) section.append(el("p", { class: "none source-note" }, `Source not shown: ${source.reason}.`));
  return section;
}

function filterButton(label, name, fn, title) {
  const button = el("button", { type: "button", class: "filter-button", title }, label);
  button.addEventListener("click", () => {
    const input = document.getElementById(name);
    input.value = `^${reEscape(`${fn.filename}:${fn.name}`)}$`;
    input.dispatchEvent(new Event("change", { bubbles: true }));
  });
  return button;
}

function render(answer) {
  const fn = answer.function;
  const total = answer.total_samples;
  const normalize = answer.base ? answer.normalize : null;
  const stat = (label, value, key) => el("div", { class: "stat" }, el("div", { class: "label" }, label),
    el("div", { class: "value" }, fmtPct(value, total)), el("div", { class: "sub" }, `${fmtInt(value)} of ${fmtInt(total)} samples`),
    normalize !== null ? el("div", { class: `sub ${fn[`delta_${key}`] > 0 ? "slower" : fn[`delta_${key}`] < 0 ? "faster" : ""}` },
      `base ${fmtInt(fn[`base_${key}`])} of ${fmtInt(answer.base_total_samples)} · ${fmtChange(fn[`delta_${key}`], normalize)}`) : null);
  content.replaceChildren(
    el("header", { class: "function-head" },
      el("div", {},
        el("h2", { id: "function-name" }, fn.label),
        el("div", { class: "loc" }, where(fn)),
        el("div", { class: "group" }, swatch(packageColor(fn.group)), fn.group),
        answer.recursive ? el("p", { class: "none" }, `Recursive: calls itself in ${fmtInt(answer.recursive)} samples.`) : null),
      el("div", { class: "stats" }, stat("Self", fn.self, "self"), stat("Total", fn.total, "total")),
      el("div", { class: "function-actions" },
        filterButton("Focus on it", "focus", fn, "Keep only the samples that pass through this function"),
        filterButton("Hide it", "hide", fn, "Remove this function from the stacks; its time goes to its callers"))),
    el("div", { class: "butterfly" },
      side("Called by", answer.callers, fn, "No callers: it is at the top of its stacks.", "callers", normalize),
      el("div", { class: "butterfly-center", title: where(fn) }, el("div", { class: "fn" }, fn.label),
        el("div", { class: "sub" }, `${fmtInt(fn.total)} samples`)),
      side("Calls", answer.callees, fn, "No callees: its time is its own.", "callees", normalize)),
    linesSection(answer),
  );
}

async function load(query) {
  const mine = ++ticket;
  message.textContent = "Loading the function…";
  message.classList.remove("error");
  message.hidden = false;
  let answer;
  try {
    answer = await fetchJson(`/api/function?${query}`);
  } catch (error) {
    if (mine === ticket) {
      content.replaceChildren();
      message.textContent = `Cannot show this function: ${error.message}`;
      message.classList.add("error");
    }
    return;
  }
  if (mine !== ticket) return;
  message.hidden = true;
  useColors(answer);
  render(answer);
  panel.dataset.query = query;
}

export const functionTab = {
  panel,
  show() {
    if (!state.function && !state.file) {
      loaded = null;
      content.replaceChildren();
      message.classList.remove("error");
      message.replaceChildren("Choose a function: click a row of ", el("a", { href: "#", id: "to-top" }, "Top"),
        ", a node's “Function details” in the graph, or shift-click a frame of the flame graph.");
      message.querySelector("#to-top").addEventListener("click", (event) => {
        event.preventDefault();
        window.dispatchEvent(new CustomEvent("plop:tab", { detail: "top" }));
      });
      message.hidden = false;
      return;
    }
    const params = selection();
    params.set("function", state.function);
    params.set("file", state.file);
    params.set("firstlineno", state.firstlineno || "0");
    const query = params.toString();
    if (query !== loaded) {
      loaded = query;
      load(query);
    }
  },
  search() {},
};
