// The call graph in SVG: a D3 force layout, layered top-down from the roots.
//
// One <circle> per node of the /data response (area proportional to self
// samples), one curved path plus an arrowhead per edge (width proportional to
// the samples under the call). Labels keep a constant size on screen and are
// shown greedily, heaviest functions first, wherever they do not overlap.

import { fmtPct, shorten } from "./util.js";

const d3 = window.d3;

const LABEL_PX = 12;         // label font size on screen
const LEVEL_GAP = 100;        // vertical distance between call depths
const NODE_GAP = 140;        // horizontal room for a label in the starting layout
const MIN_RADIUS = 6;        // a function with no self samples is still visible
const LAYOUT_BUDGET_MS = 600; // synchronous layout before the first paint

export class GraphView {
  /**
   * @param {SVGSVGElement} svg
   * @param {object} on callbacks: hover(node, event), leave(node), select(node), background(),
   *   and insets() -> {left, right}: pixels covered by panels at the sides
   */
  constructor(svg, on) {
    this.svg = d3.select(svg);
    this.on = on;
    this.insets = on.insets;
    this.viewport = this.svg.append("g").attr("class", "viewport");
    this.edgeLayer = this.viewport.append("g").attr("class", "edges");
    this.nodeLayer = this.viewport.append("g").attr("class", "nodes");
    this.transform = d3.zoomIdentity;
    this.zoom = d3.zoom()
      .scaleExtent([0.03, 8])
      .on("zoom", (event) => {
        this.transform = event.transform;
        this.viewport.attr("transform", event.transform);
        this.scheduleLabels();
      });
    this.svg.call(this.zoom).on("dblclick.zoom", null);
    this.svg.on("click", (event) => {
      if (event.target === this.svg.node()) this.on.background();
    });
    this.simulation = null;
    this.labelFrame = 0;
    this.emphasised = new Set(); // nodes whose labels are placed first
  }

  /**
   * Draw a /data response. The svg's data-layout attribute says where the
   * layout is: "running", "ready" (first drawn, interactive, still settling)
   * and "done" (settled), when the returned promise resolves.
   */
  render(data, colorOf) {
    if (this.simulation) this.simulation.stop();
    this.svg.attr("data-layout", "running");
    const nodes = data.nodes.map((n) => ({ ...n }));
    const byId = new Map(nodes.map((n) => [n.id, n]));
    const edges = data.edges
      .filter((e) => byId.has(e.source) && byId.has(e.target))
      .map((e) => ({ ...e, source: byId.get(e.source), target: byId.get(e.target) }));
    this.nodes = nodes;
    this.edges = edges;
    this.byId = byId;

    const maxSelf = d3.max(nodes, (n) => n.self) || 1;
    const maxRadius = Math.max(18, Math.min(46, 46 * Math.sqrt(100 / Math.max(nodes.length, 1))));
    const maxWeight = d3.max(edges, (e) => e.weight) || 1;
    for (const n of nodes) n.r = Math.max(MIN_RADIUS, maxRadius * Math.sqrt(n.self / maxSelf));
    for (const e of edges) e.width = Math.max(1, 12 * (e.weight / maxWeight));
    placeInLayers(nodes, edges);

    this.edgeSel = this.edgeLayer.selectAll("g.link")
      .data(edges)
      .join((enter) => {
        const g = enter.append("g").attr("class", "link");
        g.append("path").attr("class", (e) => (e.inferred ? "edge inferred" : "edge"))
          .attr("stroke-width", (e) => e.width);
        g.append("path").attr("class", "arrow");
        return g;
      });
    this.nodeSel = this.nodeLayer.selectAll("g.node")
      .data(nodes, (n) => n.id)
      .join((enter) => {
        const g = enter.append("g").attr("class", "node");
        g.append("circle");
        const text = g.append("text").attr("text-anchor", "middle");
        text.append("tspan").attr("class", "name");
        text.append("tspan").attr("class", "pct").attr("x", 0);
        return g;
      });
    this.nodeSel.attr("data-id", (n) => n.id);
    this.nodeSel.select("circle").attr("r", (n) => n.r).attr("fill", (n) => colorOf(n));
    this.nodeSel.select("tspan.name").text((n) => shorten(n.funcname, 32));
    this.nodeSel.select("tspan.pct").text((n) => fmtPct(n.total, data.total_samples));
    this.nodeSel
      .on("pointerenter", (event, n) => this.on.hover(n, event))
      .on("pointermove", (event, n) => this.on.hover(n, event))
      .on("pointerleave", (event, n) => this.on.leave(n))
      .on("click", (event, n) => { event.stopPropagation(); this.on.select(n); })
      .on("dblclick", (event, n) => { event.stopPropagation(); n.fx = n.fy = null; this.updatePinned(); this.simulation.alpha(0.2).restart(); })
      .call(this.dragBehaviour());
    this.measureLabels();

    const simulation = d3.forceSimulation(nodes)
      .force("link", d3.forceLink(edges).distance((e) => e.source.r + e.target.r + 70))
      .force("charge", d3.forceManyBody().strength((n) => -260 - 12 * n.r).distanceMax(900))
      .force("collide", d3.forceCollide((n) => Math.max(n.r + 10, Math.min(n.labelWidth, 190) * 0.6)).strength(0.9))
      .force("layer", d3.forceY((n) => n.layer * LEVEL_GAP).strength(0.3))
      .force("order", d3.forceX((n) => n.x0).strength(0.05))
      .alphaDecay(0.035)
      .stop();
    this.simulation = simulation;
    const started = performance.now();
    while (simulation.alpha() > simulation.alphaMin() && performance.now() - started < LAYOUT_BUDGET_MS) simulation.tick();
    this.tick();
    this.fit(0);
    this.svg.attr("data-layout", "ready");

    return new Promise((resolve) => {
      const settled = () => {
        this.svg.attr("data-layout", "done");
        this.scheduleLabels();
        resolve();
      };
      simulation.on("tick", () => this.tick());
      if (simulation.alpha() <= simulation.alphaMin()) {
        settled();
      } else {
        simulation.on("end", () => { simulation.on("end", null); this.fit(300); settled(); });
        simulation.restart();
      }
    });
  }

  /** Position every element from the simulation's coordinates. */
  tick() {
    this.nodeSel.attr("transform", (n) => `translate(${n.x},${n.y})`);
    this.edgeSel.each(function (e) {
      const shape = edgeShape(e);
      const paths = this.childNodes;
      paths[0].setAttribute("d", shape.line);
      paths[1].setAttribute("d", shape.head);
    });
    this.scheduleLabels();
  }

  dragBehaviour() {
    return d3.drag()
      .clickDistance(4)
      .on("start", (event, n) => {
        if (!event.active) this.simulation.alphaTarget(0.15).restart();
        n.fx = n.x;
        n.fy = n.y;
      })
      .on("drag", (event, n) => {
        n.fx = event.x;
        n.fy = event.y;
      })
      .on("end", (event) => {
        if (!event.active) this.simulation.alphaTarget(0);
        this.updatePinned();
      });
  }

  updatePinned() {
    this.nodeSel.classed("pinned", (n) => n.fx !== null && n.fx !== undefined);
  }

  /** Release every dragged node. */
  unpinAll() {
    for (const n of this.nodes || []) n.fx = n.fy = null;
    this.updatePinned();
    if (this.simulation) this.simulation.alpha(0.3).restart();
  }

  /**
   * Zoom so that the given nodes (default: all) fill the view, up to
   * `maxScale`, leaving
   * `this.insets` (left and right, in pixels) free for overlaid panels.
   */
  fit(duration = 400, nodes = this.nodes, maxScale = 1.6) {
    if (!nodes || !nodes.length) return;
    const { width, height } = this.svg.node().getBoundingClientRect();
    const pad = 32, { left, right } = this.insets();
    const x0 = d3.min(nodes, (n) => n.x - n.r - 60), x1 = d3.max(nodes, (n) => n.x + n.r + 60);
    const y0 = d3.min(nodes, (n) => n.y - n.r - 10), y1 = d3.max(nodes, (n) => n.y + n.r + 34);
    const free = width - left - right - 2 * pad;
    const scale = Math.min(maxScale, Math.max(0.03, Math.min(free / (x1 - x0), (height - 2 * pad) / (y1 - y0))));
    const t = d3.zoomIdentity.translate(left + pad + free / 2, height / 2).scale(scale).translate(-(x0 + x1) / 2, -(y0 + y1) / 2);
    (duration ? this.svg.transition().duration(duration) : this.svg).call(this.zoom.transform, t);
  }

  /**
   * Emphasise some nodes: `lit` nodes stay opaque, the rest fade (when `dim`);
   * edges into / out of `selected` are coloured; `matches` get a ring.
   */
  highlight({ selected = null, lit = null, matches = null }) {
    const dim = lit !== null;
    this.viewport.classed("dim", dim);
    this.nodeSel
      .classed("selected", (n) => n === selected)
      .classed("lit", (n) => dim && lit.has(n))
      .classed("match", (n) => matches !== null && matches.has(n));
    this.emphasised = new Set([...(selected ? [selected] : []), ...(lit || []), ...(matches || [])]);
    this.edgeSel.each(function (e) {
      const into = selected !== null && e.target === selected;
      const out = selected !== null && e.source === selected && !into;
      const litEdge = dim && !selected && lit.has(e.source) && lit.has(e.target);
      for (const path of this.childNodes) {
        path.classList.toggle("in", into);
        path.classList.toggle("out", out);
        path.classList.toggle("lit", litEdge);
      }
    });
    this.scheduleLabels();
  }

  /** Measure each label once (at the base font size) for collision tests. */
  measureLabels() {
    this.viewport.style("font-size", `${LABEL_PX}px`);
    this.nodeSel.each(function (n) {
      const name = this.querySelector("tspan.name");
      n.labelWidth = name.getComputedTextLength() + 6;
    });
  }

  scheduleLabels() {
    if (this.labelFrame) return;
    this.labelFrame = requestAnimationFrame(() => {
      this.labelFrame = 0;
      this.placeLabels();
    });
  }

  /**
   * Keep labels LABEL_PX tall on screen and show as many as fit: emphasised
   * nodes first, then the heaviest, each below, above, right or left of its
   * circle, wherever it covers no other label or circle (a grid of screen
   * cells keeps this linear). Labels that fit nowhere are hidden.
   */
  placeLabels() {
    if (!this.nodeSel) return;
    const k = this.transform.k;
    this.viewport.style("font-size", `${LABEL_PX / k}px`);
    this.nodeSel.select("text").attr("stroke-width", 3 / k);
    const grid = new BoxGrid(80);
    const screen = new Map();
    for (const n of this.nodes) {
      const [sx, sy] = this.transform.apply([n.x, n.y]);
      const r = n.r * k;
      const circle = [sx - r, sy - r, sx + r, sy + r];
      screen.set(n, [sx, sy, r, circle]);
      grid.add(circle);
    }
    const first = this.emphasised;
    const order = [...this.nodes].sort((a, b) =>
      first.has(b) - first.has(a) || b.total + b.self - (a.total + a.self));
    const height = 2.1 * LABEL_PX;
    for (const n of order) {
      const [sx, sy, r, own] = screen.get(n);
      const w = n.labelWidth;
      n.labelSide = null;
      for (const [side, box] of [
        ["below", [sx - w / 2, sy + r + 2, sx + w / 2, sy + r + 2 + height]],
        ["above", [sx - w / 2, sy - r - 2 - height, sx + w / 2, sy - r - 2]],
        ["right", [sx + r + 4, sy - height / 2, sx + r + 4 + w, sy + height / 2]],
        ["left", [sx - r - 4 - w, sy - height / 2, sx - r - 4, sy + height / 2]],
      ]) {
        if (!grid.clashes(box, own)) {
          grid.add(box);
          n.labelSide = side;
          break;
        }
      }
    }
    const line = (LABEL_PX + 1) / k;
    this.nodeSel.classed("label-hidden", (n) => !n.labelSide);
    this.nodeSel.select("text")
      .attr("text-anchor", (n) => ({ right: "start", left: "end" })[n.labelSide] || "middle");
    const dx = (n) => ({ right: n.r + 4 / k, left: -n.r - 4 / k })[n.labelSide] || 0;
    const dy = (n) => ({ below: n.r + line, above: -n.r - 1.3 * line, right: -0.1 * line, left: -0.1 * line })[n.labelSide] || n.r + line;
    this.nodeSel.select("tspan.name").attr("x", dx).attr("y", dy);
    this.nodeSel.select("tspan.pct").attr("x", dx).attr("dy", "1.15em");
  }
}

/** Rectangles [x0, y0, x1, y1] in screen space, bucketed in square cells for overlap tests. */
class BoxGrid {
  constructor(cell) {
    this.cell = cell;
    this.cells = new Map();
  }

  *keys(box) {
    const c = this.cell;
    for (let gx = Math.floor(box[0] / c); gx <= Math.floor(box[2] / c); gx++) {
      for (let gy = Math.floor(box[1] / c); gy <= Math.floor(box[3] / c); gy++) yield gx + "," + gy;
    }
  }

  add(box) {
    for (const key of this.keys(box)) {
      if (!this.cells.has(key)) this.cells.set(key, []);
      this.cells.get(key).push(box);
    }
  }

  /** Does `box` overlap any stored box other than `except`? */
  clashes(box, except) {
    for (const key of this.keys(box)) {
      for (const o of this.cells.get(key) || []) {
        if (o !== except && box[0] < o[2] && o[0] < box[2] && box[1] < o[3] && o[1] < box[3]) return true;
      }
    }
    return false;
  }
}

/**
 * Assign each node a call depth (`layer`, breadth-first from the roots) and a
 * starting position: layer by layer, each node goes under the mean position
 * of its callers, then the layer is spread so labels do not overlap. The
 * simulation keeps a weak pull towards that order (`x0`), which keeps
 * callers above their callees and few edges crossing.
 */
function placeInLayers(nodes, edges) {
  const callees = new Map(nodes.map((n) => [n, []]));
  const callers = new Map(nodes.map((n) => [n, []]));
  for (const e of edges) {
    if (e.source === e.target) continue;
    callees.get(e.source).push(e.target);
    callers.get(e.target).push(e.source);
  }
  for (const n of nodes) n.layer = undefined;
  const byWeight = [...nodes].sort((a, b) => b.total - a.total);
  let frontier = byWeight.filter((n) => !callers.get(n).length);
  if (!frontier.length && byWeight.length) frontier = [byWeight[0]];
  for (const n of frontier) n.layer = 0;
  // Nodes only reachable through a cycle start a new search from the heaviest of them.
  for (;;) {
    while (frontier.length) {
      const next = [];
      for (const n of frontier) {
        for (const c of callees.get(n)) {
          if (c.layer === undefined) { c.layer = n.layer + 1; next.push(c); }
        }
      }
      frontier = next;
    }
    const rest = byWeight.find((n) => n.layer === undefined);
    if (!rest) break;
    rest.layer = 0;
    frontier = [rest];
  }
  const layers = d3.groups(byWeight, (n) => n.layer).sort((a, b) => a[0] - b[0]);
  for (const [layer, members] of layers) {
    for (const n of members) {
      const above = callers.get(n).filter((c) => c.layer < layer);
      n.x0 = above.length ? d3.mean(above, (c) => c.x0) : 0;
    }
    members.sort((a, b) => a.x0 - b.x0);
    const wanted = d3.mean(members, (n) => n.x0);
    for (let i = 1; i < members.length; i++) members[i].x0 = Math.max(members[i].x0, members[i - 1].x0 + NODE_GAP);
    const shift = wanted - d3.mean(members, (n) => n.x0);
    for (const n of members) {
      n.x0 += shift;
      n.x = n.x0;
      n.y = layer * LEVEL_GAP;
    }
  }
}

/** SVG path data for an edge: a gentle curve ending at an arrowhead on the callee's rim. */
function edgeShape(e) {
  const s = e.source, t = e.target;
  const head = 5 + 1.1 * e.width, half = 2.5 + 0.9 * e.width;
  if (s === t) {
    const a0 = (-130 * Math.PI) / 180, a1 = (-50 * Math.PI) / 180, reach = s.r + 34 + e.width;
    const p0 = [s.x + s.r * Math.cos(a0), s.y + s.r * Math.sin(a0)];
    const tip = [s.x + s.r * Math.cos(a1), s.y + s.r * Math.sin(a1)];
    const c0 = [s.x + reach * Math.cos(a0 - 0.3), s.y + reach * Math.sin(a0 - 0.3)];
    const c1 = [s.x + reach * Math.cos(a1 + 0.3), s.y + reach * Math.sin(a1 + 0.3)];
    const u = unit(tip[0] - c1[0], tip[1] - c1[1]);
    const base = [tip[0] - u[0] * head, tip[1] - u[1] * head];
    return {
      line: `M${p0}C${c0} ${c1} ${base}`,
      head: arrowHead(tip, base, u, half),
    };
  }
  const dx = t.x - s.x, dy = t.y - s.y, dist = Math.hypot(dx, dy) || 1;
  const bend = Math.min(0.12 * dist, 40);
  const c = [(s.x + t.x) / 2 - (dy / dist) * bend, (s.y + t.y) / 2 + (dx / dist) * bend];
  const us = unit(c[0] - s.x, c[1] - s.y);
  const start = [s.x + us[0] * s.r, s.y + us[1] * s.r];
  const ut = unit(t.x - c[0], t.y - c[1]);
  const tip = [t.x - ut[0] * (t.r + 1.5), t.y - ut[1] * (t.r + 1.5)];
  const base = [tip[0] - ut[0] * head, tip[1] - ut[1] * head];
  return { line: `M${start}Q${c} ${base}`, head: arrowHead(tip, base, ut, half) };
}

function arrowHead(tip, base, u, half) {
  const px = -u[1] * half, py = u[0] * half;
  return `M${tip}L${base[0] + px},${base[1] + py}L${base[0] - px},${base[1] - py}Z`;
}

function unit(x, y) {
  const len = Math.hypot(x, y) || 1;
  return [x / len, y / len];
}
