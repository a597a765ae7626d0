// Token inspector: bytes, category, the other side's spelling, and the W row editor (student
// tokens, see row_editor.js) or the W column (teacher tokens), paged on the server.
import { api } from "../api.js";
import { glyphLegend, glyphs, h, weight } from "../dom.js";
import { currentTeacher } from "../state.js";
import { rowEditor } from "./row_editor.js";

const COLUMN_PAGE = 50;

export async function renderToken(main, route) {
  const [side, idText] = route.args;
  const id = Number(idText);
  const token = await api.get(`/api/tokens/${side}/${id}`, { teacher: currentTeacher(), column_limit: COLUMN_PAGE });
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
    glyphLegend(),
    side === "student" ? rowEditor(token) : column(token),
  );
}

function column(token) {
  const total = token.column_count;
  const body = h("tbody", {});
  const shown = h("span", { class: "count" });
  const previous = h("button", { type: "button", "aria-label": "previous page of student tokens" }, "‹ previous");
  const next = h("button", { type: "button", "aria-label": "next page of student tokens" }, "next ›");
  let offset = 0;
  const fill = (entries) => {
    body.replaceChildren(...entries.map((c) => h("tr", {},
      h("td", {}, h("a", { href: `#/token/student/${c.student_id}?teacher=${currentTeacher()}` }, h("code", {}, glyphs(c.display)), h("small", { class: "muted" }, ` #${c.student_id}`))),
      h("td", {}, weight(c.weight)), h("td", {}, c.rule))));
    shown.textContent = total ? `${(offset + 1).toLocaleString()}–${(offset + entries.length).toLocaleString()} of ${total.toLocaleString()}, heaviest first` : "none";
    previous.disabled = offset === 0;
    next.disabled = offset + COLUMN_PAGE >= total;
  };
  const turn = async (delta) => {
    offset = Math.max(0, offset + delta);
    const page = await api.get(`/api/tokens/teacher/${token.id}`, { teacher: currentTeacher(), column_offset: offset, column_limit: COLUMN_PAGE });
    fill(page.column);
  };
  previous.addEventListener("click", () => turn(-COLUMN_PAGE));
  next.addEventListener("click", () => turn(COLUMN_PAGE));
  fill(token.column);
  return h("section", { class: "column" },
    h("h2", {}, `Student tokens mapping onto it (${total.toLocaleString()})`),
    total > COLUMN_PAGE ? h("div", { class: "pager" }, previous, shown, next) : h("p", { class: "count" }, shown),
    h("table", { class: "entries" },
      h("thead", {}, h("tr", {}, h("th", {}, "student token"), h("th", {}, "weight"), h("th", {}, "rule"))),
      body));
}
