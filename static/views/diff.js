// W diff: the workspace's current W (base + edits) against a W the server was started with
// (`serve --compare NAME=PATH`): summary, mass moved per student category (plotly), and the rows
// that moved most, side by side, each student token linking to its token view.
import { api } from "../api.js";
import { glyphs, h, weight } from "../dom.js";
import { currentTeacher, go, state } from "../state.js";

export async function renderDiff(main, route) {
  const teacher = currentTeacher();
  const names = state.meta.compare.filter((c) => c.teacher === teacher).map((c) => c.name);
  if (!names.length) {
    main.replaceChildren(h("h1", {}, "W diff"), h("p", { class: "muted" },
      `No W to compare with teacher ${teacher}. Start the server with --compare NAME=PATH (a W file of this student and teacher: a learned W, an imported one, an earlier export).`));
    return;
  }
  const other = names.includes(route.params.get("other")) ? route.params.get("other") : names[0];
  const picker = h("select", { "aria-label": "compare with", onchange: (event) => go("diff", [], { other: event.target.value }) },
    names.map((name) => h("option", { value: name, selected: name === other }, name)));
  main.replaceChildren(h("h1", {}, "W diff"), h("p", { class: "muted" }, "Comparing…"));
  const report = await api.get(`/api/teachers/${encodeURIComponent(teacher)}/diff`, { other });
  const categories = Object.entries(report.categories).filter(([, c]) => c.rows_changed > 0);
  const chart = h("div", { class: "chart diff-chart" });
  main.replaceChildren(
    h("h1", {}, "W diff"),
    h("div", { class: "filters" }, h("label", {}, "compare the workspace's W with ", picker), h("span", { class: "muted" }, `A = ${report.a}, B = ${report.b}`)),
    h("div", { class: "cards" },
      card("rows changed", `${report.rows_changed.toLocaleString()} of ${report.rows.toLocaleString()}`),
      card("mass moved", `${report.mass_moved.toFixed(3)} rows`, "Σ over rows of ½·Σ|A − B|"),
      card("mean per changed row", report.mean_mass_moved.toFixed(3), "0: same row, 1: disjoint rows")),
    categories.length ? chart : h("p", { class: "muted" }, "The two Ws are the same (no entry differs by more than 1e-6)."),
    categories.length ? h("table", { class: "diff-categories" },
      h("thead", {}, h("tr", {}, h("th", {}, "category"), h("th", {}, "rows"), h("th", {}, "changed"), h("th", {}, "mass moved"))),
      h("tbody", {}, categories.map(([name, c]) => h("tr", {},
        h("td", {}, name), h("td", {}, c.rows.toLocaleString()), h("td", {}, c.rows_changed.toLocaleString()), h("td", {}, c.mass_moved.toFixed(3)))))) : null,
    report.top.length ? h("h2", {}, `Largest changes (${report.top.length.toLocaleString()} of ${report.rows_changed.toLocaleString()} changed rows)`) : null,
    report.top.length ? h("table", { class: "diff-rows" },
      h("thead", {}, h("tr", {}, h("th", {}, "student token"), h("th", {}, "moved"), h("th", {}, "A: workspace"), h("th", {}, `B: ${other}`))),
      h("tbody", {}, report.top.map((row) => h("tr", {},
        h("td", {}, h("a", { href: `#/token/student/${row.student.id}?teacher=${encodeURIComponent(teacher)}` }, h("code", {}, glyphs(row.student.display)), ` #${row.student.id}`),
          h("div", { class: "muted" }, row.student.category)),
        h("td", {}, row.mass_moved.toFixed(3)),
        h("td", {}, entries(row.a, row.b)),
        h("td", {}, entries(row.b, row.a)))))) : null,
  );
  if (window.Plotly && categories.length) {
    const data = [{
      type: "bar",
      x: categories.map(([name]) => name),
      y: categories.map(([, c]) => c.mass_moved),
      customdata: categories.map(([, c]) => [c.rows_changed, c.rows]),
      hovertemplate: "%{x}: %{y:.3f} rows of mass moved<br>%{customdata[0]:,} of %{customdata[1]:,} rows changed<extra></extra>",
      marker: { color: "#2f5fd0" },
    }];
    const layout = { title: { text: `Mass moved per student category (${report.student} → ${report.teacher})` }, template: "plotly_white",
      yaxis: { title: { text: "rows of mass moved (½·Σ|A − B|)" } }, margin: { t: 50, b: 90 }, bargap: 0.45 };
    window.Plotly.newPlot(chart, data, layout, { responsive: true, displaylogo: false });
  }
}

function card(title, value, note) {
  return h("article", { class: "card" }, h("h2", {}, title), h("p", { class: "recommendation" }, value), note ? h("p", { class: "muted" }, note) : null);
}

// One side's entries; those whose weight differs from the other side's are marked.
function entries(side, other) {
  if (!side.length) return h("span", { class: "muted" }, "(empty row)");
  const before = new Map(other.map((e) => [e.teacher_id, e.weight]));
  return side.map((e) => h("span", { class: `entry${Math.abs((before.get(e.teacher_id) ?? 0) - e.weight) > 1e-6 ? " moved" : ""}` },
    h("code", {}, glyphs(e.display)), ` ${weight(e.weight)} `, h("small", { class: "muted" }, e.rule)));
}
