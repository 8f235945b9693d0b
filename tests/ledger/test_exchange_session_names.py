"""Session names and squatting: a name `<first 16 hex digits of a key>/…` is reserved to that key - nobody
else opens it (`forbidden`, nothing written) - so members that agree on their coordinator name its session
so and nobody takes the name first; every other name is anyone's, as before the rule (exchange_state.py)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from ledger_fixtures import Keys, submit_checked
from test_exchange_accept_window import chain_for, open_body
from test_exchange_clear import refused

from peergrid_ledger.contracts.exchange import name_owner, reserved_name, session
from peergrid_ledger.results import Reason

DEADLINE = 2**62  # block time: far after every block here


def body(name: str) -> dict[str, object]:
    return {**open_body(DEADLINE), "session": name}


def test_a_reserved_name_only_its_key_opens() -> None:
    chain = chain_for(1)
    name = reserved_name(Keys.p1.public, "dayahead/1767225600/36")
    assert name == Keys.p1.public.hex()[:16] + "/dayahead/1767225600/36"
    for squatter in (Keys.p2, Keys.dso, Keys.authority):  # members, the DSO, an authority alike
        why, text = refused(chain, squatter, "exchange.open", body(name))
        assert why is Reason.FORBIDDEN and f"reserved to the key {Keys.p1.public.hex()[:16]}" in text
        assert session(chain.view, name) is None
    assert submit_checked(chain, Keys.p1, "exchange.open", body(name))
    record = session(chain.view, name)
    assert record is not None and record["coordinator"] == Keys.p1.public
    why, _ = refused(chain, Keys.p1, "exchange.open", body(name))  # and once only, as any name
    assert why is Reason.DUPLICATE


def test_every_other_name_is_anyones_as_before() -> None:
    chain = chain_for(1)
    hexed = Keys.p1.public.hex()[:16]
    names = ["day-1", "dayahead/4/scenario", hexed.upper() + "/x", hexed[:15] + "/x", hexed + "x/y", hexed]
    for name in names:
        assert name_owner(name) is None
        assert submit_checked(chain, Keys.p2, "exchange.open", body(name)), name


def test_a_reserved_name_must_fit_a_session_label() -> None:
    assert len(reserved_name(Keys.p1.public, "x" * 47)) == 64
    for rest in ("", "x" * 48):
        with pytest.raises(ValueError, match="reserved session name needs 1 to 47 characters"):
            reserved_name(Keys.p1.public, rest)


@given(st.binary(min_size=32, max_size=32), st.text(min_size=1, max_size=47))
def test_reserved_name_and_name_owner_agree(owner: bytes, rest: str) -> None:
    name = reserved_name(owner, rest)
    assert name_owner(name) == owner.hex()[:16] and owner.hex().startswith(name_owner(name) or "-")


@given(st.text(max_size=64))
def test_a_name_is_reserved_only_in_the_reserved_form(name: str) -> None:
    owner = name_owner(name)
    head, slash, _ = name.partition("/")
    assert (owner is not None) == (
        slash == "/" and len(head) == 16 and all(c in "0123456789abcdef" for c in head)
    )
