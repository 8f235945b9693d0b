"""The testbed report's page: report.json's document drawn as one self-contained report.html.

Promises: `html(report)` returns the page for a document as `report.write_report` builds it - checks, welfare
(as costs, with the share of the achievable gain: `share_of_gain`, the bench's figure), each MG's cost and its
bound (the `rationality` section, each MG's cause and the intervals a DSO limit bound it; a `dso_cost` not
known shown as unknown, not 0), the day-ahead make-whole (`uplift`; one line where no session claimed one),
prices per bargaining round, voltage profiles, block times, the ledger table and the end-of-run quiesce (as
plain fields), pacing, re-bargaining (how the MGMCs answered each iteration), switch operations, device faults,
trades (forward or intraday; without any bargaining round a line says why, not an empty plot; a check not run
says why: `not_checked`) - with inline SVG charts (`report_svg`), no script and no network; sellers and buyers
by MG where the document's `anonyms` names them (anonym in brackets), else by anonym, with one line for each of
the lab's anonym key files the report did not read, saying why (`anonyms_unread`). Pure: reads nothing but its argument. A document from before any of
these sections or keys is still drawn.
"""

from __future__ import annotations

import html as h
import json
from typing import Any

from peergrid_sim.report_svg import bars, lines

NO_UPLIFT = (
    "No day-ahead session claimed a make-whole on the MGMC chain (a lab holds day-ahead sessions only with"
    " --dayahead)."
)


def _span(intervals: list[int]) -> str:
    """The intervals the run traded, as the page's first line names them."""
    return f"intervals {intervals[0]}..{intervals[-1]}" if intervals else "no interval traded"


def _why(report: dict[str, Any], check: str) -> str:
    """The check's sentence (`report_why.check_why`, kept in the report as `check_why`), after its verdict."""
    said = (report.get("check_why") or {}).get(check)
    return f" &mdash; {h.escape(said)}" if said else ""


def html(report: dict[str, Any]) -> str:
    """The whole page for one report document (as `report.write_report` builds it)."""
    prices = report["prices_per_round"]
    # sellers and buyers by MG where report.json names their anonyms (the lab's keys), else by anonym
    mg_of = {anonym[:8]: mg for anonym, mg in (report.get("anonyms") or {}).items()}

    def who(anonym: str) -> str:
        mg = mg_of.get(anonym[:8])
        return anonym[:8] if mg is None else f"{mg} ({anonym[:8]})"

    # a key file not read leaves its MG shown by anonym: the page says which file and why, not a silent hex
    unread = "".join(
        f"<p>{h.escape(line)}: its MG's sellers and buyers are shown by anonym.</p>"
        for line in report.get("anonyms_unread") or []
    )
    by_anonym = unread or (
        ""
        if mg_of
        else "<p>Sellers by anonym: this report names no MG's anonym (the lab's keys were not read).</p>"
    )

    price_series: dict[str, list[tuple[float, float]]] = {}
    x = 0
    for t in report["intervals"]:
        for rnd in prices.get(str(t), []):
            for seller, price in rnd["prices"].items():
                price_series.setdefault(who(seller), []).append((x, price))
            x += 1
    price_series = dict(sorted(price_series.items()))
    first_v = next(iter(report["voltages"]), None)
    last_v = report["voltages"][-1] if report["voltages"] else None
    volt = {}
    if first_v:
        volt["before (first interval)"] = list(enumerate(first_v["before"]["voltages"], 1))
        volt["after (first interval)"] = list(enumerate(first_v["after"]["voltages"], 1))
    if last_v:
        volt["after (last interval)"] = list(enumerate(last_v["after"]["voltages"], 1))
    mgs = sorted(report["mg_cost_p2p"])
    welfare = report["welfare"]
    chains = report["ledger"]
    rows = "".join(
        f"<tr><td>{tr['interval']}</td><td>{h.escape(who(tr['seller']))}</td><td>{h.escape(who(tr['buyer']))}</td>"
        f"<td>{tr['quantity_kwh']:.3f}</td><td>{tr['price']:.3f}</td><td>{_market(tr)}</td></tr>"
        for tr in report["trades"][:400]
    )
    not_checked = report.get("not_checked") or {}
    checks = "".join(
        f"<li><b>{h.escape(k)}</b>: {h.escape(not_checked[k] if v is None and k in not_checked else str(v))}"
        f"{_why(report, k)}{_dearer(report) if k == 'p2p_not_dearer' else ''}</li>"
        for k, v in report["checks"].items()
    )
    sw = "".join(
        f"<tr><td>{o['interval']}</td><td>{o['branch']}</td><td>{'close' if o['close'] else 'open'}</td><td>{o['ok']}</td></tr>"
        for o in report["switch_operations"]
    )
    ledger_rows = "".join(
        f"<tr><td>{c}</td><td>{v['lowest_head']}</td><td>{v['head_spread']}</td><td>{v['identical_heads']}</td>"
        f"<td>{v['block_time_ms']['p50']}</td><td>{v['block_time_ms']['max']}</td><td>{v['round_changes']}</td>"
        f"<td>{sum(v.get('round_timeouts', {}).values())}</td></tr>"
        for c, v in chains.items()
    )
    pace = report.get("pacing", [])
    pace_plot = {
        "switching done (s after slot start)": [(p["interval"], p["switched_after_s"]) for p in pace
                                                if p["switched_after_s"] is not None],
        "slot length": [(p["interval"], report["interval_s"]) for p in pace],
    }  # fmt: skip
    pace_rows = "".join(
        f"<tr><td>{p['interval']}</td><td>{p['started_late_s']}</td><td>{p['switched_after_s']}</td>"
        f"<td>{p['overrun_s'] or ''}</td></tr>"
        for p in pace
    )

    def contract_text(c: dict[str, Any]) -> str:
        low = c["min_injection_w"] is not None
        watts = c["min_injection_w"] if low else c["max_injection_w"]
        return f"{c['mg']} {'≥' if low else '≤'} {watts / 1000:.1f} kW"

    rebargain_rows = "".join(
        f"<tr><td>{rb['interval']}</td><td>{it['iteration']}</td>"
        f"<td>{h.escape(', '.join(contract_text(c) for c in rb['contracts'] if c.get('iteration') == it['iteration']))}</td>"
        f"<td>{h.escape(_answer(it))}</td>"
        f"<td>{h.escape(', '.join(it['missing']) or '-')}</td><td>{it['secure']}</td>"
        f"<td>{h.escape(str(rb['unmet'] or ''))}</td></tr>"
        for rb in report.get("rebargaining", [])
        for it in rb["iterations"]
    )
    bound_rows = "".join(
        f"<tr><td>{h.escape(mg)}</td><td>{e['risk_allowance']:.2f}</td><td>{_num(e.get('bound'))}</td>"
        f"<td>{_num(e.get('cost_p2p'))}</td><td>{e.get('within', '')}</td><td>{h.escape(str(e['guard_mode']))}</td>"
        f"<td>{_dso_cost(e)}</td><td>{_num(e.get('budget_left'))}</td></tr>"
        for mg, e in sorted((report.get("rationality") or {}).get("mgs", {}).items())
    )
    uplift = report.get("uplift") or {}
    uplift_rows = "".join(
        f"<tr><td>{h.escape(u['session'])}</td><td>{u['settled']}</td><td>{u.get('funded', '')}</td>"
        f"<td>{_micro(u.get('owed'))}</td><td>{_micro(u.get('surplus'))}</td><td>{_by_mg(u['claims'], 'gain')}</td>"
        f"<td>{_by_mg(u.get('credits', {}))}</td><td>{_by_mg(u.get('charges', {}))}</td>"
        f"<td>{_by_mg(u.get('moved', {}))}</td><td>{u.get('balances_match', '')}</td>"
        f"<td>{_fee_path(u)}</td></tr>"
        for u in uplift.get("sessions", [])
    )
    # a run without a day-ahead session has nothing to make whole: one line says so, not an empty table (and
    # a chain the report could not read says only that, below)
    uplift_table = (
        "<table><tr><th>session</th><th>settled</th><th>funded</th><th>owed</th><th>payers' surplus</th>"
        "<th>gains claimed</th><th>credits</th><th>charges</th><th>balances moved</th><th>as recorded</th>"
        f"<th>exchange fee: collected, refunds, fund</th></tr>{uplift_rows}</table>"
        if uplift_rows
        else ""
        if uplift.get("error")
        else f"<p>{NO_UPLIFT}</p>"
    )
    day = uplift.get("day")
    day_line = (
        ""
        if day is None
        else (
            f"Each MG's balance change over the chain = its trades - fee - charge + credit + refund: {day['match']}"
        )
    )
    return f"""<!doctype html><html><head><meta charset="utf-8"><title>peergrid testbed report</title>
<style>body{{font-family:sans-serif;margin:2em;max-width:1100px}}table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:2px 6px;font-size:13px}}</style></head><body>
<h1>peergrid testbed report</h1><p>{h.escape(report["scenario"])}: {_span(report["intervals"])}
({report["interval_s"]} s each)</p>
<h2>Checks</h2><ul>{checks}</ul>
<h2>Welfare</h2>{_welfare(welfare)}
<h2>Each MG's cost: P2P vs conventional</h2>{bars(mgs, {"P2P": [report["mg_cost_p2p"][m] for m in mgs], "conventional": [report["mg_cost_conventional"][m] for m in mgs]})}
<h2>Each MG's bound: conventional day + its owner's risk allowance</h2><table><tr><th>MG</th><th>allowance</th>
<th>bound</th><th>P2P day</th><th>within</th><th>guard</th><th>DSO's part (dso_cost)</th><th>budget left</th></tr>{bound_rows}</table>
<p>{h.escape("; ".join((report.get("rationality") or {}).get("errors", [])))}</p>
{_causes(report)}
<h2>Day-ahead make-whole (uplift, currency)</h2>{uplift_table}<p>{h.escape(day_line)} {h.escape(str(uplift.get("error", "")))}</p>
<h2>Prices per bargaining round</h2>{lines(price_series, "round (all intervals)", "price / kWh") if price_series else _no_rounds(report)}
{by_anonym}
<h2>Voltage profiles</h2>{lines(volt, "bus", "voltage (pu)")}
<h2>Block times (ms, MGMC chain)</h2>{lines({"block gap": list(enumerate(chains.get("mgmc", {}).get("block_times_series", [])))}, "block", "ms")}
<h2>Ledger</h2><table><tr><th>chain</th><th>lowest head</th><th>head spread</th><th>identical heads</th><th>p50 block ms</th><th>max block ms</th><th>blocks decided after a round change</th><th>round timeouts (all replicas)</th></tr>{ledger_rows}</table>
<h3>End of run (the coordinated halt)</h3>{_end_of_run(report.get("quiesce"))}
<h2>Pacing on the accelerated clock ({report.get("overruns", 0)} of {len(pace)} intervals overran their slot)</h2>
{lines(pace_plot, "interval", "s")}
<table><tr><th>interval</th><th>started late (s)</th><th>switching done (s after slot start)</th><th>overran (s)</th></tr>{pace_rows}</table>
<h2>Re-bargaining after adjustment contracts (design step 6)</h2><table><tr><th>interval</th><th>iteration</th>
<th>contracts</th><th>the MGMCs</th><th>missing</th><th>secure after</th><th>unmet</th></tr>{rebargain_rows}</table>
<h2>Switch operations</h2><table><tr><th>interval</th><th>branch</th><th>op</th><th>ok</th></tr>{sw}</table>
<h2>Device faults</h2><pre>{h.escape(json.dumps(report["device_faults"], indent=1))}</pre>
<h2>{_trades_title(report["trades"])}</h2><table><tr><th>interval</th><th>seller</th><th>buyer</th><th>kWh</th><th>price</th>
<th>traded</th></tr>{rows}</table>
</body></html>"""


def share_of_gain(p2p: float, conventional: float, central: float | None) -> float | None:
    """The share of the achievable gain the market captured, as the bench reports it:
    (W_p2p - W_conv) / (W_central - W_conv); 1 is the centralised optimum, 0 no better than the conventional
    market. None without a centralised optimum or where it gains nothing over the conventional market: no more
    than the bench's 1e-6 or a millionth of the conventional cost (the optimum is an LP's, within its tolerance),
    or less (an optimum worse than the conventional market is no optimum to share against)."""
    if central is None or central - conventional <= max(1e-6, 1e-6 * abs(conventional)):
        return None
    return (p2p - conventional) / (central - conventional)


def _welfare(welfare: dict[str, Any]) -> str:
    """The three figures as costs (welfare is minus the cost, so every figure in report.json is negative) and
    the share of the achievable gain: P2P / central of two negatives read as if P2P beat the optimum (U1)."""
    central = welfare.get("central")
    share = welfare.get("share_of_gain")
    if share is None:  # a report.json from before the key
        share = share_of_gain(welfare["p2p"], welfare["conventional"], central)
    said = (
        f"The P2P market captured <b>{share:.1%} of the achievable gain</b>"
        if share is not None
        else "No share of the achievable gain: "
        + ("no centralised optimum to compare with" if central is None else "the optimum gains nothing here")
    )
    costs = (("P2P market", welfare["p2p"]), ("conventional market", welfare["conventional"]),
             ("centralised optimum", central))  # fmt: skip
    rows = "".join(
        f"<tr><td>{name}</td><td>{'not computed' if w is None else f'{-w:.2f}'}</td></tr>"
        for name, w in costs
    )
    return (
        f"<p>{said}. The share is (W_p2p - W_conv) / (W_central - W_conv), welfare W being minus the cost of "
        "the run's intervals: 100% is the centralised optimum, 0% no better than the conventional market.</p>"
        f"<table><tr><th></th><th>cost over the run's intervals (currency; welfare = -cost)</th></tr>{rows}</table>"
    )


def _end_of_run(quiesce: Any) -> str:
    """The quiesce record (`quiesce.quiesced`) as a small table of plain fields, escaped; one line without one."""
    if not isinstance(quiesce, dict):
        return (
            "<p>No end-of-run record (records/quiesce.json): the run did not reach its coordinated halt.</p>"
        )
    halt = quiesce.get("halt") or {}
    rows = [
        ("every replica of both chains on the halt height with the same head", _yes_no(quiesce.get("ok"))),
        ("waited for the halt (s)", quiesce.get("waited_s")),
        ("of which from the halt to every replica on it (s)", quiesce.get("halt_s")),
        ("halt heights", ", ".join(f"{chain} {height}" for chain, height in sorted(halt.items()))),
        (
            "transactions pending at the halt / at the end",
            f"{quiesce.get('pending_at_halt')} / {quiesce.get('pending')}",
        ),
    ]
    for chain, heads in sorted((quiesce.get("heads") or {}).items()):
        rows.append((f"heads on {chain}", _heads(heads)))
    body = "".join(
        f"<tr><td>{h.escape(name)}</td><td>{h.escape(str(value))}</td></tr>" for name, value in rows
    )
    return f"<table>{body}</table>"


def _heads(heads: dict[str, Any]) -> str:
    """'all 7 replicas at 126 (b355c594)' where they agree, else each replica's height and hash."""
    found = {
        node: (head[0], head[1]) if isinstance(head, (list, tuple)) and len(head) == 2 else (str(head), "?")
        for node, head in sorted(heads.items())
    }
    if len(set(found.values())) == 1:
        height, head_hash = next(iter(found.values()))
        return f"all {len(found)} replicas at {height} ({str(head_hash)[:8]})"
    return "; ".join(
        f"{node} at {height} ({str(head_hash)[:8]})" for node, (height, head_hash) in found.items()
    )


def _dso_cost(entry: dict[str, Any]) -> str:
    """The guard's DSO part: a number, or 'unknown' and why where no record of the run carries one (the guard
    off: shown as 0.00 before D4, which hid a DSO-limited MG's cost); a sum over some records says so."""
    known, why = entry.get("dso_cost"), entry.get("dso_cost_unknown")
    if not isinstance(known, (int, float)):
        return f"unknown ({h.escape(str(why))})" if why else "unknown"
    return f"{known:.2f}" + (f" ({h.escape(str(why))})" if why else "")


def _dearer(report: dict[str, Any]) -> str:
    """After a failed `p2p_not_dearer`: each MG past its bound and its cause (`report_bound`)."""
    dearer = (report.get("rationality") or {}).get("dearer") or {}
    return "".join(f"<br>{h.escape(mg)}: {h.escape(str(why))}" for mg, why in sorted(dearer.items()))


def _causes(report: dict[str, Any]) -> str:
    """Each MG's cause in one line and the intervals a DSO limit bound it: the limit, whether it met it, its plan
    before and its offer after, the forward trades it held there and that interval's P2P and conventional cost."""
    mgs = sorted(((report.get("rationality") or {}).get("mgs") or {}).items())
    causes = "".join(
        f"<li><b>{h.escape(mg)}</b>: {h.escape(e['cause'])}</li>" for mg, e in mgs if e.get("cause")
    )
    rows = "".join(
        f"<tr><td>{h.escape(mg)}</td><td>{t['interval']}</td>"
        f"<td>{h.escape('; '.join(_limit_text(c) for c in t['limits']) or '-')}</td><td>{_met_text(t['met'])}</td>"
        f"<td>{_num(t.get('injection_kw'))}</td><td>{_num(t.get('final_injection_kw'))}</td>"
        f"<td>{h.escape(_held_text(t))}</td><td>{_num(t.get('cost_p2p'))}</td>"
        f"<td>{_num(t.get('cost_conventional'))}</td><td>{_signed(t.get('above_conventional'))}</td></tr>"
        for mg, e in mgs
        for t in e.get("dso_limited") or []
    )
    table = (
        "<table><tr><th>MG</th><th>interval</th><th>DSO limit</th><th>met</th><th>planned kW</th>"
        "<th>offered kW</th><th>forward trades held</th><th>P2P</th><th>conventional</th><th>P2P - conventional</th>"
        f"</tr>{rows}</table>"
        if rows
        else "<p>No DSO limit bound any MG in the run's intervals.</p>"
        if mgs
        else ""
    )
    return (f"<ul>{causes}</ul>" if causes else "") + table


def _limit_text(contract: dict[str, Any]) -> str:
    """'≥ -280.16 kW (bus 32 voltage …)': the contract's bound (either side, or both) and the DSO's reason."""
    low, high = contract.get("min_injection_w"), contract.get("max_injection_w")
    bounds = []
    if isinstance(low, (int, float)):
        bounds.append(f"≥ {low / 1000:.2f} kW")
    if isinstance(high, (int, float)):
        bounds.append(f"≤ {high / 1000:.2f} kW")
    return f"{' and '.join(bounds) or 'no bound'} ({contract.get('reason') or 'no reason given'})"


def _held_text(limited: dict[str, Any]) -> str:
    kwh = limited.get("forward_kwh") or {}
    held = ", ".join(f"{side} {q:.3f} kWh" for side, q in kwh.items() if q)
    return f"{held} ({limited['forward']})" if held else "none"


def _met_text(met: Any) -> str:
    """Whether the MG met its limit ('no answer': the record holds the limit but no answer to it)."""
    return "no answer" if met is None else _yes_no(met)


def _signed(value: Any) -> str:
    return "" if not isinstance(value, (int, float)) else f"{value:+.2f}"


def _market(trade: dict[str, Any]) -> str:
    """Where a trade was agreed: forward on the day-ahead exchange (its session) or bargained intraday."""
    session = trade.get("forward")
    return "intraday" if not session else f"forward, day-ahead session {h.escape(str(session))}"


def _trades_title(trades: list[dict[str, Any]]) -> str:
    """'Trades' (all bargained intraday), or how many were traded forward on the day-ahead exchange (U3: a
    --dayahead lab's 300 forward trades were titled 'Trades' as if bargained)."""
    forward = sum(1 for tr in trades if tr.get("forward"))
    if not forward:
        return "Trades"
    return f"Trades: {forward} forward on the day-ahead exchange, {len(trades) - forward} bargained intraday"


def _no_rounds(report: dict[str, Any]) -> str:
    """In place of an empty price plot: why no interval has a bargaining round (U3: a --dayahead lab drew an
    empty 'Prices per bargaining round' plot, every interval traded forward)."""
    forward = sorted({tr["interval"] for tr in report["trades"] if tr.get("forward")})
    if forward and set(forward) >= set(report["intervals"]):
        return (
            f"<p>No bargaining round: every interval the run traded ({len(forward)}) was traded forward on the"
            " day-ahead exchange, nothing intraday.</p>"
        )
    return "<p>No bargaining round was recorded in the run's intervals.</p>"


def _answer(iteration: dict[str, Any]) -> str:
    """How the MGMCs answered an iteration's contracts (the DSO record's `answer`; a record from before it: by
    whether the interval was reopened)."""
    said = iteration.get("answer")
    if said:
        return str(said)
    return "re-bargained" if iteration.get("reopened") is not None else "re-planned, trades kept"


def _yes_no(value: Any) -> str:
    return "yes" if value is True else "no" if value is False else str(value)


def _fee_path(session: dict[str, Any]) -> str:
    """A fee session's collection, refunds and fund (`report_fee.fee_figures`), escaped; '' without a fee."""
    fee = session.get("fee_path")
    if not fee:
        return ""
    refunds = _by_mg(session.get("refunds", {})) or "-"
    return (
        f"{fee['fee'] / 1e6:g} per Wh a side; collected {_by_mg(fee['collected'])} (as due: {fee['fees_match']}); "
        f"refunds {refunds}; fund {_micro(fee['fund_before'])} {h.escape('->')} {_micro(fee['fund_after'])}"
    )


def _num(value: Any) -> str:
    return "" if not isinstance(value, (int, float)) else f"{value:.2f}"


def _micro(value: Any) -> str:
    """Micro-units as currency."""
    return "" if not isinstance(value, int) else f"{value / 1e6:.6f}"


def _by_mg(values: dict[str, Any], key: str | None = None) -> str:
    """'mg1 0.04, mg2 -0.03' from micro-units per MG (or each entry's `key`); zeros left out."""
    shown = {mg: (v.get(key) if key is not None else v) for mg, v in sorted(values.items())}
    return h.escape(", ".join(f"{mg} {_micro(v)}" for mg, v in shown.items() if v))
