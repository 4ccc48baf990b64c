// The Flame graph tab: an icicle of /api/flame's call tree on a canvas.
//
// The root is on top and every frame's children are below it, heaviest
// first from the left; a frame's width is its samples. Clicking a frame
// zooms in on it (its ancestors stay above it, full width, as breadcrumbs
// do); clicking an ancestor or a breadcrumb zooms back out. Shift-click, or
// the breadcrumb bar's button, opens the function tab. The search box
// highlights the frames whose function or file contains its text and says
// which share of the samples runs under them.
//
// One canvas draws any number of frames: the tree is flattened once into
// rows (one array per depth, in left-to-right order), so drawing visits only
// the rows' frames inside the zoomed range, and hover finds its frame by a
// binary search in one row.

import { NEW_ONLY, changeRows, diffColor, diffLegend, maxChange } from "./diff.js";
import { packageColor, swatch, textOn, useColors } from "./colors.js";
import { fetchJson, functionState, matcher, selection, setState, state } from "./params.js";
import { el, fmtInt, fmtPct, shortName } from "./util.js";

const ROW = 18;            // pixels per depth
const TEXT_MIN = 28;       // frames narrower than this get no label
const CHAR_PX = 6.7;       // width of a label character (12px sans), to cut labels without measuring
const MIN_PX = 0.4;        // frames narrower than this are not drawn

const panel = document.getElementById("flame");
const scroller = document.getElementById("flame-scroll");
const canvas = document.getElementById("flame-canvas");
const crumbs = document.getElementById("crumbs");
const status = document.getElementById("flame-status");
const tooltip = document.getElementById("flame-tooltip");
const message = document.getElementById("flame-message");
const search = document.getElementById("search");
const searchCount = document.getElementById("search-count");

const view = {
  data: null,      // the /api/flame answer
  frames: [],      // flattened: {node, depth, x, parent, index, path}
  rows: [],        // frame indexes per depth, left to right
  zoom: null,      // the zoomed frame (the root when not zoomed)
  hover: null,
  matched: null,   // Set of matched frame indexes, or null
  width: 0,
  diff: null,      // comparing with a base: the colour of a change, or null
};
const diffKey = el("div", { class: "flame-diff", id: "flame-diff", hidden: true });
panel.querySelector(".flame-bar").after(diffKey);

/** Flatten the tree: every frame's position in samples from the left, its depth and path. */
function flatten(root) {
  const frames = [];
  const rows = [];
  const work = [{ node: root, depth: 0, x: 0, parent: -1, path: "" }];
  while (work.length) {
    const item = work.pop();
    const id = frames.length;
    item.id = id;
    frames.push(item);
    (rows[item.depth] ||= []).push(id);
    const children = item.node.children;
    let x = item.x;
    const next = [];
    children.forEach((child, i) => {
      next.push({ node: child, depth: item.depth + 1, x, parent: id, path: item.path ? `${item.path}.${i}` : String(i) });
      x += child.value;
    });
    for (let i = next.length - 1; i >= 0; i--) work.push(next[i]); // leftmost first: rows stay in order
  }
  return { frames, rows };
}

/** A frame's colour: its package's, as in every tab (the root, of no package, is grey). */
function colorOf(node) {
  // Compared with a base: the frame's change (width stays the new profile's samples).
  if (view.diff) return node.side === "new" ? NEW_ONLY : view.diff(node.delta);
  return packageColor(node.group);
}

function where(node) {
  if (!node.filename) return "every sample";
  return node.line ? `${node.filename}:${node.line}` : node.filename;
}

/** Sample-space range shown and pixels per sample. */
function scale() {
  const z = view.zoom;
  return { x0: z.x, span: z.node.value || 1, k: view.width / (z.node.value || 1) };
}

function draw() {
  if (!view.data) return;
  const started = performance.now();
  const dpr = window.devicePixelRatio || 1;
  const width = scroller.clientWidth;
  const height = Math.max(view.rows.length * ROW, 1);
  view.width = width;
  canvas.style.width = `${width}px`;
  canvas.style.height = `${height}px`;
  if (canvas.width !== Math.round(width * dpr) || canvas.height !== Math.round(height * dpr)) {
    canvas.width = Math.round(width * dpr);
    canvas.height = Math.round(height * dpr);
  }
  const ctx = canvas.getContext("2d");
  ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
  ctx.clearRect(0, 0, width, height);
  ctx.font = "12px system-ui, -apple-system, 'Segoe UI', Roboto, sans-serif";
  ctx.textBaseline = "middle";
  const { x0, span, k } = scale();
  const x1 = x0 + span;
  const z = view.zoom;
  let drawn = 0;
  for (let depth = 0; depth < view.rows.length; depth++) {
    const row = view.rows[depth];
    let i = firstAt(row, x0);
    for (; i < row.length; i++) {
      const f = view.frames[row[i]];
      if (f.x >= x1) break;
      const left = Math.max(f.x, x0), right = Math.min(f.x + f.node.value, x1);
      const w = (right - left) * k;
      if (w < MIN_PX) continue;
      const px = (left - x0) * k, y = depth * ROW;
      const ancestor = depth < z.depth;
      let fill = colorOf(f.node);
      if (view.matched) fill = view.matched.has(f.id) ? "#f59e0b" : "#e3e6eb";
      ctx.globalAlpha = ancestor ? 0.55 : 1;
      ctx.fillStyle = fill;
      ctx.fillRect(px, y, Math.max(w - 1, MIN_PX), ROW - 1);
      if (view.hover === f) {
        ctx.strokeStyle = "#1d2430";
        ctx.lineWidth = 1.5;
        ctx.strokeRect(px + 0.75, y + 0.75, Math.max(w - 2.5, 0.5), ROW - 2.5);
      }
      const text = fitLabel(f.node.label, w);
      if (text) {
        ctx.fillStyle = textOn(fill);
        ctx.fillText(text, px + 4, y + ROW / 2);
      }
      drawn++;
    }
  }
  ctx.globalAlpha = 1;
  canvas.dataset.drawn = String(drawn);
  canvas.dataset.drawMs = (performance.now() - started).toFixed(1);
}

/**
 * The label a frame `width` pixels wide shows: its full name where it fits, else its
 * short name (see shortName), cut with "…" if even that is too long; none when too narrow.
 */
function fitLabel(label, width) {
  if (width < TEXT_MIN) return null;
  const chars = Math.floor((width - 8) / CHAR_PX);
  if (label.length <= chars) return label;
  const short = shortName(label);
  return short.length <= chars ? short : short.slice(0, Math.max(chars - 1, 1)) + "…";
}

/** Index in `row` of the first frame ending after sample position `x`. */
function firstAt(row, x) {
  let lo = 0, hi = row.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    const f = view.frames[row[mid]];
    if (f.x + f.node.value <= x) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/** The frame under a point of the canvas (CSS pixels), or null. */
function frameAt(px, py) {
  const depth = Math.floor(py / ROW);
  const row = view.rows[depth];
  if (!row) return null;
  const { x0, k } = scale();
  const x = x0 + px / k;
  const i = firstAt(row, x);
  const f = row[i] !== undefined ? view.frames[row[i]] : null;
  if (!f || f.x > x) return null;
  if (depth >= view.zoom.depth && (f.x + f.node.value <= view.zoom.x || f.x >= view.zoom.x + view.zoom.node.value)) return null;
  return f;
}

function zoomTo(frame, record = true) {
  view.zoom = frame;
  canvas.dataset.zoom = frame.node.label;
  if (record) setState({ zoom: frame.path });
  showCrumbs();
  draw();
}

function showCrumbs() {
  const chain = [];
  for (let f = view.zoom; f; f = f.parent >= 0 ? view.frames[f.parent] : null) chain.unshift(f);
  const items = [];
  chain.forEach((f, i) => {
    if (i) items.push(el("span", { class: "sep" }, "›"));
    const crumb = el("button", { type: "button", class: f === view.zoom ? "crumb current" : "crumb", title: where(f.node) }, f.node.label);
    crumb.addEventListener("click", () => zoomTo(f));
    items.push(crumb);
  });
  if (view.zoom.depth > 0) {
    const open = el("button", { type: "button", class: "open-function", title: "Callers, callees and lines of this function" }, "Function details →");
    open.addEventListener("click", () => openFunction(view.zoom.node));
    items.push(open);
  }
  crumbs.replaceChildren(...items);
}

function openFunction(node) {
  window.dispatchEvent(new CustomEvent("plop:open", { detail: functionState(node) }));
}

function showTooltip(f, event) {
  const total = view.data.total_samples;
  const parent = f.parent >= 0 ? view.frames[f.parent].node : null;
  tooltip.replaceChildren(
    el("div", { class: "fn" }, f.node.label),
    el("div", { class: "loc" }, where(f.node)),
    f.node.group ? el("div", { class: "group" }, swatch(colorOf(f.node)), f.node.group) : null,
    el("table", {},
      el("tr", {}, el("td", {}, "Samples"), el("td", {}, fmtInt(f.node.value)), el("td", {}, `${fmtPct(f.node.value, total)} of total`)),
      parent ? el("tr", {}, el("td", {}, ""), el("td", {}, ""), el("td", {}, `${fmtPct(f.node.value, parent.value)} of ${parent.label}`)) : null,
      el("tr", {}, el("td", {}, "Self"), el("td", {}, fmtInt(f.node.self)), el("td", {}, fmtPct(f.node.self, total))),
      ...(view.diff ? changeRows(f.node, f.node.base_value, view.data.normalize) : []),
    ),
    el("div", { class: "hint" }, f === view.zoom ? "Shift-click: function details" : "Click to zoom · Shift-click: function details"),
  );
  tooltip.hidden = false;
  const box = panel.getBoundingClientRect();
  const x = event.clientX - box.left, y = event.clientY - box.top;
  const w = tooltip.offsetWidth, h = tooltip.offsetHeight;
  tooltip.style.left = `${x + 14 + w > box.width ? Math.max(4, x - 14 - w) : x + 14}px`;
  tooltip.style.top = `${y + 14 + h > box.height ? Math.max(4, y - 10 - h) : y + 14}px`;
}

function pointer(event) {
  const box = canvas.getBoundingClientRect();
  return frameAt(event.clientX - box.left, event.clientY - box.top);
}

canvas.addEventListener("mousemove", (event) => {
  if (!view.data) return;
  const f = pointer(event);
  if (f !== view.hover) {
    view.hover = f;
    canvas.style.cursor = f ? "pointer" : "default";
    draw();
  }
  if (f) showTooltip(f, event);
  else tooltip.hidden = true;
});
canvas.addEventListener("mouseleave", () => {
  tooltip.hidden = true;
  if (view.hover) {
    view.hover = null;
    draw();
  }
});
canvas.addEventListener("click", (event) => {
  const f = pointer(event);
  if (!f) return;
  if (event.shiftKey && f.depth > 0) openFunction(f.node);
  else zoomTo(f);
});
new ResizeObserver(() => { if (!panel.hidden) draw(); }).observe(scroller);

function applySearch() {
  if (!view.data) return;
  const matches = matcher(search.value);
  if (!matches) {
    view.matched = null;
    searchCount.textContent = "";
    status.replaceChildren(...summary());
  } else {
    view.matched = new Set(view.frames.filter((f) => f.depth > 0 && matches(f.node)).map((f) => f.id));
    // Samples under a match, each counted once: a matched frame inside another is already covered.
    let under = 0;
    for (const id of view.matched) {
      let covered = false;
      for (let p = view.frames[id].parent; p >= 0 && !covered; p = view.frames[p].parent) covered = view.matched.has(p);
      if (!covered) under += view.frames[id].node.value;
    }
    searchCount.textContent = view.matched.size ? `${view.matched.size} found` : "none";
    canvas.dataset.matchedSamples = String(under);
    status.replaceChildren(
      el("strong", {}, fmtInt(view.matched.size)), " matching frames hold ",
      el("strong", { id: "flame-match-share" }, fmtPct(under, view.data.total_samples)), " of samples",
      view.data.pruned_frames ? " (of the frames drawn)" : "");
  }
  draw();
}

function summary() {
  const d = view.data;
  const parts = [el("strong", {}, fmtInt(d.total_samples)), " samples · ", `${fmtInt(d.frames)} frames`];
  if (d.samples_without_frames) parts.push(` · ${fmtInt(d.samples_without_frames)} samples without frames not drawn`);
  if (d.base) parts.push(` · compared with ${fmtInt(d.base_total_samples)} base samples (width: the new profile)`);
  if (d.pruned_frames) {
    parts.push(` · left out: ${fmtInt(d.pruned_frames)} frames under ${fmtPct(d.fraction, 1)} of samples each, holding ${fmtPct(d.pruned_samples, d.total_samples)}`);
  }
  return parts;
}

function showMessage(text, isError = false) {
  message.textContent = text;
  message.classList.toggle("error", isError);
  message.hidden = false;
}

let loaded = null;
let ticket = 0;

async function load(query) {
  const mine = ++ticket;
  showMessage("Loading the flame graph…");
  status.replaceChildren();
  let data;
  try {
    data = await fetchJson(`/api/flame?${query}`);
  } catch (error) {
    if (mine === ticket) {
      view.data = null;
      crumbs.replaceChildren();
      canvas.width = canvas.height = 0;
      showMessage(`Cannot show this flame graph: ${error.message}`, true);
    }
    return;
  }
  if (mine !== ticket) return;
  const started = performance.now();
  view.data = data;
  useColors(data);
  ({ frames: view.frames, rows: view.rows } = flatten(data.root));
  view.diff = null;
  diffKey.hidden = !data.base;
  if (data.base) {
    const max = maxChange(view.frames.slice(1).map((f) => f.node));
    view.diff = diffColor(max);
    diffKey.replaceChildren(diffLegend(max, data.normalize));
  }
  canvas.dataset.frames = String(data.frames);
  let zoom = view.frames[0];
  if (state.zoom) zoom = view.frames.find((f) => f.path === state.zoom) || zoom;
  message.hidden = !!data.total_samples;
  if (!data.total_samples) showMessage(data.message ? `Nothing to draw: ${data.message}.` : "No samples to draw (the filters may have left none).");
  view.hover = null;
  zoomTo(zoom, false);
  applySearch();
  canvas.dataset.readyMs = (performance.now() - started).toFixed(1);
  canvas.dataset.query = query;
}

export const flameTab = {
  panel,
  show() {
    const params = selection();
    if (state.fraction) params.set("fraction", state.fraction);
    const query = params.toString();
    if (query !== loaded) {
      loaded = query;
      load(query);
    } else {
      applySearch();
    }
  },
  search: () => applySearch(),
  /** Where frames are on screen (for scripts and tests): [{label, text (drawn), name, group, path, x, y, width, height, value}]. */
  boxes() {
    if (!view.data) return [];
    const box = canvas.getBoundingClientRect();
    const { x0, k } = scale();
    const out = [];
    for (const f of view.frames) {
      const left = Math.max(f.x, x0), right = Math.min(f.x + f.node.value, x0 + view.zoom.node.value);
      if (right <= left || (f.depth >= view.zoom.depth && (f.x >= x0 + view.zoom.node.value || f.x + f.node.value <= x0))) continue;
      out.push({ label: f.node.label, text: fitLabel(f.node.label, (right - left) * k), name: f.node.name, group: f.node.group,
                 path: f.path, value: f.node.value, depth: f.depth,
                 x: box.left + (left - x0) * k, y: box.top + f.depth * ROW, width: (right - left) * k, height: ROW });
    }
    return out;
  },
};
