// Edit history of the current teacher's W, newest first.
import { api } from "../api.js";
import { glyphs, h, weight } from "../dom.js";
import { currentTeacher } from "../state.js";

const rowText = (row) => row.map((e) => `${glyphs(e.display)} ${weight(e.weight)}`).join(", ") || "(empty)";

export async function renderHistory(main) {
  const page = await api.get(`/api/teachers/${currentTeacher()}/history`, { limit: 200 });
  main.replaceChildren(
    h("h1", {}, `Edits (${page.count})`),
    ...(page.count === 0 ? [h("p", { class: "muted" }, "No edits yet: open a student token and change its row.")] : []),
    h("table", { class: "history" },
      h("thead", {}, h("tr", {}, ["#", "when", "student token", "before", "after", "note", "state"].map((c) => h("th", {}, c)))),
      h("tbody", {}, page.data.map((e) => h("tr", { class: e.state },
        h("td", {}, e.id), h("td", {}, e.at),
        h("td", {}, h("a", { href: `#/token/student/${e.student_id}?teacher=${currentTeacher()}` }, `#${e.student_id}`)),
        h("td", {}, rowText(e.before)), h("td", {}, rowText(e.after)), h("td", {}, e.note), h("td", {}, e.state))))));
}
