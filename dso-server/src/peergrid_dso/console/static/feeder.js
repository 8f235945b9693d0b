// Feeder view: the one-line diagram, live over server-sent events; operators switch with a confirmation step.
import { api, canOperate, dataTable, dayTime, el, svg, toast, fmt, liveFeed, MARKET_CLOCK } from "./api.js";

const DX = 46, DY = 58, PAD = 30;

// The newest interval's network check and whom the DSO asked to adjust, each contract with the start of its txid
// as the Ledger view shows it (U3: the line said "2 adjustment(s)" and nothing of whom, how much or where).
function loopDetail(iv) {
  const lines = [];
  if (iv.vmin_before != null && iv.vmin_pu != null) lines.push(`lowest voltage ${fmt(iv.vmin_before, 4)} → ${fmt(iv.vmin_pu, 4)} pu`);
  for (const a of iv.adjusted || []) {
    const limit = [a.min_kw != null ? `≥ ${fmt(a.min_kw, 1)} kW` : "", a.max_kw != null ? `≤ ${fmt(a.max_kw, 1)} kW` : ""].filter(Boolean).join(", ");
    lines.push(`asked ${a.mg} to inject ${limit} (iteration ${a.iteration}${a.txid ? `, adjustment_contract ${a.txid.slice(0, 12)}…` : ""})`);
  }
  if (iv.rebargained) lines.push(`the MGMCs re-bargained ${iv.rebargained} time(s) (market.reopen on the MGMC chain)`);
  // an interval not reopened (a day-ahead clear closed it, nobody offered, ...): they re-planned, saying what they kept
  if (iv.replanned) lines.push(`the MGMCs re-planned ${iv.replanned} time(s) within their limits, ${iv.replanned_kept} (not reopened, not re-bargained)`);
  return lines.length ? el("ul", { class: "loop-detail", id: "loop-detail" }, lines.map((t) => el("li", {}, t))) : "";
}

// The newest interval's verdict in a line. One the node missed (over while it was down) has no verdict, its
// `secure` null: it says missed and why, never "INSECURE" (C5: an unchecked interval read as an insecure one).
// Its market day and hours where the server gives them (U7-10: 'interval 52' on a pilot's third day said no day).
function loopLine(iv) {
  const when = dayTime(iv), name = `interval ${iv.interval}${when ? ` (${when})` : ""}`;
  if (iv.missed) return `${name}: missed, ${iv.missed}: not checked, no contract, no switching`;
  return `${name}: ${iv.error ? "DSO failed" : (iv.secure ? "secure" : "INSECURE")}, ` +
    `${iv.switch_ops} switch op(s), ${iv.adjustments} adjustment(s), DSO chain height ${iv.height}`;
}

function voltageColour(bus, lo, hi) {
  if (bus.status === "dead") return "#999";
  if (bus.status !== "ok") return "#b3261e";
  const t = Math.max(0, Math.min(1, (bus.vm_pu - lo) / (hi - lo)));  // 0 at the floor, 1 at the ceiling
  if (t < 0.25) return "#d98200";  // close to the lower limit
  return "#1b7f3b";
}

function loadingColour(loading) {
  if (loading === null) return "#9aa5ad";
  if (loading > 1) return "#b3261e";
  if (loading > 0.8) return "#d98200";
  return "#2f6f9f";
}

// What the DSO's check before a step would refuse in a previewed state, in words, or "" (U3: a preview at 0.9055 pu
// under a 0.91 floor offered Confirm without a word, and the operation was then refused).
function below(preview, snapshot) {
  const limit = snapshot?.vmin_limit;
  if (limit !== undefined && preview.vmin_pu < limit) {
    return `The lowest voltage would be ${fmt(preview.vmin_pu, 4)} pu, below the ${limit} pu floor: the DSO's check before the step will refuse it.`;
  }
  if (preview.max_loading > 1) return `A branch would be loaded ${fmt(100 * preview.max_loading, 0)} %: the DSO's check before the step will refuse it.`;
  return "";
}

export class FeederView {
  constructor(root) {
    this.root = root;
    this.diagram = el("div", { class: "card", id: "diagram" });
    this.side = el("div");
    this.panel = el("div", { class: "card", id: "switch-panel", hidden: true });
    root.replaceChildren(el("h2", {}, "Feeder"), el("div", { class: "grid2" }, el("div", {}, this.diagram, this.panel), this.side));
    this.snapshot = null;
  }

  async start() {
    const run = (this.run = (this.run ?? 0) + 1);
    const first = await api("/console/api/feeder");
    if (run !== this.run) return;  // left (or opened again) while the first answer came: no feed of its own (R34-5)
    this.render(first);
    this.source = liveFeed("/console/api/events");  // logs out when the session ended, also by a restart
    this.source.addEventListener("feeder", (ev) => this.render(JSON.parse(ev.data)));
  }

  stop() { this.run = (this.run ?? 0) + 1; this.source?.close(); this.source = null; }

  render(s) {
    this.snapshot = s;
    const pos = new Map(s.buses.map((b) => [b.id, [PAD + b.x * DX, PAD + b.y * DY]]));
    const width = PAD * 2 + 70 + DX * Math.max(...s.buses.map((b) => b.x));
    const height = PAD * 2 + DY * Math.max(...s.buses.map((b) => b.y)) + 20;
    const g = svg("svg", { class: "oneline", viewBox: `0 0 ${width} ${height}`, "data-version": s.version,
                           role: "img", "aria-label": `one-line diagram of ${s.feeder}` });
    for (const br of s.branches) {
      const [x1, y1] = pos.get(br.from), [x2, y2] = pos.get(br.to);
      let d;
      if (br.tie) {  // ties arc below the runs they join
        const my = Math.max(y1, y2) + DY * 0.62;
        d = `M${x1},${y1} C${x1},${my} ${x2},${my} ${x2},${y2}`;
      } else {
        d = y1 === y2 ? `M${x1},${y1} L${x2},${y2}` : `M${x1},${y1} L${x1},${y2} L${x2},${y2}`;
      }
      const w = br.loading === null ? 1.5 : 1.5 + 3 * Math.min(1.2, br.loading);
      const path = svg("path", { d, class: `branch ${br.closed ? "closed" : "open"}`,
        stroke: loadingColour(br.loading), "stroke-width": w });
      path.append(svg("title", {}, `branch ${br.number} (${br.from}–${br.to}) ${br.closed ? "closed" : "open"}` +
        (br.loading === null ? "" : `, loading ${(100 * br.loading).toFixed(0)} %, ${fmt(br.p_kw)} kW`)));
      g.append(path);
      // the switch sits mid-branch: on a tie, the Bezier curve's point at t = 1/2
      const mx = (x1 + x2) / 2;
      const my = br.tie ? (y1 + y2 + 6 * (Math.max(y1, y2) + DY * 0.62)) / 8 : y2;
      const sw = svg("rect", { x: mx - 5, y: my - 5, width: 10, height: 10,
        class: `switch ${br.closed ? "closed" : "open"}${canOperate() ? "" : " readonly"}`,
        "data-branch": br.number, "data-closed": String(br.closed),
        onclick: () => this.askSwitch(br) });
      sw.append(svg("title", {}, `switch on branch ${br.number}: ${br.closed ? "closed" : "open"}`));
      g.append(sw);
      if (br.relay_reports) {  // the relay watch: its relay reports otherwise (or cannot be read)
        const ring = svg("circle", { cx: mx, cy: my, r: 10, class: "relay-off", "data-branch": br.number, "data-reports": br.relay_reports });
        ring.append(svg("title", {}, `relay on branch ${br.number} reports ${br.relay_reports}; the DSO holds it ${br.closed ? "closed" : "open"}`));
        g.append(ring);
      }
    }
    for (const mg of s.mgs) {
      const [x, y] = pos.get(mg.bus);
      g.append(svg("path", { d: `M${x},${y - 8} l-7,-12 h14 z`, class: "mg" }));
      g.append(svg("text", { x: x + 9, y: y - 14, class: "mglabel" }, `${mg.mg} ${mg.p_kw > 0 ? "+" : ""}${fmt(mg.p_kw, 0)} kW`));
    }
    for (const b of s.buses) {
      const [x, y] = pos.get(b.id);
      const c = svg("circle", { cx: x, cy: y, r: b.root ? 7 : 5, class: `bus ${b.status}`,
        fill: voltageColour(b, s.vmin_limit, s.vmax_limit), "data-bus": b.id, "data-status": b.status });
      c.append(svg("title", {}, `bus ${b.id}: ${b.vm_pu === null ? "—" : b.vm_pu.toFixed(4)} pu (${b.status})`));
      g.append(c, svg("text", { x: x - 4, y: y + 16, class: "busid" }, b.id));
    }
    this.diagram.replaceChildren(g, el("div", { class: "legend" },
      el("span", {}, "bus colour: green within limits, amber near the floor, red outside ",
         `${s.vmin_limit}–${s.vmax_limit} pu`),
      el("span", {}, "line colour/width: loading (blue < 80 %, amber, red > 100 %); dashed: open"),
      el("span", {}, "■ closed switch, □ open switch", canOperate() ? " (click to operate)" : " (read-only: viewer)"),
      s.branches.some((b) => b.relay_reports) ? el("span", { class: "failed" }, "◯ red ring: its relay reports another position or cannot be read (Operations → Relay positions)") : ""));
    this.side.replaceChildren(
      el("div", { class: "card" }, el("h2", {}, "State"),
        el("table", {}, el("tbody", {},
          el("tr", {}, el("th", {}, "losses"), el("td", { class: "num", id: "losses" }, `${fmt(s.losses_kw)} kW`)),
          el("tr", {}, el("th", {}, "lowest voltage"), el("td", { class: "num", id: "vmin" }, `${fmt(s.vmin_pu, 4)} pu`)),
          el("tr", {}, el("th", {}, "highest loading"), el("td", { class: "num" }, `${fmt(100 * s.max_loading, 0)} %`)),
          el("tr", {}, el("th", {}, "open branches"), el("td", { id: "open-branches" }, s.open_branches.join(", "))),
          ...(s.interval ? [el("tr", {}, el("th", {}, "closed loop"), el("td", { id: "loop-interval", "data-interval": s.interval.interval, title: dayTime(s.interval) && MARKET_CLOCK },
            loopLine(s.interval), loopDetail(s.interval))),
            // what the diagram, the injections and the power flow's alarms show: an outcome, never an iteration (U3-2)
            el("tr", {}, el("th", {}, "drawn"), el("td", { id: "drawn-from" }, s.interval.drawn == null ? "no interval's outcome yet" :
              `the injections interval ${s.interval.drawn} ended with; the interval the DSO is checking now is drawn once it is done`))] : [])))),
      el("div", { class: "card" }, el("h2", {}, "MG injections"),
        dataTable({}, ["MG", "bus", "kW"],
          s.mgs.map((m) => el("tr", {}, el("td", {}, m.mg), el("td", {}, m.bus), el("td", { class: "num" }, fmt(m.p_kw)))))),
      el("div", { class: "card" }, el("h2", {}, `Alarms (${s.alarms.length})`),
        s.alarms.length ? el("ul", { class: "alarms", id: "alarms", title: s.interval && dayTime(s.interval) && MARKET_CLOCK }, s.alarms.map((a) => el("li", {}, a)))
                        : el("p", { id: "alarms" }, el("small", {}, "none"))));
  }

  async askSwitch(br) {
    if (!canOperate()) { toast("viewers cannot operate switches"); return; }
    const close = !br.closed;
    this.panel.hidden = false;
    this.panel.replaceChildren(el("p", {}, `Checking: ${close ? "close" : "open"} branch ${br.number}…`));
    let preview;
    try {
      preview = await api(`/console/api/switches/${br.number}/preview`, { method: "POST", body: { close } });
    } catch (e) { this.panel.replaceChildren(el("p", { class: "error" }, e.message)); return; }
    const cancel = el("button", { class: "secondary", type: "button", onclick: () => { this.panel.hidden = true; } }, "Cancel");
    if (!preview.ok) {
      this.panel.replaceChildren(el("p", { class: "error" }, `Refused by interlock: ${preview.reason}`), cancel);
      return;
    }
    const confirm = el("button", { type: "button", id: "confirm-switch", onclick: async () => {
      confirm.disabled = true;
      confirm.after(el("span", { id: "switch-progress" }, ` commanding the relay on branch ${br.number} and reading it back…`));
      try {
        const r = await api(`/console/api/switches/${br.number}/operate`, { method: "POST", body: { close, confirm: preview.confirm } });
        toast(r.ok ? `branch ${br.number} ${close ? "closed" : "opened"}; recorded as "${r.plan}"` : `branch ${br.number} not ${close ? "closed" : "opened"}: ${r.alarm || "switching failed"}`);
        this.panel.hidden = true;
      } catch (e) { this.panel.replaceChildren(el("p", { class: "error" }, e.message), cancel); }
    } }, `Confirm: ${close ? "close" : "open"} branch ${br.number}`);
    this.panel.replaceChildren(
      el("h2", {}, `${close ? "Close" : "Open"} branch ${br.number}?`),
      el("p", {}, `After the operation: losses ${fmt(preview.losses_kw)} kW, lowest voltage ${fmt(preview.vmin_pu, 4)} pu, ` +
        `highest loading ${fmt(100 * preview.max_loading, 0)} %, ${preview.radial ? "radial" : "MESHED (not radial)"}.`),
      // The executor checks each step against the floor and the ratings before it commands a relay: say so here
      below(preview, this.snapshot) ? el("p", { class: "error", id: "switch-limit" }, below(preview, this.snapshot)) : "",
      confirm, " ", cancel);
  }
}
