// Package colours. The server decides them once per profile (plop/viewer/colors.py: the
// whole profile's heaviest packages, each in the palette slot its name hashes to) and
// every answer about the profile carries them as `colors`, so a package has the same
// colour in the wall and the CPU view, for every thread and filter, and in every tab.

import { el } from "./util.js";

let packages = new Map(); // package -> colour ("#rrggbb"); a Map, so no name is an object key
let other = "#b8bfca";

/** Take the colours an answer carries (every answer about one profile carries the same). */
export function useColors(answer) {
  if (!answer.colors) return;
  packages = new Map(answer.colors.packages.map((p) => [p.package, p.color]));
  other = answer.colors.other;
}

/** The colour of a package; the shared grey for those beyond the palette. */
export function packageColor(group) {
  return packages.get(group) || other;
}

/** True when the package has a colour of its own (it is one of the profile's heaviest). */
export function hasColor(group) {
  return packages.has(group);
}

/** The grey shared by the packages without a colour of their own. */
export function otherColor() {
  return other;
}

/** Text that reads on a fill: dark on light colours, white on dark ones (WCAG relative luminance). */
export function textOn(color) {
  const { r, g, b } = window.d3.rgb(color);  // any CSS colour: a palette's hex, a diff scale's rgb()
  const channels = [r, g, b].map((c) => c / 255)
    .map((c) => (c <= 0.03928 ? c / 12.92 : ((c + 0.055) / 1.055) ** 2.4));
  const luminance = 0.2126 * channels[0] + 0.7152 * channels[1] + 0.0722 * channels[2];
  return luminance > 0.2 ? "#1d2430" : "#ffffff";
}

/** A small dot of a colour (a package's), with an optional title (its name). */
export function swatch(color, title = null) {
  const s = el("span", { class: "swatch", title });
  s.style.background = color;
  return s;
}
