"""The report's re-bargaining table holds the DSO's words once escaped (Q8, on D2's 'the unmet column is escaped
twice'): D2's lab page has `MGs&#x27; ranges` in its source, which is one escape, and a browser shows "MGs'
ranges". The test reads the page as a browser does (its text, character references resolved), so a second escape
would show `&#x27;` there, and a missing one would lose '<b>' to a tag."""

from __future__ import annotations

import json
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

from sim.test_d2_report_dayahead import FORWARD, _forward_day
from sim.test_u2_report_stopped_early import optimum  # noqa: F401 (a fixture)

from peergrid_sim import report

# (the '<b>' stands for any text a tag could be read from: unescaped, it would be a tag, not text)
UNMET = "no adjustment within the MGs' ranges restores: bus 18 voltage < 0.91 & bus 17's too (<b>, &amp;)"


class _Rows(HTMLParser):
    """Each table row's cells as a browser shows their text."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.rows: list[list[str]] = []
        self.in_cell = False

    def handle_starttag(self, tag: str, attrs: Any) -> None:
        if tag == "tr":
            self.rows.append([])
        elif tag in ("td", "th") and self.rows:
            self.rows[-1].append("")
            self.in_cell = True

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th", "tr"):
            self.in_cell = False

    def handle_data(self, data: str) -> None:
        if self.in_cell:
            self.rows[-1][-1] += data


def test_the_unmet_and_answer_cells_read_as_the_dso_wrote_them(tmp_path: Path, optimum: Any) -> None:  # noqa: F811
    bed = _forward_day(tmp_path)
    dso = json.loads((tmp_path / "records" / "dso.jsonl").read_text())
    dso["unmet"] = UNMET
    dso["rebargain"][0]["answer"] = f"re-planned ({FORWARD})"
    (tmp_path / "records" / "dso.jsonl").write_text(json.dumps(dso) + "\n")
    parser = _Rows()
    parser.feed(report.write_report(bed, tmp_path / "out").read_text(encoding="utf-8"))
    rows = [r for r in parser.rows if r[:2] == ["36", "1"]]
    assert rows == [["36", "1", "mg4 ≥ 100.0 kW", f"re-planned ({FORWARD})", "-", "False", UNMET]]
