// Edit history of the current teacher's W, newest first, with the teacher-wide undo and redo (the
// row editor undoes one row only). Times show in the user's locale; states are explained in words.
import { api } from "../api.js";
import { glyphs, h, toast, weight } from "../dom.js";
import { currentTeacher } from "../state.js";

const STATES = {
  done: "applied: this edit is part of the current W",
  undone: "undone: reverted, and can be redone",
  dropped: "dropped: it was undone and a later edit replaced it, so it can no longer be redone",
};

const rowText = (row) => row.map((e) => `${glyphs(e.display)} ${weight(e.weight)}`).join(", ") || "(empty)";

// "3 min ago" for recent edits, else the local date and time; the exact time in the tooltip.
function when(iso) {
  const at = new Date(iso);
  const seconds = (Date.now() - at.getTime()) / 1000;
  const exact = at.toLocaleString();
  if (!Number.isFinite(seconds)) return h("span", {}, iso);
  const relative = new Intl.RelativeTimeFormat(undefined, { numeric: "auto" });
  const text = seconds < 60 ? relative.format(-Math.round(seconds), "second")
    : seconds < 3600 ? relative.format(-Math.round(seconds / 60), "minute")
      : seconds < 86400 ? relative.format(-Math.round(seconds / 3600), "hour") : exact;
  return h("time", { datetime: iso, title: exact }, text);
}

export async function renderHistory(main) {
  const page = await api.get(`/api/teachers/${currentTeacher()}/history`, { limit: 200 });
  const step = async (direction) => {
    try {
      const result = await api.post(`/api/teachers/${currentTeacher()}/${direction}`);
      toast(`${direction === "undo" ? "Undid" : "Redid"} the last edit of student token #${result.student_id}`);
      await renderHistory(main);
    } catch (error) {
      toast(error.message, "error");
    }
  };
  main.replaceChildren(
    h("h1", {}, `Edits (${page.count})`),
    h("div", { class: "editor-actions" },
      h("button", { type: "button", title: "undo the latest edit of any row", onclick: () => step("undo") }, "Undo last edit"),
      h("button", { type: "button", title: "redo the earliest undone edit", onclick: () => step("redo") }, "Redo"),
      h("span", { class: "muted legend" }, Object.entries(STATES).map(([name, text]) => `${name}: ${text.split(": ")[1]}`).join(" · "))),
    ...(page.count === 0 ? [h("p", { class: "muted" }, "No edits yet: open a student token and change its row.")] : []),
    h("table", { class: "history" },
      h("thead", {}, h("tr", {}, ["#", "when", "student token", "before", "after", "note", "state"].map((c) => h("th", {}, c)))),
      h("tbody", {}, page.data.map((e) => h("tr", { class: e.state },
        h("td", {}, e.id), h("td", {}, when(e.at)),
        h("td", {}, h("a", { href: `#/token/student/${e.student_id}?teacher=${currentTeacher()}` }, h("code", {}, glyphs(e.display)), h("small", { class: "muted" }, ` #${e.student_id}`))),
        h("td", {}, rowText(e.before)), h("td", {}, rowText(e.after)), h("td", {}, e.note),
        h("td", {}, h("span", { class: "state", title: STATES[e.state] ?? e.state }, e.state)))))));
}
