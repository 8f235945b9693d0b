// Market view: each interval's bargaining rounds (prices converging), agreed trades, settlement, P2P vs conventional.
// One market day at a time (console/market_days.py): the server lists the days (`days`) and sends one day's
// intervals; the page asks for another by `?day=` when the operator picks it. A month in a pilot has ~3,000
// intervals: neither the picker nor a fetch holds them all (U7-10: the view ran on past 24 hours, no day).
import { api, dataTable, dayTime, el, svg, fmt, liveFeed, MARKET_CLOCK } from "./api.js";

const COLOURS = ["#1f5fa8", "#d98200", "#1b7f3b", "#8e3fa8", "#b3261e", "#2a9d8f", "#6b4f00"];

// How an interval's bargaining ended, saying only what its record holds. `converged`: its last two rounds'
// prices are the same (or one round). Prices still moving at the last round with trades agreed is no failure:
// the MGMCs stop at their rounds cap (the lab's accelerated clock fits 2) and agree on the standing positions.
// That it was the cap is said only where the record gives the chain's cap (`round_cap`) and the rounds are
// it, counted from the last reopening (`reopened_at`, the round a re-bargaining numbers on from).
// 'a reopening', 'the last of 2 reopenings' (U3-3: two read as 'after a reopening'); a record before `reopens`: one
function reopenings(k) {
  return (k ?? 1) > 1 ? `the last of ${k} reopenings` : "a reopening";
}

export function outcome(iv) {
  const n = iv.rounds, rounds = `${n} round${n === 1 ? "" : "s"}`;
  if (iv.forward) return `traded forward on the day-ahead exchange (session ${iv.forward}), no intraday bargaining`;
  if (iv.missed && !n && !iv.trades.length) return "nothing on the chain";  // listed for the miss alone
  if (!iv.trades.length) {  // a live record is `closed` once a trade closed it on the chain
    return iv.closed === false ? `no trade on the chain yet (${rounds} of offers)` : `no agreement (${rounds} of offers)`;
  }
  if (iv.converged) return n === 1 ? "agreed in round 1" : `converged in ${rounds}`;
  const played = n - (iv.reopened_at ?? 0);
  if (iv.round_cap && played === iv.round_cap) {
    return `agreed at the round cap (${played} rounds${iv.reopened_at ? ` after ${reopenings(iv.reopens)}, ${n} in all` : ""})`;
  }
  return `agreed after ${rounds}, prices still moving`;
}

// Who the welfare waits for, and whose record will not come (live records: console/live_market.py). A trader
// waited for holds the figures back; with them given (`partial`: some MG left out, trader or not) they are those of
// the MGs with records (`reporters`), their payments counted, and each MG left out is named (R42-5: one that did
// not trade dropped out unnamed, and the card read as whole).
function welfareNotes(w, reporters) {
  const missing = Object.entries(w.missing ?? {}), waiting = w.waiting ?? [];
  const whose = w.p2p === null ? "" : `: the figures are ${reporters.join(", ")}'s alone, with their P2P payments`;
  const waitingNote = w.p2p === null ? `waiting for the interval records of ${waiting.join(", ")}`
    : `no interval record yet of ${waiting.join(", ")}, which traded nothing${missing.length ? "" : whose}`;
  return [
    waiting.length ? el("p", { id: "welfare-waiting" }, el("small", {}, waitingNote)) : "",
    missing.length ? el("p", { id: "welfare-missing" }, el("small", {},
      `no interval record will come of ${missing.map(([mg, why]) => `${mg} (${why})`).join("; ")}${whose}`)) : "",
  ];
}

// MGs whose interval record could not be read (a cost that is NaN, Infinity or missing): named with the field,
// and left out of the costs and the welfare (live records: console/live_market.py `unreadable`).
function unreadableNote(unreadable) {
  const found = Object.entries(unreadable ?? {});
  return found.length ? el("p", { id: "records-unreadable", class: "failed" }, el("small", {},
    `unreadable interval record of ${found.map(([mg, why]) => `${mg} (${why})`).join("; ")}: left out of the costs and the welfare`)) : "";
}

function pricePlot(prices) {
  const W = 520, H = 250, L = 50, B = 30, T = 22, R = 90;
  const rounds = Math.max(1, ...prices.map((p) => p.round));
  const ys = prices.map((p) => p.price);
  let lo = Math.min(...ys), hi = Math.max(...ys);
  if (!isFinite(lo)) { lo = 0; hi = 1; }
  if (hi - lo < 1e-9) { lo -= 0.01; hi += 0.01; }
  const x = (r) => L + ((r - 1) / Math.max(1, rounds - 1)) * (W - L - R);
  const y = (p) => T + (1 - (p - lo) / (hi - lo)) * (H - T - B);
  const g = svg("svg", { viewBox: `0 0 ${W} ${H}`, class: "plot", id: "price-plot", width: W, height: H });
  g.append(svg("line", { x1: L, y1: H - B, x2: W - R, y2: H - B, class: "axis" }),
           svg("line", { x1: L, y1: T, x2: L, y2: H - B, class: "axis" }),
           svg("text", { x: (L + W - R) / 2, y: H - 4, class: "tick", "text-anchor": "middle" }, "bargaining round"),
           svg("text", { x: L - 4, y: 10, class: "tick", "text-anchor": "middle" }, "price"));
  for (let r = 1; r <= rounds; r++) g.append(svg("text", { x: x(r), y: H - B + 13, class: "tick", "text-anchor": "middle" }, r));
  for (const v of [lo, (lo + hi) / 2, hi]) g.append(svg("text", { x: L - 4, y: y(v) + 3, class: "tick", "text-anchor": "end" }, v.toFixed(3)));
  const sellers = [...new Set(prices.map((p) => p.seller))].sort();
  let labelY = -Infinity;  // end labels, top to bottom, at least 11 px apart
  const ends = sellers.map((s) => { const pts = prices.filter((p) => p.seller === s); return [s, pts[pts.length - 1].price]; })
    .sort((a, b) => b[1] - a[1]);
  const labelAt = {};
  for (const [s, p] of ends) { labelY = Math.max(y(p) + 4, labelY + 11); labelAt[s] = labelY; }
  sellers.forEach((s, i) => {
    const pts = prices.filter((p) => p.seller === s).sort((a, b) => a.round - b.round);
    const c = COLOURS[i % COLOURS.length];
    g.append(svg("polyline", { points: pts.map((p) => `${x(p.round)},${y(p.price)}`).join(" "), fill: "none", stroke: c, "stroke-width": 2 }));
    for (const p of pts) g.append(svg("circle", { cx: x(p.round), cy: y(p.price), r: 3, fill: c }));
    const last = pts[pts.length - 1];
    g.append(svg("text", { x: W - R + 6, y: labelAt[s], class: "tick", fill: c }, `${s} ${last.price.toFixed(3)}`));
  });
  return g;
}

// An interval the DSO node missed (it ended while the node was down: `missed`, why), in the feeder line's words:
// its trades, if any, went through with no network check (C5 said it on the Feeder view only).
function missedNote(iv) {
  return iv.missed
    ? el("p", { id: "missed", class: "alarm-box" }, `interval ${iv.interval}: missed, ${iv.missed}: not checked, no contract, no switching`)
    : "";
}

// The interval the view opens on and follows: the latest, but not one a day-ahead clear closed ahead of time and
// nobody has delivered yet (no MG's record, no settlement): a --dayahead lab closes the whole day at its start,
// and the view opened on 23:45 at 09:00 (U3).
function newest(intervals) {
  const due = intervals.filter((i) => !i.forward || Object.keys(i.cost_p2p).length || i.settlements.length);
  return (due.length ? due : intervals).at(-1).interval;
}

// An interval in the picker: its market day and hours where the server gives them, else its hours from interval 0.
function when(iv) {
  return dayTime(iv) ?? `${iv.hours[0]}–${iv.hours[1]} h`;
}

function dayLabel(d) {
  return `day ${d.day}: intervals ${d.first}–${d.last} (${d.intervals} listed${d.missed ? `, ${d.missed} missed by the DSO` : ""})`;
}

export class MarketView {
  // `day`: the market day the operator picked (null: the one the server follows, the newest); `follow`: the view
  // moves to each new interval the loop announces, until the operator picks an interval or a day
  constructor(root) { this.root = root; this.selected = null; this.day = null; }

  async start() {
    this.listen();
    const m = await api(this.day === null ? "/console/api/market" : `/console/api/market?day=${this.day}`);
    if (m.status !== "ready") {
      this.root.replaceChildren(el("h2", {}, "Market"), el("p", {}, m.status === "failed" ? `market data unavailable: ${m.error}` : (m.waiting || "computing the day's market…")));
      if (m.status === "computing") this.timer = setTimeout(() => this.start(), 1000);
      return;
    }
    this.market = m;
    if (this.follow && m.intervals.length) this.selected = newest(m.intervals);
    // the latest, as a live update shows; also where the day shown no longer holds the one selected
    if (!m.intervals.some((i) => i.interval === this.selected)) this.selected = newest(m.intervals);
    this.render();
  }

  pickDay(day) {  // only this day's intervals are fetched and listed
    this.day = day;
    this.follow = false;
    this.selected = null;
    this.start();
  }

  listen() {  // the closed loop announces each finished interval: show the new one
    if (this.source) return;
    this.source = liveFeed("/console/api/events");  // logs out when the session ended, as the other views
    this.source.addEventListener("interval", () => { this.follow = this.follow ?? true; this.start(); });
  }

  stop() { clearTimeout(this.timer); this.source?.close(); this.source = null; }

  render() {
    const m = this.market;
    const iv = m.intervals.find((i) => i.interval === this.selected);
    const picker = el("select", { id: "interval", onchange: (e) => {
      this.selected = Number(e.target.value); this.follow = false; this.day = m.day ?? null; this.render(); } },  // stays on its day
      m.intervals.map((i) => el("option", { value: i.interval, selected: i.interval === this.selected },
        `interval ${i.interval} (${when(i)}): ${i.trades.length} trade(s), ${i.forward ? "day-ahead" : `${i.rounds} round(s)`}${i.missed ? ", missed by the DSO" : ""}`)));
    const days = m.days ?? [];  // an older server's report has none: no day picker, every interval as before
    const dayPicker = days.length ? el("select", { id: "day", title: MARKET_CLOCK, onchange: (e) => this.pickDay(Number(e.target.value)) },
      days.map((d) => el("option", { value: d.day, selected: d.day === m.day }, dayLabel(d)))) : "";
    const whenShown = dayTime(iv);
    const mgs = Object.keys(iv.cost_p2p).sort();
    const totals = (key) => Object.fromEntries(mgs.map((g) => [g, m.intervals.reduce((s, i) => s + (i[key][g] || 0), 0)]));
    const tp = totals("cost_p2p"), tc = totals("cost_conventional");
    this.root.replaceChildren(
      el("h2", {}, "Market"), el("p", {}, el("small", {}, m.source)), dayPicker, " ", picker,
      whenShown ? el("p", { id: "interval-when", title: MARKET_CLOCK }, `interval ${iv.interval}: ${whenShown}`) : "",
      whenShown ? el("p", { id: "market-clock", class: "hint" }, el("small", {}, "Times are the market's clock: 00:00 is interval 0's start, not midnight.")) : "",
      missedNote(iv),
      el("div", { class: "grid2" },
        el("div", { class: "card" }, el("h2", {}, `Sellers' prices per round (interval ${iv.interval}: ${outcome(iv)})`),
          iv.prices.length ? pricePlot(iv.prices) : el("p", {}, iv.forward ? "no intraday offers: the day-ahead exchange's clear agreed these trades" : "no offers in this interval")),
        el("div", { class: "card" }, el("h2", { id: "welfare-title" }, iv.welfare.partial ? "Welfare (partial)" : "Welfare"),
          el("table", {}, el("tbody", {},
            ["p2p", "conventional", "central"].map((k) => el("tr", {}, el("th", {}, k), el("td", { class: "num" }, fmt(iv.welfare[k], 3)))))),
          welfareNotes(iv.welfare, mgs))),
      el("div", { class: "card" }, el("h2", {}, "Agreed trades and settlement"),
        dataTable({ id: "trades" }, ["seller", "buyer", "kWh", "price", "delivered kWh", "paid", "settled"],
          iv.trades.map((t) => {
            const s = iv.settlements.find((x) => x.seller === t.seller && x.buyer === t.buyer);
            return el("tr", {}, el("td", {}, t.seller), el("td", {}, t.buyer), el("td", { class: "num" }, fmt(t.quantity_kwh, 2)),
              el("td", { class: "num" }, fmt(t.price, 3)), el("td", { class: "num" }, s ? fmt(s.delivered_kwh, 2) : "—"),
              el("td", { class: "num" }, s ? fmt(s.amount, 3) : "—"), el("td", {}, s ? (s.ok ? "yes" : "refused") : "pending"));
          }))),
      el("div", { class: "card" }, el("h2", {}, `Cost per MG: P2P against the conventional market (this interval / whole ${m.day == null ? "day" : `day ${m.day}`})`),
        dataTable({ id: "costs" }, ["MG", "P2P", "conventional", "saving", "day P2P", "day conventional", "day saving"],
          mgs.map((g) => el("tr", {}, el("td", {}, g),
            el("td", { class: "num" }, fmt(iv.cost_p2p[g], 3)), el("td", { class: "num" }, fmt(iv.cost_conventional[g], 3)),
            el("td", { class: "num" }, fmt(iv.cost_conventional[g] - iv.cost_p2p[g], 3)),
            el("td", { class: "num" }, fmt(tp[g], 2)), el("td", { class: "num" }, fmt(tc[g], 2)),
            el("td", { class: "num" }, fmt(tc[g] - tp[g], 2))))),
        unreadableNote(iv.unreadable)));
  }
}
