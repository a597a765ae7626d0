// Rules panel: the rule config the current W was built with, editable (order, parameters, K, which
// rules run); Preview scores W before and after on the workspace corpus without changing anything;
// Rebuild makes the new W with hand edits carried over, and lists those the new rules overrode.
import { api } from "../api.js";
import { glyphs, h, toast, weight } from "../dom.js";
import { currentTeacher } from "../state.js";

const pct = (x) => (x === null || x === undefined ? "–" : `${(100 * x).toFixed(1)}%`);
const rowText = (row) => row.map((e) => `${glyphs(e.display)} ${weight(e.weight)}`).join("  ") || "(empty)";

// before -> after, coloured by direction (`higher` says which way is better).
function change(before, after, format = pct, higher = true) {
  const delta = after - before;
  const kind = Math.abs(delta) < 1e-9 ? "same" : (delta > 0) === higher ? "better" : "worse";
  return [h("td", {}, format(before)), h("td", {}, format(after)), h("td", { class: `delta ${kind}` }, kind === "same" ? "=" : `${delta > 0 ? "+" : ""}${format(delta)}`)];
}

// One row per measure; categories whose numbers do not move are folded away under a toggle.
function scoreTable(before, after) {
  const head = [], moved = [], same = [];
  const corpusBefore = before.corpus, corpusAfter = after.corpus;
  if (corpusBefore && corpusAfter) {
    head.push(h("tr", { "data-metric": "agreement@1" }, h("th", {}, "agreement@1 (corpus)"), ...change(corpusBefore["agreement@1"], corpusAfter["agreement@1"])));
    head.push(h("tr", { "data-metric": "mass@1" }, h("th", {}, "mass@1 (corpus)"), ...change(corpusBefore.mass, corpusAfter.mass)));
  }
  head.push(h("tr", {}, h("th", {}, "rows with off-piece mass"), ...change(before.off_piece_mass.rows_with_off_piece_mass, after.off_piece_mass.rows_with_off_piece_mass, (x) => x.toLocaleString(), false)));
  for (const [category, c] of Object.entries(before.coverage)) {
    const a = after.coverage[category];
    if (!a || !c.total) continue;
    const agreeBefore = corpusBefore?.categories[category], agreeAfter = corpusAfter?.categories[category];
    const rows = [h("tr", { "data-category": category }, h("th", {}, `${category}: in common set (of ${c.total.toLocaleString()})`), ...change(c.common / c.total, a.common / a.total))];
    if (agreeBefore && agreeAfter) {
      rows.push(h("tr", { class: "sub" }, h("th", {}, "agreement@1 on the corpus"), ...change(agreeBefore["agreement@1"], agreeAfter["agreement@1"])));
      rows.push(h("tr", { class: "sub", "data-category-mass": category }, h("th", {}, "mass@1 on the corpus"), ...change(agreeBefore.mass, agreeAfter.mass)));
    }
    const unchanged = c.common === a.common && (!agreeBefore || !agreeAfter || (agreeBefore.mass === agreeAfter.mass && agreeBefore["agreement@1"] === agreeAfter["agreement@1"]));
    (unchanged ? same : moved).push(...rows);
  }
  const table = (rows) => h("table", { class: "score-compare" },
    h("thead", {}, h("tr", {}, ["", "now", "after rebuild", "change"].map((c) => h("th", {}, c)))), h("tbody", {}, rows));
  return h("div", { "data-score-preview": true },
    table([...head, ...moved]),
    moved.length ? null : h("p", { class: "muted" }, "No category's coverage or corpus figures change."),
    same.length ? h("details", {}, h("summary", {}, "categories that do not change"), table(same)) : null);
}

export async function renderRules(main) {
  const teacher = currentTeacher();
  const view = await api.get(`/api/teachers/${teacher}/rules`);
  const config = structuredClone(view.config);
  const known = [...view.claiming, ...view.adding];
  const active = new Set(config.rules.map((r) => r.name));
  for (const name of known) if (!active.has(name)) config.rules.push({ name, ...numbers(view.defaults[name]), off: true });
  const list = h("ol", { class: "rules-list" });
  const out = h("div", { class: "rules-result" });

  function numbers(params) {
    return Object.fromEntries(Object.entries(params || {}).filter(([, v]) => typeof v === "number" || typeof v === "boolean"));
  }
  function move(i, by) {
    const j = i + by;
    if (j < 0 || j >= config.rules.length) return;
    [config.rules[i], config.rules[j]] = [config.rules[j], config.rules[i]];
    draw();
  }
  function draw() {
    list.replaceChildren(...config.rules.map((rule, i) => h("li", { class: rule.off ? "off" : "", "data-rule": rule.name },
      h("label", { class: "rule-name" }, h("input", { type: "checkbox", checked: !rule.off, "aria-label": `use ${rule.name}`, onchange: (e) => { rule.off = !e.target.checked; draw(); } }),
        ` ${rule.name}`, h("small", { class: "muted" }, view.claiming.includes(rule.name) ? " claims rows" : view.adding.includes(rule.name) ? " adds entries" : " blends")),
      h("span", { class: "rule-params" }, Object.entries(rule).filter(([k, v]) => !["name", "off"].includes(k) && typeof v === "number").map(([k, v]) =>
        h("label", {}, `${k} `, h("input", { type: "number", step: "any", value: v, "data-param": `${rule.name}.${k}`, "aria-label": `${rule.name} ${k}`, disabled: rule.off,
          oninput: (e) => { rule[k] = Number(e.target.value); } })))),
      h("span", { class: "rule-move" },
        h("button", { type: "button", title: "earlier", "aria-label": `move ${rule.name} up`, disabled: i === 0, onclick: () => move(i, -1) }, "↑"),
        h("button", { type: "button", title: "later", "aria-label": `move ${rule.name} down`, disabled: i === config.rules.length - 1, onclick: () => move(i, 1) }, "↓")))));
  }
  const topK = h("input", { type: "number", min: 1, max: 64, value: config.top_k, "aria-label": "K", "data-param": "top_k" });
  const wanted = () => ({ top_k: Number(topK.value), rules: config.rules.filter((r) => !r.off).map(({ off, ...r }) => r) });

  async function send(dryRun, revision) {
    const body = { config: wanted(), dry_run: dryRun };
    if (revision !== undefined) body.revision = revision;
    return api.post(`/api/teachers/${teacher}/rebuild`, body);
  }

  async function preview() {
    out.replaceChildren(h("p", { class: "muted" }, "Building and scoring… (a few seconds)"));
    let plan;
    try {
      plan = await send(true);
    } catch (error) {
      out.replaceChildren(h("p", { class: "error" }, error.message));
      return;
    }
    const dropped = plan.edits_dropped;
    const rebuild = h("button", { type: "button", class: "primary", "data-rebuild": true, onclick: async () => {
      rebuild.disabled = true;
      try {
        const done = await send(false, plan.revision);
        toast(`Rebuilt W (rebuild ${done.generation}): ${done.rows_changed.toLocaleString()} rows changed, ${done.edits_kept} edits kept`);
        await renderRules(main);
        main.querySelector(".rules-result").replaceChildren(h("p", { "data-rebuilt": true },
          `Rebuild ${done.generation} done: ${done.rows_changed.toLocaleString()} rows changed; ${done.edits_kept} hand edits kept, ${done.edits_dropped.length} no longer applied.`));
      } catch (error) {
        out.prepend(h("p", { class: "error" }, error.message));
        rebuild.disabled = false;
      }
    } }, "Rebuild W");
    out.replaceChildren(...[
      h("p", { "data-rebuild-summary": true }, h("strong", {}, `${plan.rows_changed.toLocaleString()} rows change`),
        ` · ${plan.edits_kept} hand edits carried over · ${dropped.length} no longer apply · built in ${plan.build_seconds.toFixed(1)} s`),
      plan.before.corpus ? h("p", { class: "muted" }, `Scored on ${plan.before.corpus.name}.`) : null,
      scoreTable(plan.before, plan.after),
      dropped.length ? h("div", { "data-dropped": true },
        h("h3", {}, `Edits the new rules override (${dropped.length})`),
        h("p", { class: "muted" }, "The rules now give these rows something else than the row you edited; the rebuild takes the rules' row. Re-apply an edit from the token page if you still want it."),
        h("table", { class: "bulk-sample" },
          h("thead", {}, h("tr", {}, ["token", "your edit", "old rules", "new rules"].map((c) => h("th", {}, c)))),
          h("tbody", {}, dropped.map((d) => h("tr", {},
            h("td", {}, h("a", { href: `#/token/student/${d.student_id}?teacher=${teacher}` }, h("code", {}, glyphs(d.display)))),
            h("td", {}, h("code", {}, rowText(d.edit))), h("td", {}, h("code", {}, rowText(d.was))), h("td", {}, h("code", {}, rowText(d.now)))))))) : null,
      h("div", { class: "editor-actions" }, rebuild)].filter(Boolean));
  }

  draw();
  main.replaceChildren(...[
    h("h1", {}, "Rules"),
    h("p", { class: "muted" }, view.imported
      ? "This W was imported from another tool: the rules below are the defaults; a rebuild replaces it with a rule-built W."
      : "The rules this W was built with, in order. Claiming rules fill a row only if no earlier one did; adding rules add lower-weight entries."),
    h("div", { class: "filters" }, h("label", {}, "K (entries per row) ", topK)),
    list,
    h("div", { class: "editor-actions" }, h("button", { type: "button", "data-rebuild-preview": true, onclick: preview }, "Preview score"),
      h("span", { class: "muted" }, `revision ${view.revision}`)),
    out,
    view.rebuilds.length ? h("details", { class: "rebuilds" }, h("summary", {}, `Rebuilds of this W (${view.rebuilds.length})`),
      h("ul", {}, view.rebuilds.map((b) => h("li", {}, `rebuild ${b.generation} at ${new Date(b.at).toLocaleString()}: ${b.kept} edits kept, ${b.dropped} dropped`)))) : null,
  ].filter(Boolean));
}
