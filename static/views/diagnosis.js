// Diagnosis dashboard: recommendation per teacher, plotly charts, the category table.
import { api } from "../api.js";
import { h } from "../dom.js";

export async function renderDiagnosis(main) {
  main.replaceChildren(h("h1", {}, "Diagnosis"), h("p", { class: "muted" }, "Measuring coverage and corpus mass (a few seconds the first time)…"));
  const { report, figures } = await api.get("/api/diagnosis");
  const charts = figures.map(() => h("div", { class: "chart" }));
  main.replaceChildren(
    h("h1", {}, "Diagnosis"),
    h("div", { class: "cards" }, report.teachers.map((t) =>
      h("article", { class: `card ${t.recommendation}` },
        h("h2", {}, t.teacher.name),
        h("p", { class: "recommendation" }, t.recommendation.replace("_", "-").toUpperCase()),
        h("p", {}, t.reason)))),
    ...charts,
    h("h2", {}, "Coverage of the student's categories"),
    h("table", { class: "diagnosis" },
      h("thead", {}, h("tr", {}, h("th", {}, "category"), ...report.teachers.map((t) => h("th", {}, `${t.teacher.name}: strict / common / covered of total`)))),
      h("tbody", {}, Object.keys(report.teachers[0]?.categories || {}).map((category) =>
        h("tr", {}, h("td", {}, category), ...report.teachers.map((t) => {
          const c = t.categories[category];
          return c ? h("td", { class: c.severity }, `${c.strict.toLocaleString()} / ${c.common.toLocaleString()} / ${c.covered.toLocaleString()} of ${c.total.toLocaleString()} (${c.severity})`) : h("td", {}, "");
        }))))),
  );
  if (window.Plotly) figures.forEach((figure, i) => window.Plotly.newPlot(charts[i], figure.data, figure.layout, { responsive: true, displaylogo: false }));
}
