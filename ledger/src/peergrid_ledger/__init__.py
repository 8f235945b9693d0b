"""peergrid's permissioned proof-of-authority ledger, shared by every node (edge, DSO, tools).

Quick API tour (full format: docs/ledger-format.md)::

    from peergrid_ledger.keys import Keypair, read_keyfile, write_keyfile
    from peergrid_ledger.genesis import Account, Genesis, Params
    from peergrid_ledger.chain import LocalChain
    from peergrid_ledger.tx import sign_tx, decode_tx
    from peergrid_ledger import query

    # keys: Ed25519; files are 0600 and never overwritten
    authority, dso, seller, buyer = (Keypair.generate() for _ in range(4))
    write_keyfile("seller.key", seller)              # read_keyfile("seller.key") -> Keypair

    # a chain: id, authorities, known accounts (roles dso/authority/mgmc/anonym, balances, preset market rules)
    genesis = Genesis(
        chain="mgmc-lab", time=0, authorities=(authority.public,),
        accounts=(Account(dso.public, ("dso",)),
                  Account(seller.public, ("anonym",), rules={"floor_price": 200, "cap_price": 0,
                          "max_quantity": 5000, "clean_only": False, "clean_premium": 0}),
                  Account(buyer.public, ("anonym",), balance=10**9)),
        params=Params(credit_limit=0))

    # single-authority sealing mode, in memory (or LocalChain(genesis, authority, store=BlockStore.create(dir, genesis)))
    chain = LocalChain(genesis, sealer=authority)          # clock=... to inject time (ms)
    r = chain.sign_and_submit(seller, "offer", {"interval": 7, "round": 0, "price": 250, "quantity": 1000, "clean": True})
    assert r.ok                                            # Accepted(txid, writes, events) | Rejected(reason, detail)
    chain.sign_and_submit(buyer, "bid", {"interval": 7, "round": 0,
                                         "demands": [{"seller": seller.public, "quantity": 400}]})
    r = chain.sign_and_submit(buyer, "trade", {"interval": 7})   # close the interval: agreed trades
    trade_id = r.events[0][1]["id"]
    chain.sign_and_submit(buyer, "settle", {"trade": trade_id, "delivered": 400})
    block, outcome = chain.seal()                          # signed block + commit certificate, state root in header

    # queries work on chain.state (sealed) or chain.view (including accepted, unsealed transactions)
    query.balance(chain.state, seller.public); query.offer(chain.view, 7, seller.public)
    query.trades(chain.state, 7); query.authorities_at(chain.state, chain.height + 1)

    # transactions by hand (e.g. to gossip them): sign_tx(key, chain_id, kind, nonce, time_ms, body).raw is
    # the wire form; decode_tx(raw) reverses it; machine.apply(state, tx, BlockContext(...)) is the pure core.

Transaction kinds (bodies in docs/ledger-format.md): gov.add_authority, gov.remove_authority,
gov.rotate_authority, gov.revoke, enrol, authorise, operator_action, der_commitment, schedule_contract,
equivalent_injection, adjustment_contract, switching_plan, switching_result, switching_step, evidence; market
contract: market.rules, market.tariff, market.capacity, market.clock, offer, bid, move, trade, settle,
market.reopen; exchange contract: exchange.open, exchange.position, exchange.step, exchange.close,
exchange.accept, exchange.clear; uplift contract: uplift.claim, uplift.settle, market.fee; auction contract:
auction.open, auction.bid; payments contract: pay.
"""
