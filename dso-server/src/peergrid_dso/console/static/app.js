// The console shell: log in, pick a tab, hand the section to its view module.
import { api, session, el, toast } from "./api.js";
import { FeederView } from "./feeder.js";
import { MarketView } from "./market.js";
import { LedgerView } from "./ledger.js";
import { OperationsView } from "./ops.js";

const views = {};
let current = null;

function show(id) {
  for (const s of document.querySelectorAll("main > section")) s.hidden = s.id !== id;
}

async function openTab(name) {
  if (!views[name]) return;
  if (current && current !== views[name]) current.stop?.();
  current = views[name];
  for (const a of document.querySelectorAll("#tabs a")) a.classList.toggle("active", a.dataset.tab === name);
  show(name);
  await current.start();
}

function loggedIn(who) {
  Object.assign(session, who);
  document.getElementById("user").textContent = `${who.user} (${who.role})`;
  document.getElementById("who").hidden = false;
  document.getElementById("tabs").hidden = false;
  document.body.dataset.role = who.role;
  views.feeder = new FeederView(document.getElementById("feeder"));
  views.market = new MarketView(document.getElementById("market"));
  views.ledger = new LedgerView(document.getElementById("ledger"));
  views.operations = new OperationsView(document.getElementById("operations"));
  openTab((location.hash || "#feeder").slice(1));
}

function loggedOut(message = "") {
  current?.stop?.();
  current = null;
  Object.assign(session, { user: null, role: null, csrf: null });
  document.getElementById("who").hidden = true;
  document.getElementById("tabs").hidden = true;
  document.getElementById("login-error").textContent = message;
  show("login");
}

document.getElementById("login-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const form = ev.target;
  try {
    const who = await api("/console/api/login", { method: "POST",
      body: { username: form.username.value, password: form.password.value } });
    form.password.value = "";
    loggedIn(who);
  } catch (e) {
    document.getElementById("login-error").textContent = e.message;
  }
});

document.getElementById("logout").addEventListener("click", async () => {
  try { await api("/console/api/logout", { method: "POST" }); } catch { /* already gone */ }
  loggedOut("logged out");
});

window.addEventListener("hashchange", () => { if (session.user) openTab(location.hash.slice(1)); });
window.addEventListener("console-logout", () => loggedOut("your session ended; log in again"));

// The opening question answers 200 either way (C3: /console/api/session's 401 before login, its contract for API
// clients, was a console error at every page load); a 401 here is a session whose user was removed or changed.
(async () => {
  try {
    const { authenticated, ...who } = await api("/console/api/whoami");
    if (authenticated) loggedIn(who); else loggedOut();
  } catch (e) { loggedOut(e.message); }
})();

export { el, toast };
