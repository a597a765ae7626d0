// The JSON API, with the access token (if the server needs one) on every call.

const TOKEN_KEY = "xtoken-align-token";

export function captureToken() {
  const match = location.hash.match(/token=([^&]+)/);
  if (match) {
    sessionStorage.setItem(TOKEN_KEY, decodeURIComponent(match[1]));
    history.replaceState(null, "", location.pathname + "#/");
  }
}

function headers(extra = {}) {
  const token = sessionStorage.getItem(TOKEN_KEY);
  return token ? { ...extra, Authorization: `Bearer ${token}` } : extra;
}

export class ApiError extends Error {
  constructor(status, body) {
    super(typeof body.detail === "string" ? body.detail : JSON.stringify(body.detail));
    this.status = status;
    this.body = body;
  }
}

async function call(method, path, body) {
  const options = { method, headers: headers(body ? { "Content-Type": "application/json" } : {}) };
  if (body) options.body = JSON.stringify(body);
  const response = await fetch(path, options);
  const data = await response.json().catch(() => ({ detail: response.statusText }));
  if (!response.ok) throw new ApiError(response.status, data);
  return data;
}

export const api = {
  get: (path, params = {}) => {
    const query = new URLSearchParams(Object.entries(params).filter(([, v]) => v !== "" && v !== null && v !== undefined));
    return call("GET", `${path}?${query}`);
  },
  post: (path, body) => call("POST", path, body),
  put: (path, body) => call("PUT", path, body),
  downloadUrl: (path) => {
    const token = sessionStorage.getItem(TOKEN_KEY);
    return token ? `${path}?token=${encodeURIComponent(token)}` : path;
  },
};
