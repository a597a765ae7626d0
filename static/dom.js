// DOM helpers. Token strings are untrusted: they only ever become text nodes (never innerHTML).

export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith("on")) el.addEventListener(key.slice(2), value);
    else if (key === "class") el.className = value;
    else if (key === "style" && typeof value === "object") Object.assign(el.style, value);
    else el.setAttribute(key, value === true ? "" : value);
  }
  for (const child of children.flat()) {
    if (child === undefined || child === null || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

// Whitespace made visible, as tokenizer playgrounds do.
export function glyphs(text) {
  return text.replace(/ /g, "\u00b7").replace(/\n/g, "\u21b5").replace(/\t/g, "\u2192").replace(/\r/g, "\u2190");
}

// A stable colour per number, a token id or a chunk index (golden-ratio hue walk: neighbours differ).
export function colour(id) {
  const hue = Math.round((id * 137.508) % 360);
  return `hsl(${hue} 70% 85%)`;
}

// What the whitespace glyphs of `glyphs` stand for, shown wherever tokens are.
export function glyphLegend() {
  return h("p", { class: "legend", "data-legend": "whitespace" }, "whitespace shown as ",
    h("code", {}, "\u00b7"), " space, ", h("code", {}, "\u21b5"), " newline, ", h("code", {}, "\u2192"), " tab, ",
    h("code", {}, "\u2190"), " carriage return");
}

export function toast(message, kind = "info") {
  const box = document.getElementById("toast");
  box.textContent = message;
  box.className = `show ${kind}`;
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => (box.className = ""), 4000);
}

export function clearToast() {
  clearTimeout(toast.timer);
  document.getElementById("toast").className = "";
}

export function weight(value) {
  return value.toFixed(4);
}
