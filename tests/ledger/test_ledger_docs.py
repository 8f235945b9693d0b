"""The documentation's test vectors and API example are what the code does."""

from __future__ import annotations

import os
import re
import textwrap
from pathlib import Path

from ledger_vectors import render

import peergrid_ledger

DOC = Path(__file__).resolve().parents[2] / "docs" / "ledger-format.md"


def test_format_doc_vectors_match_the_code() -> None:
    block = re.search(r"```vectors\n(.*?)\n```", DOC.read_text(encoding="utf-8"), re.S)
    assert block is not None, "no vectors block in docs/ledger-format.md"
    assert block.group(1) == render()


def test_package_docstring_example_runs(tmp_path: Path) -> None:
    doc = peergrid_ledger.__doc__
    assert doc is not None
    code = textwrap.dedent(doc.split("::\n", 1)[1].split("\nTransaction kinds")[0])
    cwd = os.getcwd()
    os.chdir(tmp_path)  # the example writes a key file
    try:
        namespace: dict[str, object] = {}
        exec(compile(code, "peergrid_ledger.__doc__", "exec"), namespace)
    finally:
        os.chdir(cwd)
    query = namespace["query"]
    chain = namespace["chain"]
    seller = namespace["seller"]
    assert query.balance(chain.state, seller.public) == 250 * 400  # type: ignore[attr-defined]
