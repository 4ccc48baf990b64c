// The call graph in SVG: a D3 force layout whose equilibrium is a top-down
// layered drawing by call depth (layout.js).
//
// The layered layout gives each function a home; a d3.forceSimulation holds
// every node near its home (strong x / y forces), keeps circles apart
// (collision) and ties callers to callees (weak links as long as at home).
// Nodes start at home, so the drawing is settled at once; dragging a node
// pins it where it is dropped and reheats the simulation, so its neighbours
// give way and follow; releasing it lets it go home.
//
// One <circle> per node of the /data response (area proportional to self
// samples), one curved path plus an arrowhead per edge (width proportional to
// the samples under the call). Labels keep a constant size on screen and are
// shown greedily, heaviest functions first, wherever they do not overlap
// each other, a circle or an overlaid panel; the heaviest are always shown.

import { layeredLayout, stretch } from "./layout.js";
import { fmtPct, shortName, shorten } from "./util.js";

const d3 = window.d3;

const LABEL_PX = 12;          // label font size on screen
const LABEL_CHARS = 32;       // longer names are cut from the left ("…Connection._server_request_loop")
const LABEL_HEIGHT = 2.1 * LABEL_PX;   // name and share
const COMPACT_HEIGHT = 1.2 * LABEL_PX; // name alone
const MIN_RADIUS = 6;         // a function with no self samples is still visible
const FIT_PAD = 24;           // free pixels around a fitted graph
const MAX_SCALE = 1.6;        // a fitted graph is shown at most this large
const MIN_LAYOUT_SCALE = 0.4; // labels get room in the layout for a scale down to this
const MAX_STRETCH_X = 1.5;    // spreading a laid-out graph to fill the window's width
const MAX_STRETCH_Y = 2.5;    // ... and height
// Labels shown even where crowded, and given room in the layout: functions
// with this share of the heaviest function's total or self samples, or of
// all samples, at most MUST_LABEL_MAX of them, and the heaviest few by self.
const MUST_LABEL = 0.1;
const MUST_TOTAL = 0.05;
const MUST_SELF = 0.02;
const MUST_LABEL_MAX = 40;
const MUST_LABEL_TOP = 6;
// The force simulation.
const HOME_STRENGTH = 0.35;   // forceX / forceY towards the layered layout
const LINK_STRENGTH = 0.06;   // calls pull weakly (towards their length at home)
const COLLIDE_PAD = 3;        // free pixels between circles
const DRAG_ALPHA = 0.3;       // alphaTarget while a node is dragged
const SETTLED_SPEED = 0.02;   // under this (world units per tick) for a few ticks: settled

export class GraphView {
  /**
   * @param {SVGSVGElement} svg
   * @param {object} on callbacks: hover(node, event), leave(node), select(node), background(),
   *   and obstacles() -> {right, panels}: pixels covered by a panel at the right, and the
   *   rectangles ({left, top, right, bottom} in the svg's pixels) of other overlaid panels;
   *   crowded(): the panels cost the graph much room (the page may make them smaller)
   */
  constructor(svg, on) {
    this.svg = d3.select(svg);
    this.on = on;
    this.viewport = this.svg.append("g").attr("class", "viewport");
    this.edgeLayer = this.viewport.append("g").attr("class", "edges");
    this.nodeLayer = this.viewport.append("g").attr("class", "nodes");
    this.transform = d3.zoomIdentity;
    this.zoom = d3.zoom()
      .scaleExtent([0.03, 8])
      .on("zoom", (event) => {
        if (event.sourceEvent) this.userZoomed = true;
        this.transform = event.transform;
        this.viewport.attr("transform", event.transform);
        this.scheduleLabels();
      });
    this.svg.call(this.zoom).on("dblclick.zoom", null);
    this.svg.on("click", (event) => {
      if (event.target === this.svg.node()) this.on.background();
    });
    this.labelFrame = 0;
    this.simulation = null;
    this.userZoomed = false;
    // A window resized before the user zoomed or panned is fitted again.
    new ResizeObserver(() => {
      if (!this.nodes || this.svg.attr("data-layout") === "running") return;
      if (this.userZoomed) this.scheduleLabels();
      else this.fit(0);
    }).observe(svg);
    this.emphasised = new Set(); // nodes whose labels are placed first
  }

  /**
   * Draw a /data response (circles coloured by `colorOf(node)`, calls by `edgeColor(edge)` when
   * given, else by the style sheet). The svg's data-layout attribute says where the
   * drawing is: "running" (being laid out), "ready" (drawn and interactive)
   * and "done" (labels placed), when the returned promise resolves.
   */
  render(data, colorOf, edgeColor = null) {
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
    this.incident = new Map(nodes.map((n) => [n, []]));
    for (const e of edges) {
      this.incident.get(e.source).push(e);
      if (e.target !== e.source) this.incident.get(e.target).push(e);
      if (e.target === e.source) e.source.loop = true;
    }

    const maxSelf = d3.max(nodes, (n) => n.self) || 1;
    const maxTotal = d3.max(nodes, (n) => n.total) || 1;
    const maxRadius = Math.max(18, Math.min(40, 40 * Math.sqrt(60 / Math.max(nodes.length, 1))));
    const maxWeight = d3.max(edges, (e) => e.weight) || 1;
    for (const n of nodes) {
      n.r = Math.max(MIN_RADIUS, maxRadius * Math.sqrt(n.self / maxSelf));
      n.importance = Math.max(n.total / maxTotal, n.self / maxSelf);
    }
    for (const e of edges) e.width = Math.max(1, 12 * (e.weight / maxWeight));
    // The labels that must show: the heaviest by total or by self.
    const ranked = [...nodes].sort((a, b) => b.importance - a.importance || b.total - a.total);
    this.order = ranked;
    const T = data.total_samples || 1;
    const bySelf = [...nodes].filter((n) => n.self > 0).sort((a, b) => b.self - a.self).slice(0, MUST_LABEL_TOP);
    this.mustLabel = new Set([...bySelf, ...ranked.filter((n) =>
      n.importance >= MUST_LABEL || n.total >= MUST_TOTAL * T || n.self >= MUST_SELF * T).slice(0, MUST_LABEL_MAX)]);

    this.edgeSel = this.edgeLayer.selectAll("g.link")
      .data(edges)
      .join((enter) => {
        const g = enter.append("g").attr("class", "link");
        g.append("path").attr("class", "edge");
        g.append("path").attr("class", "arrow");
        return g;
      });
    this.edgeSel.select("path.edge")
      .attr("class", (e) => (e.inferred ? "edge inferred" : "edge"))
      .attr("stroke-width", (e) => e.width);
    // Compared with a base: calls coloured by their change (CSS keeps the selection's colours first).
    this.svg.classed("compare", !!edgeColor);
    this.edgeSel.style("--diff", edgeColor ? (e) => edgeColor(e) : null);
    this.nodeSel = this.nodeLayer.selectAll("g.node")
      .data(nodes, (n) => n.id)
      .join((enter) => {
        const g = enter.append("g").attr("class", "node");
        g.append("circle");
        const text = g.append("text");
        text.append("tspan").attr("class", "name");
        text.append("tspan").attr("class", "pct");
        return g;
      });
    this.nodeSel.attr("data-id", (n) => n.id).classed("pinned", false).classed("new-only", (n) => n.side === "new");
    this.nodeSel.select("circle").attr("r", (n) => n.r).attr("fill", (n) => colorOf(n));
    for (const n of nodes) {
      n.fullText = shorten(n.label || n.funcname, LABEL_CHARS);
      n.shortText = shorten(shortName(n.label || n.funcname), LABEL_CHARS);
    }
    this.nodeSel.select("tspan.name").text((n) => n.fullText);
    this.nodeSel.select("tspan.pct").text((n) => fmtPct(n.total, data.total_samples));
    this.nodeSel
      .on("pointerenter", (event, n) => this.on.hover(n, event))
      .on("pointermove", (event, n) => this.on.hover(n, event))
      .on("pointerleave", (event, n) => this.on.leave(n))
      .on("click", (event, n) => { event.stopPropagation(); this.on.select(n); })
      .on("dblclick", (event, n) => { event.stopPropagation(); this.release([n]); })
      .call(this.dragBehaviour());
    this.measureLabels();

    // Labels keep their size on screen, so the room they need in the layout
    // depends on the scale it is shown at. The scale wanted is the largest at
    // which the layout made for it fits, found by bisection (the more room
    // the labels get, the smaller the drawing must be shown).
    const started = performance.now();
    const area = this.freeArea();
    const aspect = (area.right - area.left) / Math.max(1, area.bottom - area.top);
    const layoutFor = (scale) => {
      layeredLayout(nodes, edges, {
        aspect, labelHeight: LABEL_HEIGHT, labelScale: 1 / scale,
        labelBudget: 0.6 * (area.right - area.left), mustLabel: (n) => this.mustLabel.has(n),
      });
      return this.bestFit(nodes, 1, []).scale;
    };
    const first = layoutFor(1);
    if (first < 0.95) {
      // Not below MIN_LAYOUT_SCALE: circles would be too small to see; there,
      // the labels that do not fit are hidden instead.
      let lo = MIN_LAYOUT_SCALE, hi = 1, good = MIN_LAYOUT_SCALE, last = null;
      const rounds = nodes.length + edges.length > 1500 ? 2 : 6;
      for (let round = 0; round < rounds; round++) {
        last = round ? (lo + hi) / 2 : Math.max(first, MIN_LAYOUT_SCALE);
        if (layoutFor(last) >= 0.97 * last) {
          lo = good = last;
        } else {
          hi = last;
          if (last === MIN_LAYOUT_SCALE) break;
        }
      }
      if (good === MIN_LAYOUT_SCALE && hi === MIN_LAYOUT_SCALE) layoutFor(1); // nothing fits: labels that do not fit are hidden
      else if (last !== good) layoutFor(good);
    }
    // Fill the window: spread a wide drawing downwards, a tall one sideways.
    let [stretchX, stretchY] = [1, 1];
    let fitted = this.bestFit(nodes, MAX_SCALE, []);
    for (let round = 0; round < 3 && fitted.scale < 0.99 * MAX_SCALE; round++) {
      const [x0, x1, y0, y1] = extentOf(nodes);
      const grow = (spare, size, sofar, max) => (spare > 40 ? Math.min(max / sofar, 1 + spare / (size * fitted.scale || 1)) : 1);
      const fx = grow(fitted.spare[0], x1 - x0, stretchX, MAX_STRETCH_X);
      const fy = grow(fitted.spare[1], y1 - y0, stretchY, MAX_STRETCH_Y);
      if (fx < 1.02 && fy < 1.02) break;
      stretch(nodes, edges, fx, fy);
      const next = this.bestFit(nodes, MAX_SCALE, []);
      stretchX *= fx;
      stretchY *= fy;
      fitted = next;
    }
    // Where keeping clear of the panels (the legend) would cost much of the
    // scale, the page may fold them.
    if (this.bestFit(nodes, MAX_SCALE).scale < 0.8 * fitted.scale && this.on.crowded) this.on.crowded();
    this.svg.attr("data-layout-ms", Math.round(performance.now() - started));
    this.edgeSel.classed("back", (e) => !!e.back);
    this.startSimulation();
    this.redraw();
    this.fit(0);
    this.svg.attr("data-layout", "ready");
    return new Promise((resolve) => {
      requestAnimationFrame(() => {
        this.placeLabels();
        this.svg.attr("data-layout", "done");
        resolve();
      });
    });
  }

  /**
   * The force simulation over the drawn nodes, started at their homes (the
   * layered layout), which are its equilibrium: there, the links are at
   * their rest length and the circles apart. It stops when settled, so the
   * page idles; the svg's data-simulation attribute says "running" or
   * "settled", and the svg element's `simulation` property is the simulation.
   */
  startSimulation() {
    const nodes = this.nodes, edges = this.edges;
    for (const n of nodes) {
      n.x = n.homeX;
      n.y = n.homeY;
      n.vx = n.vy = 0;
      n.fx = n.fy = null;
      n.pinned = false;
      n.drawnX = n.drawnY = NaN;
    }
    const links = edges.filter((e) => e.source !== e.target);
    const home = (e) => Math.hypot(e.target.homeX - e.source.homeX, e.target.homeY - e.source.homeY);
    this.dragging = 0;
    this.quietTicks = 0;
    const simulation = d3.forceSimulation(nodes)
      .alphaDecay(0.03)
      .velocityDecay(0.45)
      .force("x", d3.forceX((n) => n.homeX).strength(HOME_STRENGTH))
      .force("y", d3.forceY((n) => n.homeY).strength(HOME_STRENGTH))
      .force("collide", d3.forceCollide((n) => n.r + COLLIDE_PAD).strength(0.9).iterations(2))
      .force("link", d3.forceLink(links).distance(home).strength(LINK_STRENGTH))
      .on("tick", () => this.tick())
      .on("end", () => this.settled());
    this.simulation = simulation;
    this.svg.property("simulation", simulation).attr("data-simulation", "running");
  }

  /** One step of the simulation: move what moved; stop once everything is still. */
  tick() {
    let fastest = 0;
    const moved = new Set();
    for (const n of this.nodes) {
      fastest = Math.max(fastest, Math.abs(n.vx), Math.abs(n.vy));
      if (!(Math.abs(n.x - n.drawnX) < 0.05 && Math.abs(n.y - n.drawnY) < 0.05)) moved.add(n);
    }
    if (moved.size) this.redraw(moved, false);
    this.quietTicks = fastest < SETTLED_SPEED ? this.quietTicks + 1 : 0;
    if (!this.dragging && this.simulation.alphaTarget() === 0 && this.quietTicks >= 3) {
      this.simulation.stop();
      this.settled();
    }
  }

  settled() {
    if (this.svg.attr("data-simulation") === "settled") return;
    this.svg.attr("data-simulation", "settled");
    this.scheduleLabels();
  }

  /** Reheat the simulation (to `alpha` at least). */
  reheat(alpha) {
    if (!this.simulation) return;
    this.quietTicks = 0;
    this.simulation.alpha(Math.max(this.simulation.alpha(), alpha)).restart();
    this.svg.attr("data-simulation", "running");
  }

  /**
   * Position every element (or those of the given nodes) from the nodes'
   * coordinates; labels are placed again (`labels`) or just follow.
   */
  redraw(moved = null, labels = true) {
    const nodeSel = moved ? this.nodeSel.filter((n) => moved.has(n)) : this.nodeSel;
    nodeSel.attr("transform", (n) => {
      n.drawnX = n.x;
      n.drawnY = n.y;
      return `translate(${n.x},${n.y})`;
    });
    const edgeSel = moved ? this.edgeSel.filter((e) => moved.has(e.source) || moved.has(e.target)) : this.edgeSel;
    edgeSel.each(function (e) {
      const shape = edgeShape(e);
      const paths = this.childNodes;
      paths[0].setAttribute("d", shape.line);
      paths[1].setAttribute("d", shape.head);
    });
    if (labels) this.scheduleLabels();
  }

  /**
   * Dragging a node pins it (fx, fy) where it is dropped; meanwhile the
   * simulation runs hot so that its neighbours make way and follow.
   */
  dragBehaviour() {
    return d3.drag()
      .clickDistance(4)
      .on("start", (event) => { event.subject.dragged = false; })
      .on("drag", (event, n) => {
        if (!n.dragged) {
          n.dragged = true;
          this.dragging++;
          this.simulation.alphaTarget(DRAG_ALPHA);
          this.reheat(DRAG_ALPHA);
        }
        n.fx = n.x = event.x;
        n.fy = n.y = event.y;
        n.pinned = true;
        this.redraw(new Set([n]), false);
      })
      .on("end", (event, n) => {
        if (!n.dragged) return;
        n.dragged = false;
        this.dragging = Math.max(0, this.dragging - 1);
        if (!this.dragging) this.simulation.alphaTarget(0);
        this.updatePinned();
      });
  }

  updatePinned() {
    this.nodeSel.classed("pinned", (n) => !!n.pinned);
  }

  /** Unpin nodes: the simulation takes them back home. */
  release(nodes) {
    const moving = nodes.filter((n) => n.pinned || n.x !== n.homeX || n.y !== n.homeY);
    for (const n of nodes) {
      n.pinned = false;
      n.fx = n.fy = null;
    }
    this.updatePinned();
    if (moving.length) this.reheat(1);
  }

  /** Release every dragged node. */
  unpinAll() {
    this.release(this.nodes || []);
  }

  /** The part of the svg not covered by a panel at the right (in the svg's pixels). */
  freeArea() {
    const { width, height } = this.svg.node().getBoundingClientRect();
    const { right = 0 } = this.on.obstacles();
    return { left: 0, top: 0, right: Math.max(width - right, width / 3), bottom: height };
  }

  /**
   * Zoom so that the given nodes (default: all) and their labels fill the
   * free area, up to `maxScale`. An overlaid panel (the legend) is kept clear
   * of them: if the best fit would put a function under it, the graph is
   * fitted beside or below the panel instead, whichever shows it larger.
   */
  fit(duration = 400, nodes = this.nodes, maxScale = MAX_SCALE) {
    if (!nodes || !nodes.length) return;
    this.userZoomed = false;
    const { transform } = this.bestFit(nodes, maxScale);
    (duration ? this.svg.transition().duration(duration) : this.svg).call(this.zoom.transform, transform);
  }

  /** The transform for fit(): {transform, scale}. */
  bestFit(nodes, maxScale, panels = this.on.obstacles().panels || []) {
    const area = this.freeArea();
    const full = fitInto(nodes, area, maxScale);
    const clear = (t) => !panels.some((p) => coversAny(t, nodes, p));
    if (clear(full.transform)) return full;
    // Slide the drawing about the free area, a little smaller each time,
    // until it clears the panels (its empty corners can go under them).
    const width = area.right - area.left - 2 * FIT_PAD, height = area.bottom - area.top - 2 * FIT_PAD;
    const steps = [0.5, 0.25, 0.75, 0, 1];
    for (let scale = full.scale, i = 0; i < 30; i++, scale *= 0.97) {
      const [x0, x1, y0, y1] = extentAt(nodes, scale);
      for (const fy of steps) {
        for (const fx of steps) {
          const tx = area.left + FIT_PAD + fx * Math.max(0, width - (x1 - x0)) - x0;
          const ty = area.top + FIT_PAD + fy * Math.max(0, height - (y1 - y0)) - y0;
          const transform = d3.zoomIdentity.translate(tx, ty).scale(scale);
          if (clear(transform)) {
            return { transform, scale, spare: [width - (x1 - x0), height - (y1 - y0)] };
          }
        }
      }
    }
    return full;
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

  /**
   * Measure each label once (at the base font size) for the layout and collision tests:
   * with the full name (what the layout makes room for) and with the short one.
   */
  measureLabels() {
    this.viewport.style("font-size", `${LABEL_PX}px`);
    this.nodeSel.each(function (n) {
      const name = this.querySelector("tspan.name"), pct = this.querySelector("tspan.pct");
      const pctWidth = 0.85 * pct.getComputedTextLength() + 4;
      n.nameWidth = name.getComputedTextLength() + 4;
      n.labelWidth = Math.max(n.nameWidth, pctWidth);
      if (n.shortText !== n.fullText) {
        name.textContent = n.shortText;
        n.shortNameWidth = name.getComputedTextLength() + 4;
        name.textContent = n.fullText;
      } else {
        n.shortNameWidth = n.nameWidth;
      }
      n.shortLabelWidth = Math.max(n.shortNameWidth, pctWidth);
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
   * nodes first, then the heaviest, each right, left, below or above its
   * circle (name and share, else the name alone), wherever it covers no
   * other label, circle or overlaid panel (a
   * grid of screen cells keeps this linear). The heaviest functions' labels
   * are shown even where crowded; other labels that fit nowhere are hidden.
   */
  placeLabels() {
    if (!this.nodeSel) return;
    const k = this.transform.k;
    this.viewport.style("font-size", `${LABEL_PX / k}px`);
    this.nodeSel.select("text").attr("stroke-width", 3 / k);
    const grid = new BoxGrid(80);
    // Panels and the edges of the view are walls (labels past an edge could not be read).
    const { panels = [] } = this.on.obstacles();
    const { width, height } = this.svg.node().getBoundingClientRect();
    const m = 400; // wide enough for any label to hit
    const walls = [
      ...panels.map((p) => [p.left - 4, p.top - 4, p.right + 4, p.bottom + 4]),
      [-m, -m, 2, height + m], [width - 2, -m, width + m, height + m], [-m, -m, width + m, 2], [-m, height - 2, width + m, height + m],
    ];
    const onScreen = (box) => box[2] > 0 && box[0] < width && box[3] > 0 && box[1] < height;
    for (const wall of walls) grid.add(wall);
    const screen = new Map();
    const heavyCircles = new BoxGrid(80);
    for (const n of this.nodes) {
      const [sx, sy] = this.transform.apply([n.x, n.y]);
      const r = n.r * k;
      const circle = [sx - r, sy - r, sx + r, sy + r];
      screen.set(n, [sx, sy, r, circle]);
      if (!onScreen(circle)) continue;
      grid.add(circle);
      // (A heavy function's circle may be grazed by a label that has nowhere else to go.)
      if (this.mustLabel.has(n)) heavyCircles.add([sx - 0.6 * r, sy - 0.6 * r, sx + 0.6 * r, sy + 0.6 * r]);
    }
    const first = this.emphasised;
    const order = first.size ? [...this.order].sort((a, b) => first.has(b) - first.has(a)) : this.order;
    const labels = new BoxGrid(80);
    for (const n of order) {
      const [sx, sy, r, own] = screen.get(n);
      n.labelSide = null;
      n.labelShort = false;
      if (!onScreen(own)) continue;
      // Name and share on two lines; where that fits nowhere, the name alone; then the same
      // with the short name (the method without its class), where it differs.
      const candidates = [];
      const variants = [[false, false], [true, false]];
      if (n.shortText !== n.fullText) variants.push([false, true], [true, true]);
      for (const [compact, short] of variants) {
        const h = compact ? COMPACT_HEIGHT : LABEL_HEIGHT;
        const w = short ? (compact ? n.shortNameWidth : n.shortLabelWidth) : (compact ? n.nameWidth : n.labelWidth);
        candidates.push(
          [compact, "right", [sx + r + 4, sy - h / 2, sx + r + 4 + w, sy + h / 2], short],
          [compact, "left", [sx - r - 4 - w, sy - h / 2, sx - r - 4, sy + h / 2], short],
          [compact, "below", [sx - w / 2, sy + r + 2, sx + w / 2, sy + r + 2 + h], short],
          [compact, "above", [sx - w / 2, sy - r - 2 - h, sx + w / 2, sy - r - 2], short],
          [compact, "below-start", [sx - r, sy + r + 2, sx - r + w, sy + r + 2 + h], short],
          [compact, "above-start", [sx - r, sy - r - 2 - h, sx - r + w, sy - r - 2], short],
        );
      }
      let chosen = candidates.find(([, , box]) => !grid.clashes(box, own));
      if (!chosen && this.mustLabel.has(n)) {
        // Crowded: over light functions' circles if need be, but never over another label,
        // a heavy function or a wall.
        chosen = candidates.find(([, , box]) => !labels.clashes(box) && !heavyCircles.clashes(box, own)
          && !walls.some((wall) => overlaps(box, wall)));
      }
      if (chosen) {
        grid.add(chosen[2]);
        labels.add(chosen[2]);
        n.labelCompact = chosen[0];
        n.labelSide = chosen[1];
        n.labelShort = chosen[3];
      }
    }
    const line = (LABEL_PX + 1) / k;
    this.nodeSel.classed("label-hidden", (n) => !n.labelSide).classed("label-compact", (n) => !!n.labelCompact)
      .classed("label-short", (n) => !!n.labelSide && n.labelShort);
    this.nodeSel.select("tspan.name").text((n) => (n.labelSide && n.labelShort ? n.shortText : n.fullText));
    const anchor = { right: "start", left: "end", "below-start": "start", "above-start": "start" };
    this.nodeSel.select("text").attr("text-anchor", (n) => anchor[n.labelSide] || "middle");
    const dx = (n) => ({ right: n.r + 4 / k, left: -n.r - 4 / k, "below-start": -n.r, "above-start": -n.r })[n.labelSide] || 0;
    const side = (n) => (n.labelSide || "below").replace("-start", "");
    const dy = (n) => (n.labelCompact
      ? { below: n.r + line, above: -n.r - 0.4 * line, right: 0.35 * line, left: 0.35 * line }
      : { below: n.r + line, above: -n.r - 1.3 * line, right: -0.1 * line, left: -0.1 * line })[side(n)];
    this.nodeSel.select("tspan.name").attr("x", dx).attr("y", dy);
    this.nodeSel.select("tspan.pct").attr("x", dx).attr("dy", "1.15em");
  }
}

/**
 * The transform showing `nodes` with their labels (to the right of their
 * circles, constant in pixels) as large as possible, up to `maxScale`,
 * centred in `area`: {transform, scale}.
 */
function fitInto(nodes, area, maxScale) {
  const width = area.right - area.left - 2 * FIT_PAD, height = area.bottom - area.top - 2 * FIT_PAD;
  const extent = (s) => extentAt(nodes, s);
  const fits = (s) => {
    const [x0, x1, y0, y1] = extent(s);
    return x1 - x0 <= width && y1 - y0 <= height;
  };
  let scale = maxScale;
  if (!fits(scale)) {
    let lo = 0.03, hi = maxScale;
    for (let i = 0; i < 40; i++) {
      const mid = (lo + hi) / 2;
      if (fits(mid)) lo = mid;
      else hi = mid;
    }
    scale = lo;
  }
  const [x0, x1, y0, y1] = extent(scale);
  const tx = area.left + FIT_PAD + (width - (x1 - x0)) / 2 - x0;
  const ty = area.top + FIT_PAD + Math.max(0, (height - (y1 - y0)) / 2) - y0;
  return {
    transform: d3.zoomIdentity.translate(tx, ty).scale(scale), scale,
    spare: [width - (x1 - x0), height - (y1 - y0)],
  };
}

/**
 * [x0, x1, y0, y1]: the extent in pixels of the nodes with their labels (to
 * the right) at scale s, relative to the origin: x * s + pixels, so the
 * drawing's size is convex in s.
 */
function extentAt(nodes, s) {
  let x0 = Infinity, x1 = -Infinity, y0 = Infinity, y1 = -Infinity;
  for (const n of nodes) {
    const r = n.r * s;
    x0 = Math.min(x0, n.x * s - r);
    x1 = Math.max(x1, n.x * s + r + 4 + n.labelWidth);
    y0 = Math.min(y0, n.y * s - Math.max(r, LABEL_HEIGHT / 2));
    y1 = Math.max(y1, n.y * s + Math.max(r, LABEL_HEIGHT / 2));
  }
  return [x0, x1, y0, y1];
}

/** [x0, x1, y0, y1]: the nodes' centres' extent. */
function extentOf(nodes) {
  return [d3.min(nodes, (n) => n.x), d3.max(nodes, (n) => n.x), d3.min(nodes, (n) => n.y), d3.max(nodes, (n) => n.y)];
}

/** Would a circle or label of `nodes` be under the panel `p` with this transform? */
function coversAny(transform, nodes, p) {
  const wall = [p.left - 6, p.top - 6, p.right + 6, p.bottom + 6];
  return nodes.some((n) => {
    const [sx, sy] = transform.apply([n.x, n.y]);
    const r = n.r * transform.k;
    return overlaps([sx - r, sy - Math.max(r, LABEL_HEIGHT / 2), sx + r + 4 + n.labelWidth, sy + Math.max(r, LABEL_HEIGHT / 2)], wall);
  });
}

function overlaps(a, b) {
  return a[0] < b[2] && b[0] < a[2] && a[1] < b[3] && b[1] < a[3];
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
  clashes(box, except = null) {
    for (const key of this.keys(box)) {
      for (const o of this.cells.get(key) || []) {
        if (o !== except && overlaps(box, o)) return true;
      }
    }
    return false;
  }
}

/**
 * SVG path data for an edge: from the caller down (or, for a call back up a
 * cycle, up) through its waypoints to an arrowhead on the callee's rim, each
 * stretch a curve leaving and arriving vertically. Waypoints follow a dragged
 * end, the nearer the more.
 */
function edgeShape(e) {
  const s = e.source, t = e.target;
  const head = 5 + 1.1 * e.width, half = 2.5 + 0.9 * e.width;
  if (s === t) {
    // A loop on the left of the circle.
    const a0 = (150 * Math.PI) / 180, a1 = (210 * Math.PI) / 180, reach = s.r + 26 + e.width;
    const p0 = [s.x + s.r * Math.cos(a0), s.y + s.r * Math.sin(a0)];
    const tip = [s.x + s.r * Math.cos(a1), s.y + s.r * Math.sin(a1)];
    const c0 = [s.x + reach * Math.cos(a0 - 0.35), s.y + reach * Math.sin(a0 - 0.35)];
    const c1 = [s.x + reach * Math.cos(a1 + 0.35), s.y + reach * Math.sin(a1 + 0.35)];
    const u = unit(tip[0] - c1[0], tip[1] - c1[1]);
    const base = [tip[0] - u[0] * head, tip[1] - u[1] * head];
    return { line: `M${p0}C${c0} ${c1} ${base}`, head: arrowHead(tip, base, u, half) };
  }
  const ds = [s.x - (s.homeX ?? s.x), s.y - (s.homeY ?? s.y)], dt = [t.x - (t.homeX ?? t.x), t.y - (t.homeY ?? t.y)];
  const way = (e.points || []).map((p, i, all) => {
    const f = (i + 1) / (all.length + 1);
    return [p.x + ds[0] * (1 - f) + dt[0] * f, p.y + ds[1] * (1 - f) + dt[1] * f];
  });
  const points = [[s.x, s.y], ...way, [t.x, t.y]];
  // A call back up to an adjacent layer bows out to the right, clear of the call down.
  const bow = e.back && !way.length ? 16 + 2 * Math.max(s.r, t.r) : 0;
  const controls = [];
  for (let i = 0; i + 1 < points.length; i++) {
    const p = points[i], q = points[i + 1];
    const dy = q[1] - p[1];
    const reach = Math.sign(dy || 1) * Math.max(Math.abs(dy) / 2, 24);
    controls.push([[p[0] + bow, p[1] + reach], [q[0] + bow, q[1] - reach]]);
  }
  const us = unit(controls[0][0][0] - s.x, controls[0][0][1] - s.y);
  const start = [s.x + us[0] * s.r, s.y + us[1] * s.r];
  const lastControl = controls[controls.length - 1][1];
  const ut = unit(t.x - lastControl[0], t.y - lastControl[1]);
  const tip = [t.x - ut[0] * (t.r + 1.5), t.y - ut[1] * (t.r + 1.5)];
  const base = [tip[0] - ut[0] * head, tip[1] - ut[1] * head];
  points[0] = start;
  points[points.length - 1] = base;
  let line = `M${start}`;
  controls.forEach(([c0, c1], i) => { line += `C${c0} ${c1} ${points[i + 1]}`; });
  return { line, head: arrowHead(tip, base, ut, half) };
}

function arrowHead(tip, base, u, half) {
  const px = -u[1] * half, py = u[0] * half;
  return `M${tip}L${base[0] + px},${base[1] + py}L${base[0] - px},${base[1] - py}Z`;
}

function unit(x, y) {
  const len = Math.hypot(x, y) || 1;
  return [x / len, y / len];
}
