"""A compiled body check refuses in `check`'s words, which name the offending field (schema's promise).

R38-1: since e59814b a compiled map or list passed its own `where` to each field's validator, so a refused
offer read 'body: 1000000000001 outside [0, 1000000000000]' without saying price or quantity; B2's one-loop
map kept those words. The verdicts never differed; these tests pin the words to the general check's.
"""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from test_b2_offer_fast_paths import verdict  # a validator's (reason, words), or None

from peergrid_ledger.contracts.market import KINDS as MARKET_KINDS
from peergrid_ledger.schema import Bool, Bytes, Int, List, Map, check, compile_shape

NESTED = Map({"n": Int(0, 5), "items": List(Map({"flag": Bool(), "k": Bytes(size=2)}), max_len=3)})


def test_a_refused_offer_names_its_field() -> None:
    offer = {"clean": True, "interval": 3, "price": 10**12 + 1, "quantity": 5, "round": 1}
    assert verdict(compile_shape(MARKET_KINDS["offer"].shape), offer) == (
        "malformed",
        "body.price: 1000000000001 outside [0, 1000000000000]",
    )


def test_a_nested_item_is_named_by_its_path() -> None:
    value = {"n": 1, "items": [{"flag": True, "k": b"ab"}, {"flag": 1, "k": b"ab"}]}
    assert verdict(compile_shape(NESTED), value) == (
        "malformed",
        "body.items[1].flag: expected true or false",
    )


scalars = st.one_of(st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.binary(max_size=3))


@given(
    st.fixed_dictionaries(
        {"clean": scalars, "interval": scalars, "price": scalars, "quantity": scalars, "round": scalars}
    )
    | st.fixed_dictionaries(
        {"n": scalars, "items": st.lists(st.fixed_dictionaries({"flag": scalars, "k": scalars}), max_size=4)}
    )
)
@settings(max_examples=300, deadline=None)
def test_compiled_and_general_checks_agree_word_for_word(value: Any) -> None:
    for shape in (MARKET_KINDS["offer"].shape, NESTED):
        assert verdict(compile_shape(shape), value) == verdict(lambda v, w, s=shape: check(s, v, w), value)
