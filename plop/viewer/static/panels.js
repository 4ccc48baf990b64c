// The HTML around the graph: tooltip, details panel and legend.
// Everything taken from a profile is inserted as text (el() / textContent).

import { changeRows } from "./diff.js";
import { swatch } from "./colors.js";
import { el, fmtInt, fmtPct, location } from "./util.js";

export class Tooltip {
  constructor(element, container) {
    this.element = element;
    this.container = container;
  }

  /** `normalize` (true or false) when comparing with a base: the base's total and the change too. */
  show(node, event, total, normalize = null) {
    const t = this.element;
    t.replaceChildren(
      el("div", { class: "fn" }, node.label || node.funcname),
      el("div", { class: "loc" }, location(node)),
      el("table", {},
        el("tr", {}, el("td", {}, "Self"), el("td", {}, `${fmtInt(node.self)} samples`), el("td", {}, fmtPct(node.self, total))),
        el("tr", {}, el("td", {}, "Total"), el("td", {}, `${fmtInt(node.total)} samples`), el("td", {}, fmtPct(node.total, total))),
        ...(normalize !== null && node.base_total !== undefined ? changeRows(node, node.base_total, normalize) : []),
      ),
    );
    t.hidden = false;
    const box = this.container.getBoundingClientRect();
    const x = event.clientX - box.left, y = event.clientY - box.top;
    const w = t.offsetWidth, h = t.offsetHeight;
    t.style.left = `${x + 16 + w > box.width ? Math.max(4, x - 16 - w) : x + 16}px`;
    t.style.top = `${y + 16 + h > box.height ? Math.max(4, y - 12 - h) : y + 16}px`;
  }

  hide() {
    this.element.hidden = true;
  }
}

/** The panel describing the selected function: its lines, callers and callees. */
export class Details {
  constructor(element, { select, close, open }) {
    this.element = element;
    this.select = select;
    this.close = close;
    this.open = open;
  }

  show(node, graph, colorOf) {
    const total = graph.total_samples;
    const callers = graph.edges.filter((e) => e.target === node && e.source !== node).sort((a, b) => b.weight - a.weight);
    const callees = graph.edges.filter((e) => e.source === node && e.target !== node).sort((a, b) => b.weight - a.weight);
    const recursive = graph.edges.find((e) => e.source === node && e.target === node);
    const closeButton = el("button", { class: "close", type: "button", title: "Close (Esc)", "aria-label": "Close" }, "×");
    closeButton.addEventListener("click", () => this.close());
    const openButton = el("button", { class: "open-function", type: "button", title: "Callers, callees and lines of this function" }, "Function details →");
    openButton.addEventListener("click", () => this.open(node));
    this.element.replaceChildren(
      el("header", {}, el("h2", {}, node.label || node.funcname), closeButton),
      el("div", { class: "loc" }, location(node)),
      el("div", { class: "group" }, swatch(colorOf(node)), node.group),
      el("div", { class: "stats" },
        stat("Self", node.self, total),
        stat("Total", node.total, total),
      ),
      // Compared with a base: its count of this function's total and the change, as the tooltip says.
      graph.base && node.base_total !== undefined
        ? el("table", { class: "info compare" }, el("tbody", {}, ...changeRows(node, node.base_total, graph.normalize)))
        : null,
      openButton,
      ...(recursive ? [el("p", { class: "none" }, `Recursive: calls itself in ${fmtInt(recursive.weight)} samples.`)] : []),
      el("h3", {}, "Lines"),
      linesTable(node),
      el("h3", {}, `Called by (${callers.length})`),
      callers.length ? this.callTable(callers.map((e) => [e.source, e]), node) : el("p", { class: "none" }, "No callers: the top of its stacks."),
      el("h3", {}, `Calls (${callees.length})`),
      callees.length ? this.callTable(callees.map((e) => [e.target, e]), node) : el("p", { class: "none" }, "No callees shown: its time is its own."),
    );
    this.element.hidden = false;
    this.element.scrollTop = 0;
  }

  hide() {
    this.element.hidden = true;
  }

  /** Rows of [other function, edge]: share of this function's total under each call. */
  callTable(rows, node) {
    const body = el("tbody");
    for (const [other, edge] of rows) {
      const row = el("tr", { class: "link", title: location(other) },
        el("td", { class: "fn" }, other.label || other.funcname, edge.inferred ? el("span", { class: "via" }, " via hidden functions") : null),
        el("td", { class: "num" }, fmtInt(edge.weight)),
        el("td", { class: "num" }, fmtPct(edge.weight, node.total)),
        el("td", {}, bar(edge.weight, node.total)),
      );
      row.addEventListener("click", () => this.select(other));
      body.append(row);
    }
    return el("table", { class: "rows" },
      el("thead", {}, el("tr", {}, el("th", {}, "Function"), el("th", { class: "num" }, "Samples"), el("th", { class: "num" }, "Share"), el("th", {}))),
      body);
  }
}

function stat(label, value, total) {
  return el("div", { class: "stat" },
    el("div", { class: "label" }, label),
    el("div", { class: "value" }, fmtPct(value, total)),
    el("div", { class: "sub" }, `${fmtInt(value)} of ${fmtInt(total)} samples`));
}

function linesTable(node) {
  const lines = node.lines.filter((l) => l.lineno);
  if (!lines.length) return el("p", { class: "none" }, "This profile did not record line numbers.");
  const body = el("tbody");
  for (const line of lines) {
    body.append(el("tr", {},
      el("td", { class: "num" }, String(line.lineno)),
      el("td", { class: "num" }, fmtInt(line.self)),
      el("td", { class: "num" }, fmtInt(line.total)),
      el("td", {}, bar(line.total, node.total, line.self)),
    ));
  }
  return el("table", { class: "rows" },
    el("thead", {}, el("tr", {}, el("th", { class: "num" }, "Line"), el("th", { class: "num" }, "Self"), el("th", { class: "num" }, "Total"), el("th", {}))),
    body);
}

/** A horizontal bar: `value` of `whole`, with an optional darker `self` part. */
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

/**
 * Colour key by package plus what the marks mean; clicking a package
 * highlights it. Its heading folds it away (remembered by the browser); the
 * page folds it where the graph needs the room, unless the user unfolded it
 * before. The key to the marks is folded until asked for.
 */
export class Legend {
  constructor(element, { toggleGroup, resized }) {
    this.element = element;
    this.toggleGroup = toggleGroup;
    this.resized = resized;
    this.collapsed = readSetting(FOLD_SETTING) === "1";
    this.keyOpen = false;
  }

  /** Fold the legend to make room, unless the user unfolded it before. */
  autoFold() {
    if (this.collapsed || readSetting(FOLD_SETTING) === "0") return;
    this.collapsed = true;
    this.element.classList.add("collapsed");
    const toggle = this.element.querySelector(".fold");
    if (toggle) toggle.setAttribute("aria-expanded", "false");
  }

  /** `groups`: [{name, color, self, members?}]; `active`: the highlighted entry's name. */
  show(groups, total, active) {
    const list = el("ul");
    for (const g of groups) {
      const item = el("li", { class: g.name === active ? "active" : null, title: `${g.name}: ${fmtPct(g.self, total)} of samples in its own code` },
        swatch(g.color), el("span", { class: "name" }, g.name), el("span", { class: "value" }, fmtPct(g.self, total)));
      item.addEventListener("click", () => this.toggleGroup(g));
      list.append(item);
    }
    const toggle = el("button", { type: "button", class: "fold", "aria-expanded": String(!this.collapsed), title: "Show or hide the legend" },
      "Package · own time");
    toggle.addEventListener("click", () => {
      this.collapsed = !this.collapsed;
      writeSetting(FOLD_SETTING, this.collapsed ? "1" : "0");
      this.element.classList.toggle("collapsed", this.collapsed);
      toggle.setAttribute("aria-expanded", String(!this.collapsed));
      this.resized();
    });
    const key = el("details", { class: "key" },
      el("summary", {}, "How to read"),
      el("div", {}, "Callers above callees, by call depth"),
      el("div", {}, "Circle area: samples in the function itself"),
      el("div", {}, "Arrow width: samples under the call"),
      el("div", {}, "Dashed: the call passes through hidden functions"),
      el("div", {}, "Drag to pin · double-click to release"),
    );
    key.open = this.keyOpen;
    key.addEventListener("toggle", () => {
      this.keyOpen = key.open;
      this.resized();
    });
    this.element.replaceChildren(el("h2", {}, toggle), list, key);
    this.element.classList.toggle("collapsed", this.collapsed);
    this.element.hidden = false;
  }
}

const FOLD_SETTING = "plop.legend.collapsed";

function readSetting(name) {
  try {
    return window.localStorage.getItem(name);
  } catch {
    return null;
  }
}

function writeSetting(name, value) {
  try {
    window.localStorage.setItem(name, value);
  } catch {
    // storage refused (private mode): the setting lasts for this page only
  }
}
