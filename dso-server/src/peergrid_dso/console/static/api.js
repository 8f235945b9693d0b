// Talking to the DSO server: JSON in and out, the CSRF token on every state-changing request.
export const session = { user: null, role: null, csrf: null };

export class ApiError extends Error {
  constructor(status, detail) { super(detail); this.status = status; }
}

// A 401 to a logged-in console means the server no longer knows its session (it ended, or a restarted server
// lost it): app.js logs out on `console-logout`. Not for login's own 401 (a wrong password) nor the opening
// session check (session.user is unset then), nor a late answer sent under an earlier session (the CSRF token,
// one per session, differs): it must not end the session logged in since.
export async function api(path, { method = "GET", body } = {}) {
  const sentUnder = session.csrf;
  const headers = { "Accept": "application/json" };
  if (method !== "GET") headers["X-CSRF-Token"] = session.csrf || "";
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const res = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body),
                                  credentials: "same-origin" });
  let data = null;
  try { data = await res.json(); } catch { data = null; }
  if (!res.ok) {
    const detail = data && data.detail ? (typeof data.detail === "string" ? data.detail : JSON.stringify(data.detail)) : res.statusText;
    if (res.status === 401 && session.user && session.csrf === sentUnder) window.dispatchEvent(new Event("console-logout"));
    throw new ApiError(res.status, detail);
  }
  return data;
}

// A view's live feed (/console/api/events) that follows the session. While the session lives the server ends
// the stream with a `logout` event when it ends. A feed whose session is already gone when it reconnects (the
// server restarted without it: it expired meanwhile, or the store was restored) is answered 401, which an
// EventSource does not expose: the browser closes it, readyState CLOSED, and raises only `error` (a dropped
// connection raises `error` too, but the browser reconnects it by itself). So a closed feed asks the session
// route once: a 401 there logs out through api(); any other answer leaves the feed closed with a note (the view
// keeps what it last showed; opening the view again opens a new feed).
export function liveFeed(url) {
  const source = new EventSource(url);
  source.addEventListener("logout", () => { source.close(); window.dispatchEvent(new Event("console-logout")); });
  source.addEventListener("error", async () => {
    if (source.readyState !== EventSource.CLOSED) return;
    try {
      await api("/console/api/session");
    } catch (e) {
      if (e instanceof ApiError && e.status === 401) return;  // logged out
    }
    if (session.user) toast("the live feed closed; open the view again to follow it");
  });
  return source;
}

export const canOperate = () => session.role === "operator" || session.role === "admin";

export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") node.className = v;
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else if (v !== undefined && v !== null && v !== false) node.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat()) node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return node;
}

export function svg(tag, attrs = {}, ...children) {
  const node = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k.startsWith("on")) node.addEventListener(k.slice(2), v); else node.setAttribute(k, v);
  }
  for (const c of children.flat()) node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return node;
}

export function toast(text) {
  const t = document.getElementById("toast");
  t.textContent = text;
  t.classList.add("show");
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => t.classList.remove("show"), 4000);
}

export const fmt = (x, digits = 1) => (x === null || x === undefined ? "—" : Number(x).toFixed(digits));
export const short = (hex, n = 12) => (hex ? `${hex.slice(0, n)}…` : "—");
