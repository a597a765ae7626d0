// Overview, the landing view: every teacher's current W (edits included) at a glance, one card each
// (recommendation, coverage, critical categories, agreement@1 on the corpus, edits since build), and
// a category × teacher table of H-KL common shares: which teacher covers which category. Cards and
// categories link into the diagnosis, vocabulary and diff views.
import { api } from "../api.js";
import { h } from "../dom.js";
import { state } from "../state.js";

const LOSS = { p_kl: "P-KL", h_kl: "H-KL", kd: "KD" };
const percent = (share) => `${(100 * share).toFixed(1)}%`;
const link = (view, teacher, params = {}) => `#/${view}?${new URLSearchParams({ teacher, ...params })}`;

export async function renderOverview(main) {
  main.replaceChildren(h("h1", {}, "Overview"), h("p", { class: "muted" }, "Measuring every teacher's W (a few seconds the first time)…"));
  const report = await api.get("/api/overview");
  const withDiff = new Set(state.meta.compare.map((c) => c.teacher));
  main.replaceChildren(
    h("h1", {}, "Overview"),
    h("p", { class: "muted" },
      `Student ${report.student}; ${report.teachers.length} teacher${report.teachers.length === 1 ? "" : "s"}; `,
      report.corpus ? `agreement@1 on ${report.corpus}` : "no corpus measured",
      `; critical categories: ${report.critical.join(", ")}.`),
    h("div", { class: "cards overview" }, report.teachers.map((t) => card(t, withDiff.has(t.key)))),
    h("h2", {}, "Which teacher covers which category"),
    h("p", { class: "muted" }, "Share of the category's student tokens in each W's H-KL common set (top weight ≥ 0.6); the best teacher per category is marked ★. A category opens the vocabulary filtered by it; a critical one, sorted by impact (corpus frequency × risk)."),
    h("div", { class: "table-scroll" }, categoryTable(report)),
  );
}

function card(t, hasDiff) {
  const critical = Object.entries(t.critical);
  return h("article", { class: `card ${t.recommendation}`, "data-teacher": t.key },
    h("h2", {}, t.name, h("span", { class: "muted" }, ` (${t.size.toLocaleString()} tokens)`)),
    h("p", { class: "recommendation" }, LOSS[t.recommendation]),
    h("p", { class: "reason" }, t.reason),
    h("dl", { class: "glance" },
      h("dt", {}, "coverage"), h("dd", {}, `${percent(t.covered / t.total)} of rows filled (${t.covered.toLocaleString()} of ${t.total.toLocaleString()})`),
      h("dt", {}, "agreement@1"), h("dd", { "data-metric": "agreement" }, t.agreement_at_1 === null ? "not measured" : `${t.agreement_at_1.toFixed(4)} (mass@1 ${t.mass_at_1.toFixed(4)})`),
      h("dt", {}, "edits since build"), h("dd", { "data-metric": "edits" }, t.edits ? `${t.edits.toLocaleString()} on ${t.rows_edited.toLocaleString()} rows` : "none"),
      h("dt", {}, "critical"), h("dd", { class: "sevs" }, critical.length
        ? critical.map(([name, c]) => h("a", { class: `sev ${c.severity}`, href: link("vocab", t.key, { category: name, sort: "impact" }), title: `${c.common.toLocaleString()} of ${c.total.toLocaleString()} common (${c.severity})` }, `${name} ${percent(c.common_share)}`))
        : h("span", { class: "muted" }, "none in this student"))),
    h("p", { class: "card-links" },
      h("a", { href: link("diagnosis", t.key) }, "Diagnosis"), " · ",
      h("a", { href: link("vocab", t.key) }, "Vocabulary"), " · ",
      h("a", { href: link("diff", t.key) }, hasDiff ? "Diff" : "Diff (none given)"), " · ",
      h("a", { href: link("history", t.key) }, "Edits")));
}

function categoryTable(report) {
  const first = report.teachers[0]?.key ?? "";
  return h("table", { class: "coverage-matrix" },
    h("thead", {}, h("tr", {}, h("th", {}, "category"), h("th", {}, "tokens"), ...report.teachers.map((t) => h("th", {}, t.name)))),
    h("tbody", {}, report.categories.map((name) => {
      const cells = report.teachers.map((t) => t.categories[name]);
      const best = Math.max(...cells.map((c) => c?.common_share ?? 0));
      const critical = report.critical.includes(name);
      return h("tr", { "data-category": name, class: critical ? "critical-row" : null },
        h("th", { scope: "row" }, h("a", { href: link("vocab", first, { category: name }) }, name), critical ? h("span", { class: "tag" }, "critical") : null),
        h("td", { class: "num" }, (cells[0]?.total ?? 0).toLocaleString()),
        ...report.teachers.map((t, i) => {
          const c = cells[i];
          if (!c) return h("td", {}, "");
          const star = report.teachers.length > 1 && c.common_share === best && best > 0 ? " ★" : "";
          return h("td", { class: `num ${c.severity}`, title: `${t.name}: ${c.common.toLocaleString()} common, ${c.covered.toLocaleString()} covered of ${c.total.toLocaleString()} (${c.severity})` },
            h("a", { href: link("vocab", t.key, { category: name }) }, percent(c.common_share)), star);
        }));
    })));
}
