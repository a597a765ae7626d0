// Vocabulary browser: server-side search, filters, sort and paging; every control is in the URL.
// Student tokens show their impact (corpus frequency × risk, xtoken_align/impact.py); sorting by it
// reads highest first unless the URL says order=asc.
import { api } from "../api.js";
import { glyphLegend, glyphs, h, weight } from "../dom.js";
import { currentTeacher, go, state } from "../state.js";
import { bulkPanel } from "./bulk.js";

const PAGE = 50;
let bulk = { key: "", panel: null }; // kept across re-renders of the same selection (its preview, its Undo)

// The filters as the bulk endpoint takes them (the same ones the search used).
function selectionOf(current) {
  const selection = { q: current.q, regex: current.regex === "true" };
  if (current.category) selection.category = current.category;
  if (current.matched) selection.matched = current.matched === "true";
  if (current.rule) selection.rule = current.rule;
  return selection;
}
const SORTS = [["id", "id"], ["piece", "piece"], ["category", "category"], ["degree", "degree"], ["length", "length"]];
const IMPACT_TITLE = "impact = frequency × risk: how often the student tokenizer emits the token on the corpus, times the mean of its risk checks (no one-hot match, not in the H-KL common set, 1 − agreement@1 where it opens a chunk)";

export async function renderVocab(main, route) {
  const p = route.params;
  const side = p.get("side") === "teacher" ? "teacher" : "student";
  const sort = side === "student" || p.get("sort") !== "impact" ? p.get("sort") || "id" : "id"; // teachers have no impact
  const current = {
    side,
    q: p.get("q") || "",
    regex: p.get("regex") === "true" ? "true" : "",
    category: p.get("category") || "",
    matched: p.get("matched") || "",
    rule: side === "student" ? p.get("rule") || "" : "",
    sort,
    order: p.get("order") || (sort === "impact" ? "desc" : "asc"),
    page: Number(p.get("page") || 0),
  };
  const update = (changes) => go("vocab", [], { ...current, ...changes, page: changes.page ?? 0 });

  const search = h("input", { type: "search", value: current.q, placeholder: "search piece, text or hex  ( / )", "data-search": true, "aria-label": "search" });
  const select = (name, options, label) =>
    h("label", {}, label,
      h("select", { "aria-label": label, onchange: (e) => update({ [name]: e.target.value }) },
        options.map(([value, text]) => h("option", { value, selected: value === current[name] }, text))));
  const form = h("form", { class: "filters", onsubmit: (e) => { e.preventDefault(); update({ q: search.value }); } },
    select("side", [["student", `student (${state.meta.student.name})`], ["teacher", "teacher"]], "side "),
    search,
    h("label", {}, h("input", { type: "checkbox", checked: current.regex === "true", onchange: (e) => update({ regex: e.target.checked ? "true" : "", q: search.value }) }), " regex"),
    select("category", [["", "any category"], ...state.meta.categories.map((c) => [c, c])], "category "),
    select("matched", [["", "any"], ["true", "one-hot match"], ["false", "no one-hot match"]], "match "),
    side === "student" ? select("rule", [["", "any rule"], ...state.meta.rules.map((r) => [r, r])], "rule ") : null,
    h("label", {}, "sort ",  // a new sort key starts in its own default order
      h("select", { "aria-label": "sort ", onchange: (e) => update({ sort: e.target.value, order: "" }) },
        [...SORTS, ...(side === "student" ? [["impact", "impact (frequency × risk)"]] : [])]
          .map(([value, text]) => h("option", { value, selected: value === current.sort }, text)))),
    select("order", [["asc", "ascending"], ["desc", "descending"]], "order "),
    h("button", { type: "submit" }, "Search"));

  const table = h("div", { class: "results" }, h("p", { class: "muted" }, "Searching…"));
  main.replaceChildren(h("h1", {}, "Vocabulary"), form, table);

  const page = await api.get(`/api/vocab/${side}`, {
    teacher: currentTeacher(), q: current.q, regex: current.regex, category: current.category,
    matched: current.matched, rule: current.rule, sort: current.sort, order: current.order,
    offset: current.page * PAGE, limit: PAGE,
  });
  const pages = Math.max(1, Math.ceil(page.count / PAGE));
  const open = (id) => go("token", [side, id]);
  const selection = selectionOf(current);
  const key = JSON.stringify([currentTeacher(), selection, page.count]);
  if (side === "student" && bulk.key !== key) bulk = { key, panel: bulkPanel(selection, page.count, () => renderVocab(main, route)) };
  table.replaceChildren(
    h("p", { class: "count" }, `${page.count.toLocaleString()} tokens`),
    side === "student" && page.count ? bulk.panel : null,
    glyphLegend(),
    h("table", { class: "vocab" },
      h("thead", {}, h("tr", {},
        ["id", "piece", "text", "category"].map((c) => h("th", {}, c)),
        side === "student" ? h("th", { class: "num", title: IMPACT_TITLE }, "impact") : null,
        [side === "student" ? "row" : "student rows", side === "student" ? "W row (heaviest first)" : "one-hot"].map((c) => h("th", {}, c)))),
      h("tbody", {}, page.data.map((t) =>
        h("tr", { tabindex: 0, "data-id": t.id, onclick: () => open(t.id), onkeydown: (e) => { if (e.key === "Enter") open(t.id); } },
          h("td", {}, t.id),
          h("td", {}, h("code", {}, t.piece)),
          h("td", {}, h("code", {}, glyphs(t.display))),
          h("td", {}, t.category),
          side === "student" ? impactCell(t) : null,
          h("td", {}, side === "student" ? `${t.degree} · ${t.rule || "empty"}` : t.degree),
          h("td", {}, side === "student"
            ? t.top.map((e) => h("span", { class: "entry" }, h("code", {}, glyphs(e.display)), ` ${weight(e.weight)}`))
            : t.matched ? "yes" : "no"))))),
    h("nav", { class: "pager", "aria-label": "pages" },
      h("button", { disabled: current.page === 0, onclick: () => update({ page: current.page - 1 }) }, "‹ previous"),
      h("span", {}, ` page ${current.page + 1} of ${pages} `),
      h("button", { disabled: current.page + 1 >= pages, onclick: () => update({ page: current.page + 1 }) }, "next ›")),
  );
}

function impactCell(t) {
  const title = `frequency ${t.frequency.toLocaleString()} × risk ${t.risk.toFixed(2)} = impact ${t.impact.toFixed(1)}\n${IMPACT_TITLE}`;
  return h("td", { class: "num impact", title, "data-impact": t.impact },
    t.impact.toLocaleString(undefined, { maximumFractionDigits: 1 }),
    h("small", { class: "muted" }, ` ${t.frequency.toLocaleString()} × ${t.risk.toFixed(2)}`));
}
