// A layered ("Sugiyama") layout of a call graph, callers above callees.
//
// Per connected component (a thread, usually): cycles (recursion) are broken
// by a depth-first search from the roots, heaviest calls first; each function
// gets the layer just below its deepest caller; calls spanning several layers
// get invisible waypoints, one per layer they cross; the functions of each
// layer are ordered to cross few calls (weighted barycentres, sweeping down
// and up) and placed left to right so that heavy calls run straight (a
// weighted least-squares fit under the spacing constraints, solved layer by
// layer with pool-adjacent-violators). The components are then arranged in
// rows to suit the shape of the window.
//
// Everything is in "world" units meant to be seen at a scale of about 1: the
// room a function needs is its circle plus its label to the right.

const d3 = window.d3;

const HGAP = 18;          // between neighbours in a layer (less next to a call passing by)
const VGAP = 46;          // between the circles of consecutive layers
const LABEL_GAP = 6;      // between a circle and its label
const LABEL_SLACK = 8;    // after a label that must show, in pixels
const COMPONENT_GAP = 70; // between components
const LOOP_ROOM = 30;     // left of a recursive function, for its loop
const MAX_WAYPOINTS = 4000;

/**
 * Lay out `nodes` (with r, labelWidth, total, self) and `edges` (source,
 * target, weight, width: node objects). Sets n.x, n.y (and n.homeX, n.homeY)
 * on the nodes, and on each edge between two different nodes `points` (the
 * waypoints from source to target, [{x, y}]) and `back` (drawn against the
 * flow: a call back up a cycle).
 *
 * @param {object} options aspect: width / height of the space to fill;
 *   labelHeight: room a label needs vertically
 */
export function layeredLayout(nodes, edges, {
  aspect = 1.6, labelHeight = 26, labelScale = 1, labelBudget = Infinity, mustLabel = () => true,
} = {}) {
  if (!nodes.length) return { width: 0, height: 0 };
  const maxWeight = d3.max(edges, (e) => e.weight) || 1;
  const maxTotal = d3.max(nodes, (n) => n.total) || 1;
  const maxSelf = d3.max(nodes, (n) => n.self) || 1;
  const importance = (n) => Math.max(n.total / maxTotal, n.self / maxSelf);
  const strength = (e) => 0.1 + e.weight / maxWeight;
  const big = nodes.length + edges.length > 1500;
  const context = {
    // Layers far enough apart for labels one above the other, but not at any cost in height:
    // neighbours' labels are rarely right above each other.
    importance, strength, labelHeight: labelHeight * Math.min(labelScale, 1.6), labelScale, labelBudget, mustLabel,
    sweeps: big ? 4 : 14, passes: big ? 4 : 10, countCrossings: !big,
  };

  const parts = components(nodes, edges).map((c) => layoutComponent(c.nodes, c.edges, context));
  const placed = arrange(parts, aspect);

  for (const n of nodes) {
    n.homeX = n.x;
    n.homeY = n.y;
  }
  return { width: placed.width, height: placed.height };
}

/**
 * Spread a laid-out graph by factors `sx`, `sy` (about its top left corner),
 * to fill a window of another shape.
 */
export function stretch(nodes, edges, sx, sy) {
  for (const n of nodes) {
    n.x = n.homeX = n.homeX * sx;
    n.y = n.homeY = n.homeY * sy;
  }
  for (const e of edges) {
    for (const p of e.points || []) {
      p.x *= sx;
      p.y *= sy;
    }
  }
}

/** Weakly connected components, heaviest first. */
function components(nodes, edges) {
  const parent = new Map(nodes.map((n) => [n, n]));
  const find = (n) => {
    while (parent.get(n) !== n) {
      parent.set(n, parent.get(parent.get(n)));
      n = parent.get(n);
    }
    return n;
  };
  for (const e of edges) parent.set(find(e.source), find(e.target));
  const groups = new Map();
  for (const n of nodes) {
    const root = find(n);
    if (!groups.has(root)) groups.set(root, { nodes: [], edges: [] });
    groups.get(root).nodes.push(n);
  }
  for (const e of edges) groups.get(find(e.source)).edges.push(e);
  const weight = (c) => d3.max(c.nodes, (n) => n.total) + 1e-3 * c.nodes.length;
  return [...groups.values()].sort((a, b) => weight(b) - weight(a));
}

/** One component laid out with its top-left corner at (0, 0): {nodes, edges, width, height, weight}. */
function layoutComponent(nodes, edges, ctx) {
  const calls = edges.filter((e) => e.source !== e.target);
  const out = new Map(nodes.map((n) => [n, []]));
  const into = new Map(nodes.map((n) => [n, []]));
  for (const e of calls) {
    out.get(e.source).push(e);
    into.get(e.target).push(e);
  }
  for (const list of out.values()) list.sort((a, b) => b.weight - a.weight);

  // 1. Break cycles: a call to a function still on the depth-first path is a back edge.
  const heavy = [...nodes].sort((a, b) => b.total - a.total || b.self - a.self || a.id - b.id);
  const state = new Map();
  const rank = new Map(); // preorder: a first guess at the left-to-right order
  const back = new Set();
  for (const start of [...heavy.filter((n) => !into.get(n).length), ...heavy]) {
    if (state.has(start)) continue;
    state.set(start, 1);
    rank.set(start, rank.size);
    const stack = [[start, 0]];
    while (stack.length) {
      const top = stack[stack.length - 1];
      const list = out.get(top[0]);
      if (top[1] < list.length) {
        const e = list[top[1]++];
        const s = state.get(e.target);
        if (s === 1) back.add(e);
        else if (s === undefined) {
          state.set(e.target, 1);
          rank.set(e.target, rank.size);
          stack.push([e.target, 0]);
        }
      } else {
        state.set(top[0], 2);
        stack.pop();
      }
    }
  }
  const dag = calls.map((e) => (back.has(e) ? { from: e.target, to: e.source, edge: e } : { from: e.source, to: e.target, edge: e }));

  // 2. Layers: one below the deepest caller (longest path), then functions
  // without callers move down to just above their highest callee.
  const succ = new Map(nodes.map((n) => [n, []]));
  const indegree = new Map(nodes.map((n) => [n, 0]));
  for (const d of dag) {
    succ.get(d.from).push(d);
    indegree.set(d.to, indegree.get(d.to) + 1);
  }
  const layer = new Map(nodes.map((n) => [n, 0]));
  const sources = nodes.filter((n) => !indegree.get(n));
  const queue = [...sources];
  const left = new Map(indegree);
  while (queue.length) {
    const n = queue.pop();
    for (const d of succ.get(n)) {
      layer.set(d.to, Math.max(layer.get(d.to), layer.get(n) + 1));
      left.set(d.to, left.get(d.to) - 1);
      if (!left.get(d.to)) queue.push(d.to);
    }
  }
  for (const n of sources) {
    if (succ.get(n).length) layer.set(n, d3.min(succ.get(n), (d) => layer.get(d.to)) - 1);
  }
  const lowest = d3.min(nodes, (n) => layer.get(n));
  for (const n of nodes) layer.set(n, layer.get(n) - lowest);
  const depth = d3.max(nodes, (n) => layer.get(n)) + 1;

  // 3. Items per layer: functions, and a waypoint wherever a call crosses a layer.
  const layers = Array.from({ length: depth }, () => []);
  const itemOf = new Map();
  // Room for labels, in each layer up to the budget (in pixels): for those
  // that must show, as much as they will need on screen, heaviest first; for
  // the others, what they need at scale 1.
  const reserved = new Map();
  for (const n of [...heavy].sort((a, b) => ctx.importance(b) - ctx.importance(a))) {
    const l = layer.get(n), used = reserved.get(l) || 0;
    n.labelRoom = 0;
    if (ctx.mustLabel(n) && (!used || used + ctx.labelScale * n.labelWidth <= ctx.labelScale * ctx.labelBudget)) {
      n.labelRoom = ctx.labelScale * (n.labelWidth + LABEL_SLACK);
      reserved.set(l, used + n.labelRoom);
    } else if (used + n.labelWidth <= ctx.labelBudget) {
      n.labelRoom = n.labelWidth;
      reserved.set(l, used + n.labelWidth);
    }
  }
  for (const n of heavy) {
    const item = {
      node: n, up: [], down: [], rank: rank.get(n),
      lx: n.r + (n.loop ? LOOP_ROOM : 0), rx: n.r + (n.labelRoom ? LABEL_GAP + n.labelRoom : 0),
      w: 0.3 + 3 * ctx.importance(n), radius: n.r,
    };
    itemOf.set(n, item);
    layers[layer.get(n)].push(item);
  }
  const link = (a, b, s) => {
    a.down.push({ item: b, s });
    b.up.push({ item: a, s });
  };
  // In a very large graph only the heaviest long calls get waypoints (the others
  // are drawn straight across), so that the work stays bounded.
  let budget = MAX_WAYPOINTS;
  const routed = new Set();
  for (const d of [...dag].sort((a, b) => b.edge.weight - a.edge.weight)) {
    const span = layer.get(d.to) - layer.get(d.from) - 1;
    if (span <= budget) {
      routed.add(d);
      budget -= span;
    }
  }
  for (const d of dag) {
    const e = d.edge, s = ctx.strength(e);
    const top = layer.get(d.from), bottom = routed.has(d) ? layer.get(d.to) : top + 1;
    let prev = itemOf.get(d.from);
    const chain = [];
    for (let l = top + 1; l < bottom; l++) {
      const half = e.width / 2 + 5;
      const way = { node: null, up: [], down: [], rank: prev.rank + 0.5, lx: half, rx: half, w: 0.3 + 2 * s, radius: 0 };
      link(prev, way, chain.length ? 8 * s : 2 * s);
      layers[l].push(way);
      chain.push(way);
      prev = way;
    }
    link(prev, itemOf.get(d.to), chain.length ? 2 * s : s);
    d.chain = chain;
  }

  // 4. Order each layer: weighted barycentres, sweeping down and up; keep the best.
  for (const items of layers) {
    items.sort((a, b) => a.rank - b.rank);
    items.forEach((item, i) => { item.pos = i; });
  }
  const barycentre = (item, side) => {
    let sum = 0, weight = 0;
    for (const { item: other, s } of item[side]) {
      sum += s * other.pos;
      weight += s;
    }
    return weight ? sum / weight : item.pos;
  };
  const sweep = (down) => {
    const order = down ? layers.slice(1) : layers.slice(0, -1).reverse();
    for (const items of order) {
      for (const item of items) item.key = barycentre(item, down ? "up" : "down");
      items.sort((a, b) => a.key - b.key || a.pos - b.pos);
      items.forEach((item, i) => { item.pos = i; });
    }
  };
  let best = ctx.countCrossings ? crossings(layers) : 0;
  let bestOrder = layers.map((items) => [...items]);
  for (let i = 0; i < ctx.sweeps && best > 0; i++) {
    sweep(i % 2 === 0);
    if (!ctx.countCrossings) continue;
    const c = crossings(layers);
    if (c < best) {
      best = c;
      bestOrder = layers.map((items) => [...items]);
    }
  }
  if (ctx.countCrossings) {
    layers.forEach((items, l) => {
      layers[l] = bestOrder[l];
      layers[l].forEach((item, i) => { item.pos = i; });
    });
  }

  // 5. Horizontal positions: least squares towards the neighbours, heavy calls straightest.
  for (const items of layers) {
    let x = 0;
    items.forEach((item, i) => {
      if (i) x += items[i - 1].rx + gap(items[i - 1], item) + item.lx;
      item.x = x;
    });
    const shift = x / 2;
    for (const item of items) item.x -= shift;
  }
  for (let pass = 0; pass < ctx.passes; pass++) {
    const sides = pass < ctx.passes - 2 ? [pass % 2 ? "down" : "up"] : ["up", "down"];
    const order = sides.length === 1 && sides[0] === "down" ? [...layers].reverse() : layers;
    for (const items of order) place(items, sides);
  }

  // 6. Vertical positions: each layer as far below the last as their largest circles need.
  const ys = [];
  let y = 0;
  layers.forEach((items, l) => {
    const radius = d3.max(items, (item) => item.radius) || 0;
    if (l) {
      const above = d3.max(layers[l - 1], (item) => item.radius) || 0;
      y += Math.max(above + radius + VGAP, ctx.labelHeight + 14);
    }
    ys.push(y);
  });
  layers.forEach((items, l) => { for (const item of items) item.y = ys[l]; });

  // Normalise to a top-left corner at (0, 0) and hand the positions out.
  const x0 = d3.min(layers, (items) => d3.min(items, (item) => item.x - item.lx));
  const x1 = d3.max(layers, (items) => d3.max(items, (item) => item.x + item.rx));
  const y0 = -(d3.max(layers[0], (item) => Math.max(item.radius, ctx.labelHeight / 2)) || 0);
  const last = layers[layers.length - 1];
  const y1 = ys[ys.length - 1] + (d3.max(last, (item) => Math.max(item.radius, ctx.labelHeight / 2)) || 0);
  for (const items of layers) {
    for (const item of items) {
      item.x -= x0;
      item.y -= y0;
      if (item.node) {
        item.node.x = item.x;
        item.node.y = item.y;
      }
    }
  }
  for (const d of dag) {
    const points = d.chain.map((item) => ({ x: item.x, y: item.y }));
    if (d.from !== d.edge.source) points.reverse();
    d.edge.points = points;
  }
  for (const e of calls) e.back = back.has(e);
  return { nodes, edges, dag, width: x1 - x0, height: y1 - y0, weight: d3.max(nodes, (n) => n.total) };
}

/**
 * Place one layer's items (in their order) as close as their spacing allows
 * to the weighted mean of their neighbours on `sides` ("up", "down"):
 * minimise sum w (x - wanted)^2 subject to x[i+1] >= x[i] + gap[i], which
 * shifting by the cumulative gaps turns into an isotonic regression.
 */
function place(items, sides) {
  const blocks = [];
  let offset = 0;
  items.forEach((item, i) => {
    if (i) offset += items[i - 1].rx + gap(items[i - 1], item) + item.lx;
    let sum = 0, weight = 0;
    for (const side of sides) {
      for (const { item: other, s } of item[side]) {
        sum += s * other.x;
        weight += s;
      }
    }
    const wanted = weight ? sum / weight : item.x;
    const w = item.w + weight;
    let block = { w, wx: w * (wanted - offset), from: i, to: i };
    while (blocks.length && blocks[blocks.length - 1].wx / blocks[blocks.length - 1].w >= block.wx / block.w) {
      const prev = blocks.pop();
      block = { w: prev.w + block.w, wx: prev.wx + block.wx, from: prev.from, to: block.to };
    }
    blocks.push(block);
    item.offset = offset;
  });
  for (const b of blocks) {
    const x = b.wx / b.w;
    for (let i = b.from; i <= b.to; i++) items[i].x = x + items[i].offset;
  }
}

/** Room between neighbours: calls passing through a layer may run close together. */
function gap(a, b) {
  return a.node && b.node ? HGAP : a.node || b.node ? HGAP / 2 : 3;
}

/** Weighted crossings between consecutive layers (by the calls' strengths). */
function crossings(layers) {
  let total = 0;
  for (const items of layers) {
    const segments = [];
    for (const item of items) for (const { item: other, s } of item.down) segments.push([item.pos, other.pos, s]);
    for (let i = 0; i < segments.length; i++) {
      const [a0, a1, as] = segments[i];
      for (let j = i + 1; j < segments.length; j++) {
        const [b0, b1, bs] = segments[j];
        if ((a0 - b0) * (a1 - b1) < 0) total += as * bs;
      }
    }
  }
  return total;
}

/**
 * Arrange laid-out components in rows (heaviest first, tops aligned), trying
 * every row width that changes the packing and keeping the arrangement that
 * can be drawn largest in a window of the given aspect ratio.
 */
function arrange(parts, aspect) {
  const widths = [...new Set([
    d3.max(parts, (p) => p.width),
    ...d3.cumsum(parts, (p) => p.width).map((w, i) => w + i * COMPONENT_GAP),
  ])].sort((a, b) => a - b);
  let best = null;
  for (const limit of widths) {
    const rows = [];
    let row = null;
    for (const p of parts) {
      if (!row || row.width + COMPONENT_GAP + p.width > limit + 1e-6) {
        row = { parts: [], width: -COMPONENT_GAP, height: 0 };
        rows.push(row);
      }
      row.parts.push(p);
      row.width += COMPONENT_GAP + p.width;
      row.height = Math.max(row.height, p.height);
    }
    const width = d3.max(rows, (r) => r.width);
    const height = d3.sum(rows, (r) => r.height) + (rows.length - 1) * COMPONENT_GAP;
    const scale = Math.min(aspect / width, 1 / height);
    if (!best || scale > best.scale * 1.0001) best = { rows, width, height, scale };
  }
  let y = 0;
  for (const row of best.rows) {
    // Centre a lone row's parts; rows under a wider one start at the left.
    let x = (best.width - row.width) / 2;
    for (const p of row.parts) {
      for (const n of p.nodes) {
        n.x += x;
        n.y += y;
      }
      for (const e of p.edges) for (const pt of e.points || []) {
        pt.x += x;
        pt.y += y;
      }
      x += p.width + COMPONENT_GAP;
    }
    y += row.height + COMPONENT_GAP;
  }
  return best;
}
