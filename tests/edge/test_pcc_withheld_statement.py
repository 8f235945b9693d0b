"""The edge posts its PCC readings for a revealed statement whose counterparty kept its reveal back and nobody
repeated (D4: `takeup` "withheld", the rule the DSO node takes it up by) from the reveal deadline: both parties
and the buyer of the seller's disputed sibling, the nodes the DSO reads for it (`disputes.read_nodes`); and the
withheld buyer posts for that sibling dispute from the start (its trade may be taken up: a reading kept early).
Before, nobody posted for it and the DSO never looked. tests/dso's sealed market (s sells 400 to b, b withheld,
and 200 to c, disputed)."""

from __future__ import annotations

from dso.test_disputes import T
from dso.test_disputes_withheld_statement import kept_back

from peergrid_dso.disputes import read_nodes
from peergrid_edge.pcc_readings import readings_needed
from peergrid_ledger import query


def test_the_parties_and_the_siblings_counterparty_post_from_the_reveal_deadline() -> None:
    m, tid, sib, _ = kept_back("buyer", repeat=False)
    due = int(query.settlement(m.chain.state, tid)["deadline"])  # type: ignore[index]
    trades = query.trades(m.chain.state, T)

    def needed(mg: str, now_ms: int) -> set[bytes]:
        return set(readings_needed(trades, m.anonyms[mg].public, now_ms))

    assert [needed(mg, due - 1) for mg in ("s", "b", "c")] == [set(), {sib}, set()]
    assert [needed(mg, due) for mg in ("s", "b", "c")] == [{tid}, {tid, sib}, {tid}]
    posting = {m.nodes[mg].public for mg in ("s", "b", "c") if tid in needed(mg, due)}
    assert read_nodes(m.chain.state, tid, m.node_of()) == posting
    m.do(m.anonyms["s"], "settle", {"trade": tid, "delivered": 400, "short": 0}, due)  # the repeat: a hold
    trades = query.trades(m.chain.state, T)
    assert "vouch" in dict(trades)[tid] and needed("s", due) == {tid}  # now the vouch's: the seller posts
