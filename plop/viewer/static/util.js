// Small DOM and formatting helpers. Profile strings only ever become text nodes.

/**
 * Create an element: el("td", {class: "num"}, "12", otherNode).
 * Attributes are set with setAttribute; children are nodes or strings (as text).
 */
export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value !== null && value !== undefined && value !== false) node.setAttribute(name, value === true ? "" : value);
  }
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

const integer = new Intl.NumberFormat("en-US");

/** 1234567 -> "1,234,567" */
export function fmtInt(n) {
  return integer.format(n);
}

/** Share of a whole as a percentage with sensible precision: "12.3%", "0.04%", "<0.01%". */
export function fmtPct(part, whole) {
  if (!whole) return "0%";
  const p = (100 * part) / whole;
  if (p === 0) return "0%";
  if (p < 0.01) return "<0.01%";
  if (p < 1) return p.toFixed(2) + "%";
  if (p < 10) return p.toFixed(1) + "%";
  return p.toFixed(p >= 99.95 ? 0 : 1) + "%";
}

/** Shorten a long name from the left, keeping its informative end: "…ncoder.iterencode". */
export function shorten(text, max) {
  return text.length <= max ? text : "…" + text.slice(text.length - max + 1);
}

/**
 * The short name of a function, for where its full (qualified) name does not fit:
 * the last dotted component ("ProductListHandler.get" -> "get",
 * "outer.<locals>.inner" -> "inner"). "<module> pkg.mod" stays whole: its
 * module is what tells it apart. Tooltips, panels and tables show the full name.
 */
export function shortName(label) {
  if (label.startsWith("<module>")) return label;
  const dot = label.lastIndexOf(".");
  return dot < 0 || dot === label.length - 1 ? label : label.slice(dot + 1);
}

/** "file.py:12", or the file alone when the line is unknown. */
export function location(node) {
  return node.lineno ? `${node.filename}:${node.lineno}` : node.filename || "(unknown file)";
}
