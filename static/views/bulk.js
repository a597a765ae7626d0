// Bulk edits on what the vocabulary view's filters select: pick an action, preview how many rows
// change (with a sample, before -> after), then apply it as one journalled operation that one Undo
// reverts. The preview's revision goes with the apply, so a W that changed meanwhile is refused (409).
import { api } from "../api.js";
import { glyphs, h, toast, weight } from "../dom.js";
import { currentTeacher, state } from "../state.js";

const ACTIONS = [
  ["leading", "leading-piece policy (β·γ^i)"],
  ["rule", "re-run a rule with other parameters"],
  ["reset", "reset to the rules' rows (drop edits)"],
  ["clear", "clear rows (special tokens only)"],
  ["copy", "copy rows from another W"],
];

const rowText = (row) => row.map((e) => `${glyphs(e.display)} ${weight(e.weight)}`).join("  ") || "(empty)";

// A number input bound to `params[name]`.
function numberField(params, name, label, step = "0.05") {
  return h("label", {}, `${label} `, h("input", {
    type: "number", step, value: params[name], "data-param": name, "aria-label": label,
    oninput: (e) => { params[name] = Number(e.target.value); },
  }));
}

export function bulkPanel(selection, count, onApplied) {
  const teacher = currentTeacher();
  const compares = (state.meta.compare || []).filter((c) => c.teacher === teacher).map((c) => c.name);
  const choice = { kind: "leading", beta: 1, gamma: 0, rule: "digits", source: compares[0] || "" };
  let defaults = null;
  let ruleParams = {};
  const fields = h("span", { class: "bulk-fields" });
  const result = h("div", { class: "bulk-result", "data-bulk-result": true });

  const action = () => {
    if (choice.kind === "leading") return { kind: "leading", beta: choice.beta, gamma: choice.gamma };
    if (choice.kind === "rule") return { kind: "rule", rule: { name: choice.rule, ...ruleParams } };
    if (choice.kind === "copy") return { kind: "copy", source: choice.source };
    return { kind: choice.kind };
  };

  async function showFields() {
    if (choice.kind === "rule" && !defaults) defaults = (await api.get(`/api/teachers/${teacher}/rules`)).defaults;
    result.replaceChildren();
    if (choice.kind === "leading") {
      fields.replaceChildren(numberField(choice, "beta", "β"), numberField(choice, "gamma", "γ"),
        h("small", { class: "muted" }, " γ = 0: the first piece only"));
    } else if (choice.kind === "rule") {
      const names = Object.keys(defaults).filter((n) => n !== "corpus");
      const pick = () => {
        ruleParams = Object.fromEntries(Object.entries(defaults[choice.rule]).filter(([, v]) => typeof v === "number"));
        params.replaceChildren(...Object.keys(ruleParams).map((k) => numberField(ruleParams, k, k)));
      };
      const params = h("span", {});
      fields.replaceChildren(h("select", { "aria-label": "rule", "data-bulk-rule": true, onchange: (e) => { choice.rule = e.target.value; pick(); } },
        names.map((n) => h("option", { value: n, selected: n === choice.rule }, n))), params);
      pick();
    } else if (choice.kind === "copy") {
      fields.replaceChildren(compares.length
        ? h("select", { "aria-label": "from W", onchange: (e) => { choice.source = e.target.value; } }, compares.map((n) => h("option", { value: n }, n)))
        : h("span", { class: "muted" }, "no W to copy from: start the server with --compare NAME=W.safetensors"));
    } else {
      fields.replaceChildren();
    }
  }

  async function send(dryRun, revision) {
    const body = { selection, action: action(), dry_run: dryRun };
    if (revision !== undefined) body.revision = revision;
    return api.post(`/api/teachers/${teacher}/bulk`, body);
  }

  async function preview() {
    result.replaceChildren(h("p", { class: "muted" }, "Previewing…"));
    let plan;
    try {
      plan = await send(true);
    } catch (error) {
      result.replaceChildren(h("p", { class: "error" }, error.message));
      return;
    }
    const apply = h("button", { type: "button", class: "primary", "data-bulk-apply": true, disabled: plan.changed === 0, onclick: async () => {
      apply.disabled = true;
      try {
        const done = await send(false, plan.revision);
        result.replaceChildren(h("p", { "data-bulk-applied": true }, `Applied: ${done.changed.toLocaleString()} rows changed as one edit. `,
          h("button", { type: "button", "data-bulk-undo": true, onclick: undo }, "Undo it")));
        onApplied?.();
      } catch (error) {
        result.replaceChildren(h("p", { class: "error" }, error.status === 409 ? `${error.message}.` : error.message));
      }
    } }, `Apply to ${plan.changed.toLocaleString()} rows`);
    result.replaceChildren(...[
      h("p", { "data-bulk-summary": true }, h("strong", {}, `${plan.changed.toLocaleString()} of ${plan.selected.toLocaleString()} selected rows change`),
        ` (${plan.action})`, plan.changed > plan.sample.length ? h("span", { class: "muted" }, ` · the first ${plan.sample.length} below`) : null),
      plan.sample.length ? h("table", { class: "bulk-sample" },
        h("thead", {}, h("tr", {}, ["token", "category", "before", "after"].map((c) => h("th", {}, c)))),
        h("tbody", {}, plan.sample.map((r) => h("tr", {},
          h("td", {}, h("code", {}, glyphs(r.display)), h("small", { class: "muted" }, ` #${r.student_id}`)),
          h("td", {}, r.category), h("td", {}, h("code", {}, rowText(r.before))), h("td", {}, h("code", {}, rowText(r.after))))))) : null,
      h("div", { class: "editor-actions" }, apply, h("button", { type: "button", onclick: () => result.replaceChildren() }, "Cancel")),
    ].filter(Boolean));
  }

  async function undo() {
    try {
      const back = await api.post(`/api/teachers/${teacher}/undo`);
      toast(`Undid the bulk edit (${back.rows.toLocaleString()} rows)`);
      result.replaceChildren(h("p", { "data-bulk-undone": true }, `Undone: ${back.rows.toLocaleString()} rows are back.`));
      onApplied?.();
    } catch (error) {
      toast(error.message, "error");
    }
  }

  showFields();
  return h("details", { class: "bulk", "data-bulk": true },
    h("summary", {}, `Act on these ${count.toLocaleString()} tokens…`),
    h("div", { class: "filters" },
      h("label", {}, "action ", h("select", { "aria-label": "bulk action", "data-bulk-action": true, onchange: (e) => { choice.kind = e.target.value; showFields(); } },
        ACTIONS.map(([value, text]) => h("option", { value }, text)))),
      fields,
      h("button", { type: "button", "data-bulk-preview": true, onclick: preview }, "Preview")),
    result);
}
