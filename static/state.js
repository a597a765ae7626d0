// What every view shares: the server's meta (set once by app.js at start-up) and the URL hash route
// (#/view/args?params), read with parseRoute and changed with go. No imports: views and the entry
// module import this, never each other. A view with unsaved changes sets `leaveGuard` to a function
// that answers true while they are unsaved; app.js asks before leaving (and on beforeunload).
export const state = { meta: null, leaveGuard: null };

export function parseRoute() {
  const [path, query = ""] = location.hash.replace(/^#/, "").split("?");
  const parts = path.split("/").filter(Boolean);
  return { view: parts[0] || "overview", args: parts.slice(1), params: new URLSearchParams(query) };
}

// Navigate to a view, keeping the chosen teacher in the URL.
export function go(view, args = [], params = {}) {
  const query = new URLSearchParams({ teacher: currentTeacher(), ...params });
  for (const [key, value] of [...query]) if (value === "" || value === "null") query.delete(key);
  location.hash = `#/${[view, ...args].join("/")}?${query}`;
}

// The teacher named in the URL if the workspace has it, else the first one.
export function currentTeacher() {
  const wanted = parseRoute().params.get("teacher");
  const keys = state.meta.teachers.map((t) => t.key);
  return keys.includes(wanted) ? wanted : keys[0];
}
