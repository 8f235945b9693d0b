// Talking to the DSO server: JSON in and out, the CSRF token on every state-changing request.
export const session = { user: null, role: null, csrf: null };

export class ApiError extends Error {
  constructor(status, detail) { super(detail); this.status = status; }
}

// A 401 to a logged-in console means the server no longer knows its session (it ended, or a restarted server
// lost it): app.js logs out on `console-logout`. Not for login's own 401 (a wrong password) nor the opening
// check's (session.user is unset then; /console/api/whoami answers a page logged out 200), nor a late answer sent under an earlier session (the CSRF token,
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
// route once: a 401 there logs out through api(). Any other answer (a 5xx from the events route or a proxy, the
// session alive) means the feed broke, not the session: it is opened again after FEED_RETRY_MS, doubling to
// FEED_RETRY_MAX_MS while it keeps closing, the view's listeners carried over (review34 R34-5: before, the
// feeder and market views, which have no poll of their own, stayed on their last picture until reopened).
export const FEED_RETRY_MS = 2000;
export const FEED_RETRY_MAX_MS = 60000;

// What the user is told of the live feed, whichever view holds it: a toast when it breaks and one when a feed
// opens again; in between the header says it is broken, since when and when the next try is (#feed-state),
// and each failed retry changes only that line. Before, a route failing for good toasted at every retry, once
// a minute at FEED_RETRY_MAX_MS, for as long as it failed. A feed told broken under an earlier session (its
// CSRF token, one per session) is not this session's: a new login starts from a feed not known broken.
const feedNotice = {
  brokenUnder: null,  // the session's CSRF token while its feed is known broken, else null
  since: 0,
  failures: 0,

  get broken() { return this.brokenUnder !== null && this.brokenUnder === session.csrf; },

  failed(retryMs) {
    if (!this.broken) {
      toast(`the live feed broke; opening it again in ${Math.round(retryMs / 1000)} s`);
      Object.assign(this, { brokenUnder: session.csrf, since: Date.now(), failures: 0 });
    }
    this.failures += 1;
    const line = document.getElementById("feed-state");
    if (!line) return;
    line.textContent = `live feed broken since ${clockTime(this.since)}; next try ${clockTime(Date.now() + retryMs)}`;
    line.dataset.failures = String(this.failures);
    line.hidden = false;
  },

  opened() {
    if (this.broken) toast("the live feed is back");
    this.brokenUnder = null;
    this.hide();
  },

  // the broken feed's view closed it: nothing retries it now; the next feed that opens says it is back
  hide() {
    const line = document.getElementById("feed-state");
    if (line) line.hidden = true;
  },
};

// What the user is told of the DSO server's connection to the feeder's broker, which every MGMC trades through:
// the live feed says it when it opens and when it is lost or back (`event: broker`, console/broker_link.py). A
// toast when it is lost and one when it is back, with how long it was down; in between the header says since
// when (#broker-state, counted on each second by the page, not asked of the server). Before, a broker outage
// showed nowhere in the console (U2: the feed's own line is about the browser's feed, which stayed up). Only a
// view with a feed hears it - every view opens one, the Ledger view for these lines alone - and a feed closed
// takes the line down; the next feed says where it stands.
const brokerNotice = {
  lostUnder: null,  // the session's CSRF token while its feed told the broker lost, else null
  since: 0,

  get lost() { return this.lostUnder !== null && this.lostUnder === session.csrf; },

  heard(link) {
    if (link.connected === null) return;  // this server holds no broker connection: nothing to tell
    if (!link.connected) {
      if (!this.lost) {
        toast("the DSO server lost the feeder's broker: the market and the chains wait for it");
        Object.assign(this, { lostUnder: session.csrf, since: Date.now() - 1000 * (link.down_s ?? 0) });
      }
      this.show(link.lost);
      return;
    }
    if (this.lost) toast(`the broker is back after ${Math.round((Date.now() - this.since) / 1000)} s`);
    this.lostUnder = null;
    this.hide();
  },

  show(lost) {
    const line = document.getElementById("broker-state");
    if (!line) return;
    const draw = () => { line.textContent = `broker lost ${Math.round((Date.now() - this.since) / 1000)} s ago`; };
    draw();
    line.dataset.lost = lost.join(", ");  // which of the server's connections are off it
    line.hidden = false;
    clearInterval(this.ticker);
    this.ticker = setInterval(draw, 1000);
  },

  hide() {
    clearInterval(this.ticker);
    const line = document.getElementById("broker-state");
    if (line) line.hidden = true;
  },
};

const clockTime = (ms) => new Date(ms).toTimeString().slice(0, 8);  // HH:MM:SS, the browser's time zone

class LiveFeed {
  constructor(url) {
    this.url = url;
    this.listeners = [];
    this.closed = false;
    this.retryMs = FEED_RETRY_MS;
    this.failing = false;  // closed with the session alive, its retry pending: it holds the header's line
    this.open();
  }

  open() {
    const source = new EventSource(this.url);
    this.source = source;
    source.addEventListener("logout", () => { this.close(); window.dispatchEvent(new Event("console-logout")); });
    source.addEventListener("broker", (ev) => { if (source === this.source) brokerNotice.heard(JSON.parse(ev.data)); });
    source.addEventListener("open", () => { this.retryMs = FEED_RETRY_MS; this.failing = false; feedNotice.opened(); });
    source.addEventListener("error", async () => {
      if (source.readyState !== EventSource.CLOSED || this.closed || source !== this.source) return;
      try {
        await api("/console/api/session");
      } catch (e) {
        if (e instanceof ApiError && e.status === 401) return;  // logged out
      }
      if (this.closed || !session.user) return;
      this.timer = setTimeout(() => { if (!this.closed) this.open(); }, this.retryMs);
      this.failing = true;
      feedNotice.failed(this.retryMs);
      this.retryMs = Math.min(this.retryMs * 2, FEED_RETRY_MAX_MS);
    });
    for (const [type, fn] of this.listeners) source.addEventListener(type, fn);
  }

  addEventListener(type, fn) {
    this.listeners.push([type, fn]);
    this.source.addEventListener(type, fn);
  }

  close() {
    this.closed = true;
    clearTimeout(this.timer);
    this.source.close();
    if (this.failing) feedNotice.hide();
    brokerNotice.hide();
  }
}

export function liveFeed(url) {
  return new LiveFeed(url);
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

// A table of `headers` and `rows`; with no row, a line across every column says "none", as the Alarms card does
// (U2: an empty table showed only its header, which reads as a view that did not load). The line is the table's
// foot, not a row of its body: the body holds the data rows only, however many there are.
export function dataTable(attrs, headers, rows) {
  const body = rows.flat();
  return el("table", attrs, el("thead", {}, el("tr", {}, headers.map((h) => el("th", {}, h)))),
    el("tbody", {}, body),
    body.length ? "" : el("tfoot", {}, el("tr", {}, el("td", { colspan: headers.length }, el("small", {}, "none")))));
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

// An interval's market day and its hours in that day ("day 1, 09:00–09:15": console/market_days.py's `day` and
// `hours_of_day`), or null where the server gives none (the lab console without a loop, an older server).
const hhmm = (h) => { const m = Math.round(h * 60); return `${String(Math.floor(m / 60)).padStart(2, "0")}:${String(m % 60).padStart(2, "0")}`; };
// What the times beside a market day are (README: 'its clock is the market's'): shown where the page says a day
// and a time, as a tooltip and on the Market view as one line (C7: read as midnight-based wall-clock hours).
export const MARKET_CLOCK = "market clock: day 0 starts at interval 0's start (the market's epoch), and 00:00 is that time of each day, not midnight";
export function dayTime(iv) {
  const h = iv.hours_of_day;
  return iv.day == null || !h ? null : `day ${iv.day}, ${hhmm(h[0])}–${hhmm(h[1])}`;
}
