// Operations: enrolment queue, reconfiguration plans (before/after, approve and execute), the audit trail.
import { api, canOperate, el, toast, fmt, short } from "./api.js";

export class OperationsView {
  constructor(root) { this.root = root; }

  async start() {
    await this.render();
    this.timer = setInterval(() => this.render().catch(() => {}), 3000);
  }

  stop() { clearInterval(this.timer); }

  async act(path, what) {
    try {
      const r = await api(path, { method: "POST" });
      toast(`${what}: done`);
      await this.render();
      return r;
    } catch (e) { toast(`${what}: ${e.message}`); await this.render(); return null; }
  }

  button(label, attrs, onclick) {
    return el("button", { type: "button", disabled: !canOperate(), title: canOperate() ? "" : "operators only", ...attrs, onclick }, label);
  }

  async render() {
    const ops = await api("/console/api/operations");
    const planning = el("span", { id: "planning" });
    this.root.replaceChildren(
      el("h2", {}, "Operations"),
      canOperate() ? "" : el("p", { class: "hint", id: "readonly-note" }, "You are a viewer: operations are read-only."),
      el("div", { class: "card" }, el("h2", {}, "Reconfiguration plans"),
        this.button("Compute a plan for the present injections", { id: "propose-plan" }, async (e) => {
          e.target.disabled = true; planning.textContent = " solving the reconfiguration MILP…";
          await this.act("/console/api/plans", "compute plan");
        }), planning,
        el("table", { id: "plans" }, el("thead", {}, el("tr", {}, ["plan", "status", "switching", "losses kW before → after", "lowest V before → after", "by", ""].map((h) => el("th", {}, h)))),
          el("tbody", {}, ops.plans.map((p) => el("tr", { "data-plan": p.id, "data-status": p.status },
            el("td", {}, p.id), el("td", {}, p.status),
            el("td", {}, p.actions.map((a) => `${a.close ? "close" : "open"} ${a.branch}`).join(", ") || "—"),
            el("td", { class: "num" }, `${fmt(p.before.losses_kw)} → ${fmt(p.after.losses_kw)}`),
            el("td", { class: "num" }, `${fmt(p.before.vmin_pu, 4)} → ${fmt(p.after.vmin_pu, 4)}`),
            el("td", {}, p.approved_by ? `${p.created_by}, approved by ${p.approved_by}` : p.created_by),
            el("td", {}, p.alarm ? el("span", { class: "failed" }, p.alarm) : "", p.status === "pending"
              ? this.button("Approve and execute", { class: "approve", "data-plan": p.id }, (e) => { e.target.disabled = true; this.act(`/console/api/plans/${p.id}/approve`, `approve ${p.id}`); })
              : p.steps.length ? el("small", {}, `${p.steps.filter((s) => s.ok).length}/${p.steps.length} steps confirmed`) : ""))))),
        ops.plans.length ? this.voltageTable(ops.plans[0]) : ""),
      el("div", { class: "card" }, el("h2", {}, "Enrolment queue"),
        ops.enrolment.length ? "" : el("p", { class: "hint" }, "No MGMC has asked to enrol yet (signed requests with a one-time token arrive on /api/dso/enrolment)."),
        el("table", { id: "enrolment" }, el("thead", {}, el("tr", {}, ["MGMC", "identity key", "anonym", "status", ""].map((h) => el("th", {}, h)))),
          el("tbody", {}, ops.enrolment.map((r) => el("tr", { "data-mgmc": r.mgmc, "data-status": r.status },
            el("td", {}, r.label), el("td", { class: "hash" }, short(r.mgmc)), el("td", { class: "hash" }, short(r.anonym)),
            el("td", {}, r.status),
            el("td", {}, r.status === "authorised"
              ? this.button("Revoke", { class: "secondary revoke" }, () => this.act(`/console/api/enrolment/${r.mgmc}/revoke`, `revoke ${r.label}`))
              : r.status === "pending"
                ? this.button("Approve", { class: "enrol-approve" }, () => this.act(`/console/api/enrolment/${r.mgmc}/approve`, `approve ${r.label}`))
                : "")))))),
      el("div", { class: "card" }, el("h2", {}, "Actions recorded on the DSO chain"),
        el("table", { id: "audit" }, el("thead", {}, el("tr", {}, ["height", "who", "action", "transactions"].map((h) => el("th", {}, h)))),
          el("tbody", {}, ops.audit.map((a) => el("tr", {}, el("td", { class: "num" }, a.height), el("td", {}, a.user), el("td", {}, a.action),
            el("td", { class: "hash" }, a.txids.map((t) => short(t)).join(" "))))))));
  }

  voltageTable(plan) {
    const before = plan.before.vm_pu || [], after = plan.after.vm_pu || [];
    if (!before.length) return "";
    return el("details", {}, el("summary", {}, `Bus voltages of ${plan.id}, before and after`),
      el("table", {}, el("thead", {}, el("tr", {}, el("th", {}, "bus"), el("th", {}, "before pu"), el("th", {}, "after pu"))),
        el("tbody", {}, before.map((v, i) => el("tr", {}, el("td", {}, i + 1), el("td", { class: "num" }, fmt(v, 4)), el("td", { class: "num" }, fmt(after[i], 4)))))));
  }
}
