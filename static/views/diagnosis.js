// Diagnosis dashboard: recommendation per teacher, plotly charts, the category table. Each critical
// category links to the student vocabulary filtered by it, highest impact (corpus frequency × risk)
// first: the rows worth fixing first.
import { api } from "../api.js";
import { h } from "../dom.js";
import { currentTeacher, state } from "../state.js";

const byImpact = (teacher, category) => `#/vocab?${new URLSearchParams({ teacher, category, sort: "impact" })}`;

export async function renderDiagnosis(main) {
  main.replaceChildren(h("h1", {}, "Diagnosis"), h("p", { class: "muted" }, "Measuring coverage and corpus mass (a few seconds the first time)…"));
  const { report, figures } = await api.get("/api/diagnosis");
  const charts = figures.map(() => h("div", { class: "chart" }));
  const keys = state.meta.teachers.map((t) => t.key); // the report lists the workspace's teachers in order
  main.replaceChildren(
    h("h1", {}, "Diagnosis"),
    h("div", { class: "cards" }, report.teachers.map((t) =>
      h("article", { class: `card ${t.recommendation}` },
        h("h2", {}, t.teacher.name),
        h("p", { class: "recommendation" }, t.recommendation.replace("_", "-").toUpperCase()),
        h("p", {}, t.reason)))),
    ...charts,
    h("h2", {}, "Coverage of the student's categories"),
    h("p", { class: "muted" }, "A critical category opens the student vocabulary filtered by it, highest impact first (corpus frequency × risk): the rows that put the most training signal at risk come first."),
    h("table", { class: "diagnosis" },
      h("thead", {}, h("tr", {}, h("th", {}, "category"), ...report.teachers.map((t) => h("th", {}, `${t.teacher.name}: strict / common / covered of total`)))),
      h("tbody", {}, Object.keys(report.teachers[0]?.categories || {}).map((category) => {
        const critical = report.critical.includes(category);
        return h("tr", { "data-category": category, class: critical ? "critical-row" : null },
          h("td", {}, critical
            ? [h("a", { href: byImpact(currentTeacher(), category), "data-impact-link": category, title: `student ${category} tokens, highest impact first` }, category), h("span", { class: "tag" }, "critical")]
            : category),
          ...report.teachers.map((t, i) => {
            const c = t.categories[category];
            if (!c) return h("td", {}, "");
            const text = `${c.strict.toLocaleString()} / ${c.common.toLocaleString()} / ${c.covered.toLocaleString()} of ${c.total.toLocaleString()} (${c.severity})`;
            return h("td", { class: c.severity }, critical && keys[i] ? h("a", { href: byImpact(keys[i], category), title: `${t.teacher.name}: student ${category} tokens, highest impact first` }, text) : text);
          }));
      }))),
  );
  if (window.Plotly) figures.forEach((figure, i) => window.Plotly.newPlot(charts[i], figure.data, figure.layout, { responsive: true, displaylogo: false }));
}
