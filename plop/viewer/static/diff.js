// Comparing with a base: the diverging colour scale every tab shares, its legend and how a change reads.
//
// The server computes each function's, call's and frame's change (`delta`): by default the change
// of its share of all samples (normalised), else of its sample count. Red is slower (more of the
// samples than in the base), blue faster; the scale runs to the largest change shown, so the
// heaviest change is the deepest colour whatever its size.

import { el, fmtInt } from "./util.js";

const d3 = window.d3;
/** The colour of a function only the new profile has (no base counts to compare with). */
export const NEW_ONLY = "#b07ae6";

/** The largest absolute change among `items` (at least a tiny positive number, so a scale exists). */
export function maxChange(items, value = (item) => item.delta) {
  let max = 0;
  for (const item of items) max = Math.max(max, Math.abs(value(item) || 0));
  return max || 1e-9;
}

/** A colour per change: red (slower) through near-white (unchanged) to blue (faster), up to `max`. */
export function diffColor(max) {
  const scale = d3.scaleDiverging((t) => d3.interpolateRdBu(1 - t)).domain([-max, 0, max]).clamp(true);
  return (delta) => scale(delta || 0);
}

/** A change as a person reads it: "+5.2 pp" of the samples (normalised), else "+30" samples. */
export function fmtChange(delta, normalize) {
  if (!delta) return normalize ? "±0 pp" : "±0";
  const sign = delta > 0 ? "+" : "−";
  if (!normalize) return `${sign}${fmtInt(Math.abs(Math.round(delta)))}`;
  const pp = Math.abs(100 * delta);
  return `${sign}${pp >= 10 ? pp.toFixed(0) : pp >= 0.1 ? pp.toFixed(1) : pp.toFixed(2)} pp`;
}

/** The tooltip's rows about a change: the base's samples and the change (`item.delta`, `item.side`). */
export function changeRows(item, baseValue, normalize) {
  const cls = item.delta > 0 ? "slower" : item.delta < 0 ? "faster" : null;
  return [
    el("tr", {}, el("td", {}, "Base"), el("td", {}, `${fmtInt(baseValue)} samples`), el("td", {}, "")),
    el("tr", { class: "change" }, el("td", {}, "Change"), el("td", { class: cls }, fmtChange(item.delta, normalize)),
      el("td", {}, item.side === "new" ? "only in the new profile" : "")),
  ];
}

/**
 * The key to the colours: a gradient from the largest gain in speed to the largest loss, what the
 * numbers are, and the notes passed (e.g. functions only the base ran). Returns the element.
 */
export function diffLegend(max, normalize, notes = []) {
  const color = diffColor(max);
  const bar = el("div", { class: "diff-scale", role: "img", "aria-label": "Colour scale of the change" });
  const stops = [];
  for (let i = 0; i <= 10; i++) stops.push(`${color(-max + (2 * max * i) / 10)} ${i * 10}%`);
  bar.style.background = `linear-gradient(to right, ${stops.join(", ")})`;
  return el("div", { class: "diff-legend" },
    el("div", { class: "diff-title" }, normalize ? "Change of share of samples" : "Change of samples"),
    bar,
    el("div", { class: "diff-ticks" },
      el("span", { class: "faster" }, `${fmtChange(-max, normalize)} faster`),
      el("span", {}, "0"),
      el("span", { class: "slower" }, `${fmtChange(max, normalize)} slower`)),
    el("div", { class: "diff-note" }, el("span", { class: "swatch new-only" }), "only in the new profile"),
    ...notes.map((note) => el("div", { class: "diff-note" }, note)));
}
