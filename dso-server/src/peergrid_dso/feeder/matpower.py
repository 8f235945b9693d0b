"""Load a MATPOWER case file (`.m`) into a `Feeder`, running the unit conversion code at its end.

Promises: the MATPOWER distribution cases (case33bw, case69, case118zh, case136ma, ...) give branch r and x in
ohms and loads in kW and convert them with statements after the data; `parse_matpower` interprets those
statements (index constants from `idx_bus`/`idx_brch`, scalar assignments, column scaling with `*` or `/`
(also from another column), sin/cos/acos/asin/sqrt),
so the feeder gets per-unit impedances and MW loads. Any statement it does not understand raises
`MatpowerFormatError` with the line number rather than being silently skipped.
Assumes: a single REF bus (the substation), no shunts or line charging (refused if present).
Never executes code: the interpreter only knows arithmetic and column scaling.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from peergrid_dso.feeder.model import Branch, Feeder, FeederDataError, build_feeder


class MatpowerFormatError(FeederDataError):
    """A case file this loader cannot read faithfully."""


# MATPOWER's idx_* functions return these values in this output order.
_IDX = {
    "idx_bus": [1, 2, 3, 4, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17],
    "idx_brch": [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 14, 15, 16, 17, 18, 19, 12, 13, 20, 21],
    "idx_gen": list(range(1, 26)),
    "idx_cost": [1, 2, 1, 2, 3, 4, 5],
}


@dataclass
class MatpowerCase:
    base_mva: float
    tables: dict[str, np.ndarray]


def parse_matpower(text: str, source: str = "<case>") -> MatpowerCase:
    lines = text.splitlines()
    tables: dict[str, np.ndarray] = {}
    scalars: dict[str, float] = {}
    base_mva: float | None = None
    i = 0
    while i < len(lines):
        stmt = _strip(lines[i])
        lineno = i + 1
        i += 1
        while stmt.endswith("...") and i < len(lines):  # MATPOWER line continuation
            stmt = stmt[:-3] + " " + _strip(lines[i])
            i += 1
        if not stmt or stmt.startswith("function ") or stmt.startswith("mpc.version"):
            continue
        m = re.fullmatch(r"mpc\.(\w+)\s*=\s*\[(.*)", stmt)
        if m:
            name, rest = m.group(1), m.group(2)
            rows: list[list[float]] = []
            chunk = rest
            while True:
                end = chunk.find("]")
                body = chunk if end < 0 else chunk[:end]
                for row in body.split(";"):
                    if row.strip():
                        try:
                            rows.append([float(v) for v in row.split()])
                        except ValueError:
                            raise MatpowerFormatError(
                                f"{source}:{lineno}: bad number in mpc.{name}"
                            ) from None
                if end >= 0:
                    break
                if i >= len(lines):
                    raise MatpowerFormatError(f"{source}: mpc.{name} matrix never closed")
                chunk = _strip(lines[i])
                lineno = i + 1
                i += 1
            if len({len(r) for r in rows}) > 1:
                raise MatpowerFormatError(f"{source}: rows of mpc.{name} differ in length")
            tables[name] = np.array(rows, dtype=float)
            continue
        m = re.fullmatch(r"mpc\.baseMVA\s*=\s*(.+?);?", stmt)
        if m:
            base_mva = _Expr(m.group(1), scalars, tables, base_mva, source, lineno).value()
            continue
        m = re.fullmatch(r"\[([\w\s,.]+)\]\s*=\s*(idx_\w+)\s*;?", stmt)
        if m and m.group(2) in _IDX:
            names = [n.strip() for n in m.group(1).split(",")]
            for name, value in zip(names, _IDX[m.group(2)], strict=False):
                scalars[name] = float(value)
            continue
        m = re.fullmatch(
            r"mpc\.(\w+)\(:,\s*(\[[^\]]*\]|\w+)\)\s*=\s*mpc\.(\w+)\(:,\s*(\[[^\]]*\]|\w+)\)\s*([*/])\s*(.+?);?",
            stmt,
        )
        if m:
            table = m.group(1)
            targets = _columns(m.group(2), scalars, source, lineno)
            sources = _columns(m.group(4), scalars, source, lineno)
            if m.group(3) != table or table not in tables or len(targets) != len(sources):
                raise MatpowerFormatError(f"{source}:{lineno}: unsupported column update: {stmt}")
            factor = _Expr(m.group(6), scalars, tables, base_mva, source, lineno).value()
            if factor == 0 and m.group(5) == "/":
                raise MatpowerFormatError(f"{source}:{lineno}: division by zero")
            if max(targets + sources) > tables[table].shape[1] or min(targets + sources) < 1:
                raise MatpowerFormatError(f"{source}:{lineno}: column out of range")
            values = tables[table][:, [c - 1 for c in sources]]
            tables[table][:, [c - 1 for c in targets]] = (
                values / factor if m.group(5) == "/" else values * factor
            )
            continue
        m = re.fullmatch(r"([A-Za-z_]\w*)\s*=\s*(.+?);?", stmt)
        if m:
            scalars[m.group(1)] = _Expr(m.group(2), scalars, tables, base_mva, source, lineno).value()
            continue
        raise MatpowerFormatError(f"{source}:{lineno}: unsupported statement: {stmt}")
    if base_mva is None:
        raise MatpowerFormatError(f"{source}: no mpc.baseMVA")
    for name in ("bus", "gen", "branch"):
        if name not in tables:
            raise MatpowerFormatError(f"{source}: no mpc.{name}")
    return MatpowerCase(base_mva=base_mva, tables=tables)


def load_matpower(path: str | Path) -> Feeder:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise MatpowerFormatError(f"{path}: cannot read: {exc.strerror or exc}") from None
    return feeder_from_case(parse_matpower(text, str(path)), path.stem)


def feeder_from_case(case: MatpowerCase, name: str) -> Feeder:
    bus, gen, branch = case.tables["bus"], case.tables["gen"], case.tables["branch"]
    if bus.shape[1] < 13 or gen.shape[1] < 10 or branch.shape[1] < 11:
        raise MatpowerFormatError(f"{name}: bus/gen/branch tables have too few columns")
    if np.any(bus[:, 4:6] != 0) or np.any(branch[:, 4] != 0):
        raise MatpowerFormatError(f"{name}: shunts and line charging are not supported")
    ids = [int(b) for b in bus[:, 0]]
    refs = [k for k in range(len(ids)) if int(bus[k, 1]) == 3]
    if len(refs) != 1:
        raise MatpowerFormatError(f"{name}: expected exactly one REF (substation) bus, found {len(refs)}")
    root = refs[0]
    index = {b: k for k, b in enumerate(ids)}
    p = bus[:, 2].copy()
    q = bus[:, 3].copy()
    root_vm = 1.0
    for row in gen:
        if row[7] <= 0:  # out of service
            continue
        k = index.get(int(row[0]))
        if k is None:
            raise MatpowerFormatError(f"{name}: generator at unknown bus {int(row[0])}")
        if k == root:
            root_vm = float(row[5])
        else:  # distributed generation as a negative load at its scheduled output
            p[k] -= row[1]
            q[k] -= row[2]
    branches = []
    for n, row in enumerate(branch, start=1):
        try:
            fb, tb = index[int(row[0])], index[int(row[1])]
        except KeyError:
            raise MatpowerFormatError(f"{name}: branch {n} names an unknown bus") from None
        rating = float(row[5]) if row[5] > 0 else math.inf
        branches.append(Branch(n, fb, tb, float(row[2]), float(row[3]), rating, bool(row[10])))
    base_kv = float(bus[root, 9]) if bus[root, 9] > 0 else 1.0
    return build_feeder(
        name=name,
        base_mva=case.base_mva,
        base_kv=base_kv,
        bus_ids=tuple(ids),
        load_p_mw=tuple(float(v) for v in p),
        load_q_mvar=tuple(float(v) for v in q),
        root=root,
        branches=tuple(branches),
        root_vm_pu=root_vm,
    )


def _strip(line: str) -> str:
    return line.split("%", 1)[0].strip()


def _columns(spec: str, scalars: dict[str, float], source: str, lineno: int) -> list[int]:
    names = spec.strip("[]").replace(",", " ").split()
    cols = []
    for n in names:
        if n.isdigit():
            cols.append(int(n))
        elif n in scalars:
            cols.append(int(scalars[n]))
        else:
            raise MatpowerFormatError(f"{source}:{lineno}: unknown column name {n}")
    return cols


_FUNCTIONS = {"sin": math.sin, "cos": math.cos, "acos": math.acos, "asin": math.asin, "sqrt": math.sqrt}


class _Expr:
    """Recursive-descent arithmetic: numbers, names, mpc.baseMVA, mpc.T(i, C), + - * / ^ and parentheses."""

    _TOKEN = re.compile(r"\s*(\d+\.?\d*(?:[eE][-+]?\d+)?|\.\d+(?:[eE][-+]?\d+)?|mpc\.\w+|\w+|[-+*/^(),])")

    def __init__(
        self,
        text: str,
        scalars: dict[str, float],
        tables: dict[str, np.ndarray],
        base_mva: float | None,
        source: str,
        lineno: int,
    ) -> None:
        self.where = f"{source}:{lineno}"
        self.tokens = self._tokenize(text.strip().rstrip(";"))
        self.pos = 0
        self.scalars, self.tables, self.base_mva = scalars, tables, base_mva

    def _tokenize(self, text: str) -> list[str]:
        out, pos = [], 0
        while pos < len(text):
            m = self._TOKEN.match(text, pos)
            if not m:
                raise MatpowerFormatError(f"{self.where}: cannot parse expression {text!r}")
            out.append(m.group(1))
            pos = m.end()
        return out

    def value(self) -> float:
        v = self._sum()
        if self.pos != len(self.tokens):
            raise MatpowerFormatError(f"{self.where}: trailing tokens in expression")
        return v

    def _peek(self) -> str | None:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else None

    def _take(self, expected: str | None = None) -> str:
        tok = self._peek()
        if tok is None or (expected is not None and tok != expected):
            raise MatpowerFormatError(f"{self.where}: expected {expected or 'a value'}")
        self.pos += 1
        return tok

    def _sum(self) -> float:
        v = self._product()
        while self._peek() in ("+", "-"):
            v = v + self._product() if self._take() == "+" else v - self._product()
        return v

    def _product(self) -> float:
        v = self._power()
        while self._peek() in ("*", "/"):
            op = self._take()
            rhs = self._power()
            if op == "/" and rhs == 0:
                raise MatpowerFormatError(f"{self.where}: division by zero")
            v = v * rhs if op == "*" else v / rhs
        return v

    def _power(self) -> float:
        v = self._unary()
        if self._peek() == "^":
            self._take()
            v = v ** self._unary()
        return v

    def _unary(self) -> float:
        if self._peek() == "-":
            self._take()
            return -self._unary()
        return self._atom()

    def _atom(self) -> float:
        tok = self._take()
        if tok == "(":
            v = self._sum()
            self._take(")")
            return v
        if tok[0].isdigit() or tok[0] == ".":
            return float(tok)
        if tok == "mpc.baseMVA":
            if self.base_mva is None:
                raise MatpowerFormatError(f"{self.where}: mpc.baseMVA used before it is set")
            return self.base_mva
        if tok.startswith("mpc."):
            table = tok[4:]
            if table not in self.tables:
                raise MatpowerFormatError(f"{self.where}: unknown table {tok}")
            self._take("(")
            row = int(self._sum())
            self._take(",")
            col = int(self._sum())
            self._take(")")
            try:
                return float(self.tables[table][row - 1, col - 1])
            except IndexError:
                raise MatpowerFormatError(f"{self.where}: {tok}({row}, {col}) out of range") from None
        if tok in self.scalars:
            return self.scalars[tok]
        if tok in _FUNCTIONS and self._peek() == "(":
            self._take("(")
            arg = self._sum()
            self._take(")")
            try:
                return _FUNCTIONS[tok](arg)
            except ValueError:
                raise MatpowerFormatError(f"{self.where}: {tok}({arg}) is undefined") from None
        raise MatpowerFormatError(f"{self.where}: unknown name {tok}")
