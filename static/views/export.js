// Export: download the current W (base + edits) in every format we write.
import { api } from "../api.js";
import { h } from "../dom.js";
import { currentTeacher, state } from "../state.js";

const FORMATS = [
  ["safetensors", "W.safetensors + sidecar (zip)", "Our format: CSR arrays, provenance, both tokenizers' fingerprints, rule config and the edit history."],
  ["nemo", "NeMo-RL / TRL .pt", "indices and likelihoods [V_S, K], -1 for empty slots: what the reference X-Token losses read."],
  ["csv", "CSV table", "One row per W entry: student token, teacher token, weight, rule, raw score."],
  ["parquet", "Parquet table", "The same table for polars, pandas or DuckDB."],
];

export async function renderExport(main) {
  const teacher = state.meta.teachers.find((t) => t.key === currentTeacher());
  main.replaceChildren(
    h("h1", {}, `Export W: ${state.meta.student.name} → ${teacher.name}`),
    h("ul", { class: "exports" }, FORMATS.map(([format, title, about]) =>
      h("li", {}, h("a", { class: "button", href: api.downloadUrl(`/api/teachers/${teacher.key}/export/${format}`), download: "" }, title), h("p", { class: "muted" }, about)))),
    h("p", { class: "muted" }, `Workspace: ${state.meta.workspace}`),
  );
}
