// Token inspector: bytes, category, the other side's spelling, and the W row editor (student
// tokens) or the W column (teacher tokens). Saves carry the row version: a stale save gets 409.
import { api, ApiError } from "../api.js";
import { glyphs, h, toast, weight } from "../dom.js";
import { currentTeacher, go, state } from "../state.js";

export async function renderToken(main, route) {
  const [side, idText] = route.args;
  const id = Number(idText);
  const token = await api.get(`/api/tokens/${side}/${id}`, { teacher: currentTeacher() });
  const otherSide = side === "student" ? "teacher" : "student";
  main.replaceChildren(
    h("p", {}, h("a", { href: `#/vocab?side=${side}&teacher=${currentTeacher()}` }, `‹ ${side} vocabulary`)),
    h("h1", {}, `${side} token #${token.id} `, h("code", { class: "big" }, glyphs(token.display))),
    h("dl", { class: "facts" },
      h("dt", {}, "raw piece"), h("dd", {}, h("code", {}, token.piece)),
      h("dt", {}, "canonical bytes"), h("dd", {}, h("code", {}, token.hex.match(/../g)?.join(" ") || "(none)")),
      h("dt", {}, "category"), h("dd", {}, token.category),
      token.roles.length ? [h("dt", {}, "roles"), h("dd", {}, token.roles.join(", "))] : null,
      token.role_evidence.length ? [h("dt", {}, "evidence"), h("dd", {}, token.role_evidence.join(" · "))] : null,
      h("dt", {}, `${otherSide} spelling`),
      h("dd", {}, token.other_side.length
        ? token.other_side.map((p) => h("a", { class: "chip", href: `#/token/${otherSide}/${p.id}?teacher=${currentTeacher()}` }, glyphs(p.display), h("small", {}, ` #${p.id}`)))
        : "(special token: mapped by role)")),
    side === "student" ? rowEditor(token) : column(token),
  );
}

function column(token) {
  return h("section", {},
    h("h2", {}, `Student tokens mapping onto it (${token.column_count.toLocaleString()}${token.column_count > token.column.length ? `, heaviest ${token.column.length} shown` : ""})`),
    h("table", { class: "entries" },
      h("thead", {}, h("tr", {}, h("th", {}, "student token"), h("th", {}, "weight"), h("th", {}, "rule"))),
      h("tbody", {}, token.column.map((c) => h("tr", {},
        h("td", {}, h("a", { href: `#/token/student/${c.student_id}?teacher=${currentTeacher()}` }, h("code", {}, glyphs(c.display)), ` #${c.student_id}`)),
        h("td", {}, weight(c.weight)), h("td", {}, c.rule))))));
}

function rowEditor(token) {
  let version = token.version;
  const rows = h("tbody", {});
  const note = h("input", { type: "text", placeholder: "note (optional)", "aria-label": "note", maxlength: 2000 });
  const addId = h("input", { type: "number", min: 0, placeholder: "teacher id", "aria-label": "teacher id to add" });
  const addRow = (e) => {
    const input = h("input", { type: "number", step: "any", min: 0, value: e.weight, "aria-label": `weight for teacher token ${e.teacher_id}`, "data-teacher-id": e.teacher_id });
    const tr = h("tr", { "data-teacher-id": e.teacher_id },
      h("td", {}, h("a", { href: `#/token/teacher/${e.teacher_id}?teacher=${currentTeacher()}` }, h("code", {}, glyphs(e.display ?? "?")), ` #${e.teacher_id}`)),
      h("td", {}, input),
      h("td", {}, e.rule ?? "edit"),
      h("td", {}, e.score !== undefined ? weight(e.score) : ""),
      h("td", {}, h("button", { type: "button", "aria-label": `remove teacher token ${e.teacher_id}`, onclick: () => tr.remove() }, "remove")));
    rows.append(tr);
  };
  const fill = (row) => { rows.replaceChildren(); row.forEach(addRow); };
  fill(token.row);
  const status = h("p", { class: "muted" }, `version ${version}`);

  const save = async (event) => {
    event.preventDefault();
    const entries = [...rows.querySelectorAll("input[data-teacher-id]")].map((i) => ({ teacher_id: Number(i.dataset.teacherId), weight: Number(i.value) }));
    try {
      const result = await api.put(`/api/teachers/${currentTeacher()}/rows/${token.id}`, { entries, note: note.value, version });
      version = result.version;
      fill(result.row);
      status.textContent = `saved: version ${version} (weights normalised to sum to 1)`;
      toast("Row saved");
    } catch (error) {
      if (error instanceof ApiError && error.status === 409) {
        version = error.body.row.version;
        fill(error.body.row.row);
        status.textContent = `${error.message}: showing the current row (version ${version}); edit and save again`;
        toast("Row changed elsewhere: reloaded", "error");
      } else {
        status.textContent = error.message;
        toast(error.message, "error");
      }
    }
  };
  const step = async (direction) => {
    try {
      const result = await api.post(`/api/teachers/${currentTeacher()}/${direction}`);
      toast(`${direction} applied to student token #${result.student_id}`);
      if (result.student_id === token.id) { version = result.version; fill(result.row); status.textContent = `version ${version}`; }
    } catch (error) {
      toast(error.message, "error");
    }
  };
  return h("section", {},
    h("h2", {}, "W row"),
    h("form", { class: "editor", onsubmit: save },
      h("table", { class: "entries" },
        h("thead", {}, h("tr", {}, ["teacher token", "weight", "rule", "raw score", ""].map((c) => h("th", {}, c)))),
        rows),
      h("div", { class: "editor-actions" },
        addId,
        h("button", { type: "button", onclick: () => {
          const tid = Number(addId.value);
          if (addId.value === "" || rows.querySelector(`tr[data-teacher-id="${tid}"]`)) return;
          addRow({ teacher_id: tid, weight: 0.1, display: `#${tid}` });
          addId.value = "";
        } }, "add entry"),
        note,
        h("button", { type: "submit", class: "primary" }, "Save row"),
        h("button", { type: "button", onclick: () => step("undo") }, "Undo"),
        h("button", { type: "button", onclick: () => step("redo") }, "Redo")),
      status));
}
