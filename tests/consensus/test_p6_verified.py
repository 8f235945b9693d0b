"""A replica forgets the signature checks of the transactions it committed (P6): its set of checked transactions
(`LedgerApp._verified`) held every transaction until MAX_VERIFIED (200,000, then cleared at once), ~60 MB on a
Pi (about 260 B of raw transaction and a 50-B set slot each) of transactions committed long ago; it now holds
only what may still go into a block."""

from __future__ import annotations

import hashlib
from pathlib import Path

from consensus.test_ledger_app import CHAIN, MG, Net
from peergrid_ledger.tx import sign_tx


def test_a_committed_transactions_signature_check_is_forgotten(tmp_path: Path) -> None:
    net = Net(tmp_path)
    raws = []
    for nonce in range(1, 31):
        body = {"interval": nonce, "root": hashlib.sha256(b"%d" % nonce).digest(), "readings": 96}
        raws.append(sign_tx(MG, CHAIN, "der_commitment", nonce, net.now, body).raw)
        net.submit(raws[-1])
    assert all(raw in app._verified for app in net.apps for raw in raws)  # checked on entry, as before
    net.run(1500)
    assert net.apps[0].next_nonce(MG.public) == 31  # all 30 landed
    assert [len(app._verified) for app in net.apps] == [0, 0, 0, 0]  # was 30 on each
    late = sign_tx(MG, CHAIN, "der_commitment", 5, net.now, {"interval": 5, "root": bytes(32), "readings": 1})
    assert net.apps[0].check_tx(late.raw).reason == "nonce 5 already used"  # type: ignore[union-attr]
