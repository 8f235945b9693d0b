// Operations: enrolment queue, reconfiguration plans (before/after, approve and execute), the relays' reported
// positions (the closed loop's relay watch while its alarm stands; read, adopt), the audit trail.
// Follows the live feed (/console/api/events): a feeder event that changes what this view shows of the feeder (the
// relay watch's alarm and reports, the open set) or an operations event reloads it; a slow poll stands in for a
// dropped feed. It re-renders only when what it shows changed, and never while an operator's action is in flight
// (a re-render would enable that action's button again and drop its progress note): the action's end renders.
import { api, canOperate, dataTable, el, svg, toast, fmt, short, liveFeed } from "./api.js";

const FALLBACK_POLL_MS = 15000;  // the feed says when something changed; this only covers a feed that dropped
// An action's request has no timeout of its own (fetch waits for good): one unanswered by then no longer holds
// the view, or a hung request would keep the relay watch, plans and enrolments from ever rendering again.
const ACTION_HOLD_MS = 120000;

// What a feeder event carries that this view shows or follows: the relay watch (its alarm stands first in the
// alarm list; the branches whose relay reports otherwise) and the open set (a plan executed, relays adopted).
function feederKey(s) {
  return JSON.stringify([s.open_branches, s.alarms, s.branches.filter((b) => b.relay_reports).map((b) => [b.number, b.relay_reports])]);
}

// Bus voltages before and after a plan, against the feeder's lower limit.
function voltageProfile(plan, vmin) {
  const before = plan.before.vm_pu || [], after = plan.after.vm_pu || [];
  const W = 640, H = 200, L = 46, R = 12, T = 10, B = 28, n = before.length;
  const lo = Math.min(vmin - 0.01, ...before, ...after), hi = 1.0;
  const x = (i) => L + (i / Math.max(1, n - 1)) * (W - L - R);
  const y = (v) => T + (1 - (v - lo) / (hi - lo)) * (H - T - B);
  const line = (vs, colour, dash) => svg("polyline", { points: vs.map((v, i) => `${x(i)},${y(v)}`).join(" "),
    fill: "none", stroke: colour, "stroke-width": 2, "stroke-dasharray": dash });
  const g = svg("svg", { viewBox: `0 0 ${W} ${H}`, width: W, height: H, id: "voltage-profile" },
    svg("line", { x1: L, y1: H - B, x2: W - R, y2: H - B, class: "axis" }), svg("line", { x1: L, y1: T, x2: L, y2: H - B, class: "axis" }),
    svg("line", { x1: L, y1: y(vmin), x2: W - R, y2: y(vmin), stroke: "#b3261e", "stroke-dasharray": "5 4" }),
    svg("text", { x: W - R - 2, y: y(vmin) - 4, class: "tick", "text-anchor": "end", fill: "#b3261e" }, `limit ${vmin} pu`),
    line(before, "#9aa5ad", "4 3"), line(after, "#1f5fa8", ""),
    svg("text", { x: (L + W - R) / 2, y: H - 6, class: "tick", "text-anchor": "middle" }, "bus"),
    svg("text", { x: L + 6, y: T + 10, class: "tick" }, `before (grey, dashed) · after (blue)`));
  for (const v of [lo, (lo + hi) / 2, hi]) g.append(svg("text", { x: L - 4, y: y(v) + 3, class: "tick", "text-anchor": "end" }, v.toFixed(3)));
  for (let i = 0; i < n; i += Math.max(1, Math.ceil(n / 16))) g.append(svg("text", { x: x(i), y: H - B + 12, class: "tick", "text-anchor": "middle" }, i + 1));
  return g;
}

export class OperationsView {
  constructor(root) { this.root = root; this.acting = 0; this.loads = 0; this.shown = null; }

  async start() {
    this.stop();
    this.running = true;
    this.source = liveFeed("/console/api/events");  // logs out when the session ended, also by a restart
    this.source.addEventListener("feeder", (ev) => {
      const key = feederKey(JSON.parse(ev.data));
      if (key !== this.feederSeen) { this.feederSeen = key; this.refresh(); }
    });
    this.source.addEventListener("operations", () => this.refresh());
    this.timer = setInterval(() => this.refresh(), FALLBACK_POLL_MS);
    await this.load(true);
  }

  stop() {
    this.running = false;
    clearInterval(this.timer);
    this.source?.close();
    this.source = null;
    this.feederSeen = null;
  }

  // Fetch the view and render it when it changed (`force`: also when not, after an action or on opening).
  // Dropped: a load that an action started after, or a later load overtook.
  async load(force = false) {
    if (this.acting || !this.running) return;
    const mine = ++this.loads;
    const ops = await api("/console/api/operations");
    if (this.acting || !this.running || mine !== this.loads) return;
    const text = JSON.stringify(ops);
    if (!force && text === this.shown) return;
    this.shown = text;
    this.render(ops);
  }

  refresh(force = false) { return this.load(force).catch(() => {}); }  // the feed or the poll: the next one retries

  // An operator's action: no re-render while it is in flight; its end renders what it left (the button enabled
  // again, a toast already said how it went) - or, if that load fails, the next one does, changed or not.
  async hold(action) {
    this.acting += 1;
    let held = true;
    const release = () => {
      if (!held) return null;
      held = false;
      this.acting -= 1;
      this.shown = null;
      return this.acting ? null : this.refresh(true);
    };
    const timer = setTimeout(() => { toast("no answer yet: the view follows the feed again"); release(); }, ACTION_HOLD_MS);
    try { return await action(); } finally {
      clearTimeout(timer);
      await release();
    }
  }

  act(path, what) {
    return this.hold(async () => {
      try {
        const r = await api(path, { method: "POST" });
        toast(`${what}: done`);
        return r;
      } catch (e) { toast(`${what}: ${e.message}`); return null; }
    });
  }

  button(label, attrs, onclick) {
    return el("button", { type: "button", disabled: !canOperate(), title: canOperate() ? "" : "operators only", ...attrs, onclick }, label);
  }

  render(ops) {
    this.vmin = ops.vmin_limit;
    const planning = el("span", { id: "planning" });
    this.root.replaceChildren(
      el("h2", {}, "Operations"),
      canOperate() ? "" : el("p", { class: "hint", id: "readonly-note" }, "You are a viewer: operations are read-only."),
      el("div", { class: "card" }, el("h2", {}, "Reconfiguration plans"),
        this.button("Compute a plan for the present injections", { id: "propose-plan" }, async (e) => {
          e.target.disabled = true; planning.textContent = " solving the reconfiguration MILP…";
          await this.act("/console/api/plans", "compute plan");
        }), planning,
        dataTable({ id: "plans" }, ["plan", "status", "switching", "losses kW before → after", "lowest V before → after", "by", ""],
          ops.plans.map((p) => el("tr", { "data-plan": p.id, "data-status": p.status },
            el("td", {}, p.id), el("td", {}, p.status),
            el("td", {}, p.actions.map((a) => `${a.close ? "close" : "open"} ${a.branch}`).join(", ") || "—"),
            el("td", { class: "num" }, `${fmt(p.before.losses_kw)} → ${fmt(p.after.losses_kw)}`),
            el("td", { class: "num" }, `${fmt(p.before.vmin_pu, 4)} → ${fmt(p.after.vmin_pu, 4)}`),
            el("td", {}, p.approved_by ? `${p.created_by}, approved by ${p.approved_by}` : p.created_by),
            el("td", {}, p.alarm ? el("span", { class: "failed" }, p.alarm) : "", p.status === "pending"
              ? this.button("Approve and execute", { class: "approve", "data-plan": p.id }, (e) => { e.target.disabled = true; this.act(`/console/api/plans/${p.id}/approve`, `approve ${p.id}`); })
              : p.steps.length ? el("small", {}, `${p.steps.filter((s) => s.ok).length}/${p.steps.length} steps confirmed`) : "")))),
        ops.plans.length ? this.voltageTable(ops.plans[0]) : ""),
      el("div", { class: "card", id: "relay-positions" }, el("h2", {}, "Relay positions"),
        el("p", { class: "hint" }, "A plan is refused while a relay reports another position than the DSO holds (after a restart, a hand operation, a failed rollback). Read the relays and adopt what they report: only when every relay reads, none is moving and the result is radial."),
        ops.relay_watch ? this.watchView(ops.relay_watch) : "",
        this.button("Read the relays", { id: "read-relays" }, (e) => this.hold(async () => {
          e.target.disabled = true;
          try { this.relays = await api("/console/api/relays"); } catch (err) { toast(`read relays: ${err.message}`); }
        })),
        this.relays ? this.relayView(this.relays) : ""),
      el("div", { class: "card" }, el("h2", {}, "Enrolment queue"),
        this.tokenForm(),
        ops.enrolment.length ? "" : el("p", { class: "hint" }, "No MGMC has asked to enrol yet (signed requests with a one-time token arrive on /api/dso/enrolment)."),
        dataTable({ id: "enrolment" }, ["MGMC", "identity key", "anonym", "status", ""],
          ops.enrolment.map((r) => el("tr", { "data-mgmc": r.mgmc, "data-status": r.status },
            el("td", {}, r.label), el("td", { class: "hash" }, short(r.mgmc)), el("td", { class: "hash" }, short(r.anonym)),
            el("td", {}, r.status),
            el("td", {}, r.status === "authorised"
              ? this.button("Revoke", { class: "secondary revoke" }, () => this.act(`/console/api/enrolment/${r.mgmc}/revoke`, `revoke ${r.label}`))
              : r.status === "pending"
                ? this.button("Approve", { class: "enrol-approve" }, () => this.act(`/console/api/enrolment/${r.mgmc}/approve`, `approve ${r.label}`))
                : ""))))),
      el("div", { class: "card" }, el("h2", {}, "Actions recorded on the DSO chain"),
        dataTable({ id: "audit" }, ["height", "who", "action", "transactions"],
          ops.audit.map((a) => el("tr", {}, el("td", { class: "num" }, a.height), el("td", {}, a.user), el("td", {}, a.action),
            // a line that caused no transaction (the relay watch's, a refusal) points at its own record
            el("td", { class: "hash" }, (a.txids.length ? a.txids : [a.record]).filter(Boolean).map((t) => short(t)).join(" ")))))));
  }

  // A one-time enrolment token for an MGMC's image (the vault's flash_enrolment_token), shown once: the DSO keeps
  // only its hash. An MG name binds it to that MG; as `peergrid-dso enrolment token create --label MG`.
  tokenForm() {
    const label = el("input", { id: "enrol-token-label", type: "text", maxlength: 64, placeholder: "MG name (optional)", disabled: !canOperate() });
    const issued = this.issued;
    return el("div", { id: "enrol-token" },
      label,
      this.button("Issue an enrolment token", { id: "enrol-token-issue" }, (e) => this.hold(async () => {
        e.target.disabled = true;
        const body = label.value.trim() ? { label: label.value.trim() } : {};
        try {
          this.issued = await api("/console/api/enrolment/tokens", { method: "POST", body });
          toast(`enrolment token for ${this.issued.label || "any MG"}: issued`);
        } catch (err) { toast(`issue an enrolment token: ${err.message}`); }
      })),
      issued ? el("p", { id: "enrol-token-issued" }, `Token for ${issued.label || "any MG"} (shown once; put it in the vault for that MGMC's image): `,
        el("code", {}, issued.token)) : "");
  }

  // The closed loop's read of every relay after the last interval, while its alarm stands (it leaves with it).
  watchView(w) {
    return el("div", { id: "relay-watch", class: "alarm-box" },
      el("p", { class: "failed" }, `Relay watch: the DSO holds open ${w.held_open.join(", ")}, and its read after the last interval disagrees.`),
      dataTable({ id: "relay-watch-relays" }, ["branch", "reports", "the DSO holds it"],
        [w.relays.map((r) => el("tr", { "data-branch": r.branch }, el("td", {}, r.branch), el("td", {}, r.reports), el("td", {}, r.held))),
          w.unreadable.map((u) => el("tr", { "data-branch": u.branch }, el("td", {}, u.branch), el("td", { class: "failed" }, `unreadable (${u.why})`), el("td", {}, w.held_open.includes(u.branch) ? "open" : "closed")))]),
      w.adoptable
        ? this.adoptButton(`Adopt what the relays report: open ${w.adopt_open.join(", ")}`, "adopt-watch", w.adopt_open)
        : el("p", { class: "failed" }, w.reason),
      el("p", { class: "hint" }, "Adopting reads every relay again and is refused if they report another open set by then; or put the field right and the next read lifts the alarm."));
  }

  relayView(r) {
    const off = r.changed.map((b) => `${b} ${r.relays[b] || "?"}`).join(", ") || "none";
    const unreadable = Object.entries(r.unreadable).map(([b, why]) => `${b} (${why})`).join("; ");
    return el("div", { id: "relay-reading" },
      el("p", {}, `The DSO holds open ${r.open_branches.join(", ")}; relays reporting otherwise: ${off}.`),
      unreadable ? el("p", { class: "failed" }, `Unreadable: ${unreadable}`) : "",
      r.adoptable
        ? this.adoptButton(`Adopt: open ${r.adopt_open.join(", ")}`, "adopt-relays", r.adopt_open)
        : el("p", { class: "failed" }, r.reason));
  }

  // Adopting posts the open set the operator saw; the server reads every relay again before it takes it.
  adoptButton(label, id, openBranches) {
    return this.button(label, { id }, (e) => this.hold(async () => {
      e.target.disabled = true;
      try {
        await api("/console/api/relays/adopt", { method: "POST", body: { open_branches: openBranches } });
        toast("adopt relay positions: done");
      } catch (err) { toast(`adopt relay positions: ${err.message}`); }
      this.relays = null;
    }));
  }

  voltageTable(plan) {
    const before = plan.before.vm_pu || [], after = plan.after.vm_pu || [];
    if (!before.length) return "";
    return el("div", {}, el("h2", {}, `Voltage profile of ${plan.id}`), voltageProfile(plan, this.vmin ?? 0.9),
      el("details", {}, el("summary", {}, `Bus voltages of ${plan.id}, before and after (table)`),
      dataTable({}, ["bus", "before pu", "after pu"],
        before.map((v, i) => el("tr", {}, el("td", {}, i + 1), el("td", { class: "num" }, fmt(v, 4)), el("td", { class: "num" }, fmt(after[i], 4)))))));
  }
}
