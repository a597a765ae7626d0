// The W row editor of a student token. Weights show rounded (full value on focus); entries the user
// did not touch are sent with their exact stored weight, so the server keeps their rule and score.
// Entries are added by searching the teacher vocabulary (a duplicate is merged into its entry).
// Enter saves, Esc reverts, Undo/Redo act on this row only, and leaving with unsaved changes asks.
// Saves and row steps carry the row version: a stale one gets 409 and the current row.
import { api, ApiError } from "../api.js";
import { glyphs, h, toast, weight } from "../dom.js";
import { currentTeacher, state } from "../state.js";

const NEW_WEIGHT = 0.1;

export function rowEditor(token) {
  let version = token.version;
  let saved = token.row;
  const rows = h("tbody", {});
  const note = h("input", { type: "text", placeholder: "note (optional)", "aria-label": "note", maxlength: 2000 });
  const status = h("p", { class: "muted", "data-status": "" }, `version ${version}`);
  const notice = h("p", { class: "notice", role: "status", hidden: true });
  const inputs = () => [...rows.querySelectorAll("input[data-teacher-id]")];
  const dirty = () => {
    const now = inputs();
    return now.length !== saved.length || now.some((i) => i.dataset.changed === "1" || !i.dataset.exact);
  };
  const show = (message) => { notice.textContent = message; notice.hidden = !message; };

  const addRow = (e, isNew = false) => {
    const input = h("input", {
      type: "text", inputmode: "decimal", value: weight(e.weight), title: String(e.weight),
      "aria-label": `weight for teacher token ${e.teacher_id}`, "data-teacher-id": e.teacher_id,
    });
    if (!isNew) input.dataset.exact = String(e.weight);
    input.addEventListener("focus", () => { if (input.dataset.changed !== "1") input.value = input.dataset.exact ?? input.value; input.select(); });
    input.addEventListener("blur", () => { if (input.dataset.changed !== "1" && input.dataset.exact) input.value = weight(Number(input.dataset.exact)); });
    const rule = h("td", { class: "rule" }, isNew ? "new" : e.rule);
    input.addEventListener("input", () => {
      input.dataset.changed = "1";
      tr.classList.add("changed");
      if (!isNew) rule.textContent = `${e.rule} → edit`;  // what the save will credit it to
    });
    const tr = h("tr", { "data-teacher-id": e.teacher_id, class: isNew ? "changed" : "" },
      h("td", {}, h("a", { href: `#/token/teacher/${e.teacher_id}?teacher=${currentTeacher()}` }, h("code", {}, glyphs(e.display)), h("small", { class: "muted" }, ` #${e.teacher_id}`))),
      h("td", {}, input),
      rule,
      h("td", {}, isNew ? "" : weight(e.score)),
      h("td", {}, h("button", { type: "button", "aria-label": `remove teacher token ${e.teacher_id}`, onclick: () => tr.remove() }, "remove")));
    rows.append(tr);
    return input;
  };
  const fill = (row, newVersion) => {
    saved = row;
    version = newVersion;
    rows.replaceChildren();
    row.forEach((e) => addRow(e));
    show("");
  };
  fill(token.row, version);

  const entries = () => inputs().map((i) => ({
    teacher_id: Number(i.dataset.teacherId),
    weight: i.dataset.changed === "1" || !i.dataset.exact ? Number(i.value.trim().replace(",", ".") || NaN) : Number(i.dataset.exact),
  }));
  const reload = (error) => {
    fill(error.body.row.row, error.body.row.version);
    status.textContent = `${error.message}: showing the current row (version ${version}); edit and save again`;
    toast("Row changed elsewhere: reloaded", "error");
  };
  const save = async (event) => {
    event.preventDefault();
    const body = entries();
    const bad = body.find((e) => !Number.isFinite(e.weight) || e.weight < 0);
    if (bad) { status.textContent = `weight for teacher token #${bad.teacher_id} must be a number ≥ 0`; return; }
    try {
      const result = await api.put(`/api/teachers/${currentTeacher()}/rows/${token.id}`, { entries: body, note: note.value, version });
      fill(result.row, result.version);
      status.textContent = result.changed ? `saved: version ${version} (weights normalised to sum to 1)` : `nothing changed: not saved (version ${version})`;
      toast(result.changed ? "Row saved" : "Nothing to save");
      if (result.changed) note.value = "";
    } catch (error) {
      if (error instanceof ApiError && error.status === 409 && error.body.row) reload(error);
      else { status.textContent = error.message; toast(error.message, "error"); }
    }
  };
  const step = async (direction) => {
    if (dirty() && !confirm(`Discard your unsaved changes to this row and ${direction} its last edit?`)) return;
    try {
      const result = await api.post(`/api/teachers/${currentTeacher()}/rows/${token.id}/${direction}`, { version });
      fill(result.row, result.version);
      status.textContent = `${direction} of this row's last edit: version ${version}`;
      toast(`${direction === "undo" ? "Undid" : "Redid"} this row's last edit`);
    } catch (error) {
      if (error instanceof ApiError && error.status === 409 && error.body.row) reload(error);
      else { status.textContent = error.message; toast(error.message, "error"); }
    }
  };

  const add = (found) => {
    const existing = rows.querySelector(`input[data-teacher-id="${found.id}"]`);
    if (existing) {
      const current = existing.dataset.changed === "1" ? Number(existing.value) : Number(existing.dataset.exact ?? existing.value);
      existing.value = String(+(current + NEW_WEIGHT).toFixed(6));
      existing.dispatchEvent(new Event("input"));
      show(`“${glyphs(found.display)}” #${found.id} is already in the row: merged, its weight raised by ${NEW_WEIGHT}`);
      existing.focus();
    } else {
      addRow({ teacher_id: found.id, weight: NEW_WEIGHT, display: found.display }, true).focus();
      show("");
    }
    search.value = "";
    results.replaceChildren();
  };
  const search = h("input", { type: "search", placeholder: "add: teacher piece, text or #id", "aria-label": "search the teacher vocabulary to add an entry", autocomplete: "off" });
  const results = h("ul", { class: "typeahead", role: "listbox" });
  let pending = 0;
  const lookup = async () => {
    const q = search.value;
    const ticket = ++pending;
    if (!q) { results.replaceChildren(); return; }
    const byId = /^#\d+$/.test(q.trim()) ? Number(q.trim().slice(1)) : null;
    let data = [];
    try {
      if (byId !== null) data = [await api.get(`/api/tokens/teacher/${byId}`, { teacher: currentTeacher(), column_limit: 1 })];
      else data = (await api.get("/api/vocab/teacher", { teacher: currentTeacher(), q, limit: 8, sort: "length" })).data;
    } catch (error) {
      data = [];
      if (byId === null) toast(error.message, "error");
    }
    if (ticket !== pending) return;  // a newer keystroke has its own answer
    results.replaceChildren(...(data.length ? data.map((t) => h("li", {},
      h("button", { type: "button", role: "option", "data-add-id": t.id, onclick: () => add(t) },
        h("code", {}, glyphs(t.display)), h("small", { class: "muted" }, ` #${t.id} · ${t.category}`),
        t.hex ? h("small", { class: "hex", title: "canonical bytes" }, ` ${t.hex.match(/../g).join(" ")}`) : null))) : [h("li", { class: "muted" }, "no teacher token matches")]));
  };
  search.addEventListener("input", () => { clearTimeout(lookup.timer); lookup.timer = setTimeout(lookup, 150); });
  search.addEventListener("keydown", (event) => {
    if (event.key === "Enter") { event.preventDefault(); results.querySelector("button")?.click(); }
    if (event.key === "ArrowDown") { event.preventDefault(); results.querySelector("button")?.focus(); }
  });
  // Arrow keys walk the suggestions; Enter (a button's own) adds the focused one; Esc goes back to typing.
  results.addEventListener("keydown", (event) => {
    const options = [...results.querySelectorAll("button")];
    const at = options.indexOf(document.activeElement);
    if (event.key === "ArrowDown" || event.key === "ArrowUp") {
      event.preventDefault();
      const next = at + (event.key === "ArrowDown" ? 1 : -1);
      (next < 0 ? search : options[Math.min(next, options.length - 1)]).focus();
    } else if (event.key === "Escape") {
      event.preventDefault();
      event.stopPropagation();
      search.focus();
    }
  });

  const form = h("form", { class: "editor", onsubmit: save },
    h("table", { class: "entries" },
      h("thead", {}, h("tr", {}, ["teacher token", "weight", "rule", "raw score", ""].map((c) => h("th", {}, c)))),
      rows),
    h("div", { class: "typeahead-box" }, search, results),
    notice,
    h("div", { class: "editor-actions" },
      note,
      h("button", { type: "submit", class: "primary" }, "Save row"),
      h("button", { type: "button", onclick: () => { fill(saved, version); status.textContent = `reverted: version ${version}`; } }, "Revert"),
      h("button", { type: "button", title: "undo this row's last edit only", onclick: () => step("undo") }, "Undo row"),
      h("button", { type: "button", title: "redo this row's last undone edit", onclick: () => step("redo") }, "Redo row"),
      h("a", { href: `#/history?teacher=${currentTeacher()}` }, "all edits")),
    status,
    h("p", { class: "muted hint" }, "Enter saves · Esc reverts · weights are normalised to sum to 1 on save"));
  form.addEventListener("keydown", (event) => {
    if (event.key === "Escape" && event.target !== search) { event.preventDefault(); fill(saved, version); status.textContent = `reverted: version ${version}`; }
    if (event.key === "Escape" && event.target === search) { search.value = ""; results.replaceChildren(); }
  });
  state.leaveGuard = () => form.isConnected && dirty();
  return h("section", {}, h("h2", {}, "W row"), form);
}
