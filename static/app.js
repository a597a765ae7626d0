// Entry point: load the server's meta, then route on the URL hash (#/view?params) so every view
// can be shared as a link. Views live in ./views/, one module each; what they share (meta, route,
// navigation) is in ./state.js, so nothing imports this module.
import { api, captureToken } from "./api.js";
import { clearToast, h, toast } from "./dom.js";
import { currentTeacher, parseRoute, state } from "./state.js";
import { renderDiagnosis } from "./views/diagnosis.js";
import { renderDiff } from "./views/diff.js";
import { renderExport } from "./views/export.js";
import { renderHistory } from "./views/history.js";
import { renderOverview } from "./views/overview.js";
import { renderPair } from "./views/pair.js";
import { renderRules } from "./views/rules.js";
import { renderToken } from "./views/token.js";
import { renderVocab } from "./views/vocab.js";

const VIEWS = {
  overview: renderOverview,
  pair: renderPair,
  vocab: renderVocab,
  token: renderToken,
  diagnosis: renderDiagnosis,
  rules: renderRules,
  diff: renderDiff,
  history: renderHistory,
  export: renderExport,
};

let shownHash = location.hash;

// Leaving a view with unsaved changes asks first; staying puts the old URL back (no re-render).
function mayLeave() {
  if (!state.leaveGuard?.()) return true;
  if (confirm("This row has unsaved changes. Leave and discard them?")) return true;
  history.replaceState(null, "", shownHash || "#/pair");
  document.getElementById("teacher").value = currentTeacher();
  return false;
}

async function render() {
  if (!mayLeave()) return;
  state.leaveGuard = null;
  shownHash = location.hash;
  const route = parseRoute();
  const main = document.getElementById("main");
  clearToast(); // a message belongs to the page it was shown on
  document.getElementById("teacher").value = currentTeacher();
  for (const link of document.querySelectorAll("nav a[data-view]")) {
    link.classList.toggle("active", link.dataset.view === route.view || (route.view === "token" && link.dataset.view === "vocab"));
    link.href = `#/${link.dataset.view}?teacher=${encodeURIComponent(currentTeacher())}`;
  }
  const view = VIEWS[route.view] || renderOverview;
  try {
    await view(main, route);
  } catch (error) {
    main.replaceChildren(h("p", { class: "error" }, `Could not load this view: ${error.message}`));
  }
}

async function start() {
  captureToken();
  try {
    state.meta = await api.get("/api/meta");
  } catch (error) {
    document.getElementById("main").replaceChildren(h("p", { class: "error" }, `Server says: ${error.message}`));
    return;
  }
  const { student, teachers } = state.meta;
  document.getElementById("pairname").textContent = `student ${student.name} (${student.size.toLocaleString()})`;
  const select = document.getElementById("teacher");
  select.replaceChildren(...teachers.map((t) => h("option", { value: t.key }, `${t.name} (${t.size.toLocaleString()})`)));
  select.addEventListener("change", () => {
    const route = parseRoute();
    route.params.set("teacher", select.value);
    location.hash = `#/${[route.view, ...route.args].join("/")}?${route.params}`;
  });
  window.addEventListener("hashchange", render);
  window.addEventListener("beforeunload", (event) => {
    if (state.leaveGuard?.()) { event.preventDefault(); event.returnValue = ""; }
  });
  document.addEventListener("keydown", (event) => {
    const typing = ["INPUT", "TEXTAREA", "SELECT"].includes(document.activeElement?.tagName);
    if (event.key === "/" && !typing) {
      const search = document.querySelector("[data-search]");
      if (search) {
        event.preventDefault();
        search.focus();
      }
    }
  });
  await render();
}

window.addEventListener("unhandledrejection", (event) => toast(event.reason?.message || String(event.reason), "error"));
start();
