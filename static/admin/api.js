// The public API as the admin UI uses it: the session (tokens in localStorage, refreshed before they
// expire, as static/alyx-realtime.js reads them through a function), JSON requests, errors.

const KEY = "alyx.admin.session";
const listeners = new Set();
let refreshTimer = null;

export class ApiError extends Error {
  constructor(status, body) {
    const err = (body && body.error) || {};
    super(err.message || `HTTP ${status}`);
    this.status = status;
    this.code = err.code || "http_" + status;
    this.details = err.details || {};
  }
}

export function session() {
  try { return JSON.parse(localStorage.getItem(KEY) || "null"); } catch (e) { return null; }
}

/** The current access token (the realtime client's `token` function). */
export function accessToken() {
  const s = session();
  return s ? s.access_token : null;
}

function store(tokens) {
  if (tokens) {
    const expiresAt = Date.now() + (tokens.expires_in || 900) * 1000;
    localStorage.setItem(KEY, JSON.stringify({
      access_token: tokens.access_token, refresh_token: tokens.refresh_token,
      expires_at: expiresAt, user: tokens.user,
    }));
  } else {
    localStorage.removeItem(KEY);
  }
  scheduleRefresh();
  for (const fn of listeners) fn(session());
}

export function onSession(fn) { listeners.add(fn); }

function scheduleRefresh() {
  clearTimeout(refreshTimer);
  const s = session();
  if (!s) return;
  // refresh at 80% of the token's life (at least 5 s ahead of expiry)
  const left = s.expires_at - Date.now();
  const wait = Math.max(1000, Math.min(left * 0.8, left - 5000));
  refreshTimer = setTimeout(() => refresh().catch(() => store(null)), wait);
}

let refreshing = null;
export function refresh() {
  const s = session();
  if (!s) return Promise.reject(new ApiError(401, null));
  if (!refreshing) {
    refreshing = raw("POST", "/api/auth/refresh", { refresh_token: s.refresh_token }, false)
      .then((tokens) => { store(tokens); return tokens; })
      .finally(() => { refreshing = null; });
  }
  return refreshing;
}

async function raw(method, path, body, auth) {
  const headers = { Accept: "application/json" };
  const token = accessToken();
  if (auth && token) headers.Authorization = "Bearer " + token;
  const init = { method, headers };
  if (body instanceof FormData) init.body = body; // multipart: the browser writes the boundary
  else if (body !== undefined) { headers["Content-Type"] = "application/json"; init.body = JSON.stringify(body); }
  const resp = await fetch(path, init);
  const text = await resp.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch (e) { data = text; }
  if (!resp.ok) throw new ApiError(resp.status, data);
  return data;
}

/** A JSON request (with a FormData body: multipart/form-data) with the session's token; an expired token is
 * refreshed once and the request retried. */
export async function api(method, path, body) {
  try {
    return await raw(method, path, body, true);
  } catch (err) {
    if (err.status === 401 && err.code === "token_expired" && session()) {
      await refresh();
      return raw(method, path, body, true);
    }
    if (err.status === 401 && session()) store(null);
    throw err;
  }
}

let fileToken = null;

/** A short-lived file token (POST /api/files/token) for <img src> of protected files: never the access
 * token, which stays out of URLs. Reused until 20 s before it expires. */
export async function filesToken() {
  if (!fileToken || fileToken.expiresAt - Date.now() < 20000) {
    const t = await api("POST", "/api/files/token");
    fileToken = { token: t.token, expiresAt: Date.now() + t.expires_in * 1000 };
  }
  return fileToken.token;
}

/** The token filesToken() last fetched (null before the first). */
export function currentFilesToken() { return fileToken ? fileToken.token : null; }

/** Any request, answered as it came (the function console): status, headers, body text, duration. */
export async function send(method, path, headers, body) {
  const h = new Headers(headers || {});
  const token = accessToken();
  if (token && !h.has("Authorization")) h.set("Authorization", "Bearer " + token);
  const started = performance.now();
  const resp = await fetch(path, { method, headers: h, body: ["GET", "HEAD"].includes(method) ? undefined : body });
  const text = await resp.text();
  return { status: resp.status, headers: [...resp.headers.entries()], body: text,
           duration: Math.round(performance.now() - started) };
}

export async function signIn(email, password) {
  const tokens = await raw("POST", "/api/auth/login", { email, password }, false);
  if (!tokens.user || tokens.user.role !== "admin") {
    // not an admin: end the session just made, keep nothing
    await fetch("/api/auth/logout", { method: "POST", headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ refresh_token: tokens.refresh_token }) }).catch(() => {});
    const err = new ApiError(403, { error: { code: "not_admin",
      message: "This UI is for admins. Your account can sign in to the app, but not here." } });
    throw err;
  }
  store(tokens);
  return tokens.user;
}

export async function signOut() {
  const s = session();
  if (s) {
    await fetch("/api/auth/logout", { method: "POST", headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ refresh_token: s.refresh_token }) }).catch(() => {});
  }
  fileToken = null;
  store(null);
}

export function resume() { scheduleRefresh(); }

/** URL query from an object, leaving out empty values. */
export function qs(params) {
  const p = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== undefined && v !== null && v !== "") p.set(k, String(v));
  const s = p.toString();
  return s ? "?" + s : "";
}
