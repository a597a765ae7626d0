// Edit history of the current teacher's W, newest first, with the teacher-wide undo and redo (the
// row editor undoes one row only). Times show in the user's locale; states are explained in words.
import { api } from "../api.js";
import { glyphs, h, toast, weight } from "../dom.js";
import { currentTeacher } from "../state.js";

const STATES = {
  done: "applied: this edit is part of the current W",
  undone: "undone: reverted, and can be redone",
  dropped: "dropped: undone and then replaced by a later edit, or overridden by a rebuild's rules; it can no longer be redone",
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
  const page = await api.get(`/api/teachers/${currentTeacher()}/history`, { limit: 500 }); // the latest 500 entries
  const step = async (direction) => {
    try {
      const result = await api.post(`/api/teachers/${currentTeacher()}/${direction}`);
      toast(result.rows > 1 ? `${direction === "undo" ? "Undid" : "Redid"} a bulk edit of ${result.rows.toLocaleString()} rows`
        : `${direction === "undo" ? "Undid" : "Redid"} the last edit of student token #${result.student_id}`);
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
      h("tbody", {}, groups(page.data).map((group) => group.length === 1 ? single(group[0]) : operation(group)))));
}

// Entries written together (a bulk edit) share `op`: one line for the operation, its rows folded.
function groups(items) {
  const out = [];
  for (const item of items) {
    const last = out[out.length - 1];
    if (last && last[0].op === item.op) last.push(item);
    else out.push([item]);
  }
  return out;
}

const tokenLink = (e) => h("a", { href: `#/token/student/${e.student_id}?teacher=${currentTeacher()}` }, h("code", {}, glyphs(e.display)), h("small", { class: "muted" }, ` #${e.student_id}`));

function single(e) {
  return h("tr", { class: e.state },
    h("td", {}, e.id), h("td", {}, when(e.at)), h("td", {}, tokenLink(e)),
    h("td", {}, rowText(e.before)), h("td", {}, rowText(e.after)), h("td", {}, e.note),
    h("td", {}, h("span", { class: "state", title: STATES[e.state] ?? e.state }, e.state)));
}

function operation(group) {
  const states = [...new Set(group.map((e) => e.state))];
  const shown = group.slice(0, 12);
  return h("tr", { class: states.length === 1 ? states[0] : "mixed", "data-operation": group[0].op },
    h("td", {}, group[0].op), h("td", {}, when(group[0].at)),
    h("td", { colspan: 3 }, h("details", {}, h("summary", {}, `${group.length.toLocaleString()} rows in one edit`),
      h("ul", { class: "op-rows" }, shown.map((e) => h("li", {}, tokenLink(e), ` ${rowText(e.before)} → ${rowText(e.after)}`)),
        group.length > shown.length ? h("li", { class: "muted" }, `… and ${(group.length - shown.length).toLocaleString()} more`) : null))),
    h("td", {}, group[0].note),
    h("td", {}, states.map((s) => h("span", { class: "state", title: STATES[s] ?? s }, s))));
}
