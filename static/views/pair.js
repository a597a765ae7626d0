// Pair view: one text tokenised by student and teacher, byte-offset chunks, and W rows on hover.
// A chunk (the same span of text on both sides) has one colour on both sides; tokens in no chunk are grey.
import { api } from "../api.js";
import { colour, glyphLegend, glyphs, h, weight } from "../dom.js";
import { currentTeacher, go, state } from "../state.js";

const SAMPLE = "Natalia sold clips to 48 of her friends in April, and then she sold half as many clips in May. How many clips did Natalia sell altogether in April and May? 48 + 24 = 72\n    return 1234";

export async function renderPair(main, route) {
  const text = route.params.get("text") ?? SAMPLE;
  const input = h("textarea", { id: "pair-text", rows: 4, "aria-label": "text to tokenise", maxlength: state.meta.max_text_chars }, text);
  const output = h("div", { class: "pair-output" });
  const form = h(
    "form",
    {
      class: "pair-form",
      onsubmit: (event) => {
        event.preventDefault();
        go("pair", [], { text: input.value });
      },
    },
    input,
    h("button", { type: "submit" }, "Tokenise"),
  );
  main.replaceChildren(h("h1", {}, "Pair view"), form, output);
  const pair = await api.post("/api/pair", { text, teacher: currentTeacher() });
  drawPair(output, pair);
}

function drawPair(output, pair) {
  const teacher = state.meta.teachers.find((t) => t.key === currentTeacher());
  const panel = h("aside", { class: "row-panel", "aria-live": "polite" }, h("p", { class: "muted" }, "Hover or focus a student token to see its W row."));
  const loose = new Set(pair.chunks.flatMap((c, i) => (c.one_to_one ? [] : [i])));
  const chunkOf = (chunk) => pair.chunks[chunk];
  const spans = { student: [], teacher: [] };

  const highlight = (chunk, on) => {
    const c = chunkOf(chunk);
    if (!c) return; // chunk -1: a special token, or where the two sides' bytes differ
    for (const p of c.student) spans.student[p]?.classList.toggle("lit", on);
    for (const p of c.teacher) spans.teacher[p]?.classList.toggle("lit", on);
  };
  const showRow = (token) => {
    panel.replaceChildren(
      h("h3", {}, "student ", h("code", {}, glyphs(token.display)), ` #${token.id}`),
      token.row.length
        ? h("table", { class: "entries" },
            h("thead", {}, h("tr", {}, h("th", {}, "teacher token"), h("th", {}, "weight"), h("th", {}, "rule"))),
            h("tbody", {}, token.row.map((e) => h("tr", { "data-teacher-id": e.teacher_id },
              h("td", {}, h("code", {}, glyphs(e.display)), ` #${e.teacher_id}`), h("td", {}, weight(e.weight)), h("td", {}, e.rule)))))
        : h("p", { class: "warn" }, "Empty row: this token has no counterpart in the teacher."),
    );
    for (const p of chunkOf(token.chunk)?.teacher ?? []) {
      const id = pair.teacher[p].id;
      spans.teacher[p].classList.toggle("in-row", token.row.some((e) => e.teacher_id === id));
    }
  };
  const clearRow = () => spans.teacher.forEach((s) => s.classList.remove("in-row"));

  const line = (side, tokens) =>
    h("div", { class: `tokens ${side}`, role: "list", "aria-label": `${side} tokens` },
      tokens.map((token, position) => {
        const span = h("span", {
          class: `tok${loose.has(token.chunk) ? " loose" : ""}${token.chunk < 0 ? " unchunked" : ""}`,
          role: "listitem",
          tabindex: 0,
          title: `${side} #${token.id} ${JSON.stringify(token.piece)} bytes ${token.start}-${token.end}`,
          style: { background: token.chunk < 0 ? "#e4e7ec" : colour(token.chunk) },
          "data-id": token.id,
          "data-chunk": token.chunk,
          onmouseenter: () => { highlight(token.chunk, true); if (side === "student") showRow(token); },
          onmouseleave: () => { highlight(token.chunk, false); clearRow(); },
          onfocus: () => { highlight(token.chunk, true); if (side === "student") showRow(token); },
          onblur: () => { highlight(token.chunk, false); clearRow(); },
          onclick: () => go("token", [side, token.id]),
          onkeydown: (event) => { if (event.key === "Enter") go("token", [side, token.id]); },
        }, glyphs(token.display));
        spans[side][position] = span;
        return span;
      }));

  const ones = pair.chunks.filter((c) => c.one_to_one).length;
  output.replaceChildren(
    h("div", { class: "pair-grid" },
      h("div", {},
        h("h2", {}, `student ${state.meta.student.name}: ${pair.student.length} tokens`),
        line("student", pair.student),
        h("h2", {}, `teacher ${teacher.name}: ${pair.teacher.length} tokens`),
        line("teacher", pair.teacher),
        glyphLegend(),
        h("p", { class: "muted" },
          `Each chunk (the same bytes on both sides) has one colour on both sides. ${pair.chunks.length} chunks, ${ones} one-to-one; ${pair.disagreeing_boundaries.length} boundaries on one side only (dashed).`),
        ...["student", "teacher"].filter((side) => !pair.round_trips[side]).map((side) =>
          h("p", { class: "warn" },
            `The ${side} tokenizer does not reproduce this text byte for byte; tokens where the two sides differ belong to no chunk (dotted).`))),
      panel));
}
