"""A small SOQL subset: enough for look-ups by key, email or id.

Grammar (keywords case-insensitive)::

    SELECT field[, field...] FROM Object
      [WHERE cond {AND|OR} cond ...]      -- AND binds tighter; parentheses allowed
      [ORDER BY field [ASC|DESC][, ...]]
      [LIMIT n]
    cond := field (= | != | <>) literal | field [NOT] IN (literal, ...) | field [NOT] LIKE 'pattern'
    literal := 'string' (SOQL escapes: \\' \\" \\\\ \\n \\r \\t \\b \\f) | number | true | false | null

String comparisons are case-insensitive, as in Salesforce. Anything else raises
:class:`SoqlError` (``MALFORMED_QUERY``).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

_TOKEN = re.compile(
    r"""\s*(?:
        (?P<string>'(?:[^'\\]|\\.)*')
      | (?P<number>-?\d+(?:\.\d+)?)
      | (?P<ident>[A-Za-z_][A-Za-z0-9_.]*)
      | (?P<op>!=|<>|<=|>=|=|<|>)
      | (?P<punct>[(),])
    )""",
    re.VERBOSE,
)
_ESCAPES = {
    "'": "'",
    '"': '"',
    "\\": "\\",
    "n": "\n",
    "r": "\r",
    "t": "\t",
    "b": "\b",
    "f": "\f",
    "_": "\\_",
    "%": "\\%",
}
KEYWORDS = {
    "SELECT",
    "FROM",
    "WHERE",
    "AND",
    "OR",
    "NOT",
    "IN",
    "LIKE",
    "ORDER",
    "BY",
    "ASC",
    "DESC",
    "LIMIT",
    "NULL",
    "TRUE",
    "FALSE",
    "NULLS",
    "FIRST",
    "LAST",
}


class SoqlError(ValueError):
    """A query the subset cannot parse (answered as ``MALFORMED_QUERY``)."""


@dataclass(frozen=True)
class Token:
    kind: str  # string, number, ident, op, punct, end
    value: Any
    pos: int

    def keyword(self) -> str | None:
        return self.value.upper() if self.kind == "ident" and self.value.upper() in KEYWORDS else None


@dataclass
class Cond:
    field: str
    op: str  # "=", "!=", "<", "<=", ">", ">=", "IN", "LIKE"
    values: list[Any]
    negate: bool = False


@dataclass
class BoolOp:
    op: str  # "AND" | "OR"
    items: list[Cond | BoolOp]


Expr = Cond | BoolOp


@dataclass
class Query:
    fields: list[str]
    sobject: str
    where: Expr | None = None
    order_by: list[tuple[str, bool]] = field(default_factory=list)  # (field, descending)
    limit: int | None = None

    def referenced_fields(self) -> list[str]:
        names = list(self.fields) + [f for f, _ in self.order_by]

        def walk(expr: Expr | None) -> None:
            if isinstance(expr, Cond):
                names.append(expr.field)
            elif isinstance(expr, BoolOp):
                for item in expr.items:
                    walk(item)

        walk(self.where)
        return names


def _unescape(body: str, pos: int) -> str:
    out, i = [], 0
    while i < len(body):
        ch = body[i]
        if ch == "\\":
            nxt = body[i + 1] if i + 1 < len(body) else ""
            if nxt not in _ESCAPES:
                raise SoqlError(f"Invalid string literal escape \\{nxt} at position {pos + i}")
            out.append(_ESCAPES[nxt])
            i += 2
        else:
            out.append(ch)
            i += 1
    return "".join(out)


def tokenize(text: str) -> list[Token]:
    tokens, pos = [], 0
    while pos < len(text):
        if text[pos:].strip() == "":
            break
        match = _TOKEN.match(text, pos)
        if match is None or match.end() == pos:
            raise SoqlError(f"unexpected token: '{text[pos:].strip()[:20]}'")
        kind = match.lastgroup or ""
        raw = match.group(kind)
        start = match.start(kind)
        if kind == "string":
            value: Any = _unescape(raw[1:-1], start + 1)
        elif kind == "number":
            value = float(raw) if "." in raw else int(raw)
        else:
            value = raw
        tokens.append(Token(kind, value, start))
        pos = match.end()
    tokens.append(Token("end", None, len(text)))
    return tokens


class _Parser:
    def __init__(self, text: str) -> None:
        self.tokens = tokenize(text)
        self.i = 0

    def peek(self) -> Token:
        return self.tokens[self.i]

    def next(self) -> Token:
        tok = self.tokens[self.i]
        self.i += 1
        return tok

    def accept(self, keyword: str) -> bool:
        if self.peek().keyword() == keyword:
            self.i += 1
            return True
        return False

    def expect(self, keyword: str) -> None:
        if not self.accept(keyword):
            tok = self.peek()
            found = "end of query" if tok.kind == "end" else repr(tok.value)
            raise SoqlError(f"expecting {keyword}, found {found} at position {tok.pos}")

    def ident(self) -> str:
        tok = self.next()
        if tok.kind != "ident" or tok.keyword() in {"FROM", "WHERE", "AND", "OR", "LIMIT", "ORDER", "SELECT"}:
            raise SoqlError(f"expecting a field or object name at position {tok.pos}")
        return str(tok.value)

    def punct(self, char: str) -> None:
        tok = self.next()
        if tok.kind != "punct" or tok.value != char:
            raise SoqlError(f"expecting '{char}' at position {tok.pos}")

    def literal(self) -> Any:
        tok = self.next()
        if tok.kind in ("string", "number"):
            return tok.value
        keyword = tok.keyword()
        if keyword in ("NULL", "TRUE", "FALSE"):
            return {"NULL": None, "TRUE": True, "FALSE": False}[keyword]
        raise SoqlError(f"expecting a literal at position {tok.pos}")

    def query(self) -> Query:
        self.expect("SELECT")
        fields = [self.ident()]
        while self.peek().kind == "punct" and self.peek().value == ",":
            self.next()
            fields.append(self.ident())
        self.expect("FROM")
        query = Query(fields, self.ident())
        if self.accept("WHERE"):
            query.where = self.or_expr()
        if self.accept("ORDER"):
            self.expect("BY")
            while True:
                name = self.ident()
                descending = self.accept("DESC")
                if not descending:
                    self.accept("ASC")
                if self.accept("NULLS") and not (self.accept("FIRST") or self.accept("LAST")):
                    raise SoqlError("expecting FIRST or LAST after NULLS")
                query.order_by.append((name, descending))
                if not (self.peek().kind == "punct" and self.peek().value == ","):
                    break
                self.next()
        if self.accept("LIMIT"):
            tok = self.next()
            if tok.kind != "number" or not isinstance(tok.value, int) or tok.value < 0:
                raise SoqlError(f"LIMIT needs a non-negative integer at position {tok.pos}")
            query.limit = tok.value
        tok = self.peek()
        if tok.kind != "end":
            raise SoqlError(f"unexpected token: '{tok.value}' at position {tok.pos}")
        return query

    def or_expr(self) -> Expr:
        items = [self.and_expr()]
        while self.accept("OR"):
            items.append(self.and_expr())
        return items[0] if len(items) == 1 else BoolOp("OR", items)

    def and_expr(self) -> Expr:
        items = [self.factor()]
        while self.accept("AND"):
            items.append(self.factor())
        return items[0] if len(items) == 1 else BoolOp("AND", items)

    def factor(self) -> Expr:
        tok = self.peek()
        if tok.kind == "punct" and tok.value == "(":
            self.next()
            expr = self.or_expr()
            self.punct(")")
            return expr
        name = self.ident()
        negate = self.accept("NOT")
        if self.accept("IN"):
            self.punct("(")
            values = [self.literal()]
            while self.peek().kind == "punct" and self.peek().value == ",":
                self.next()
                values.append(self.literal())
            self.punct(")")
            return Cond(name, "IN", values, negate)
        if self.accept("LIKE"):
            pattern = self.literal()
            if not isinstance(pattern, str):
                raise SoqlError("LIKE needs a string pattern")
            return Cond(name, "LIKE", [pattern], negate)
        if negate:
            raise SoqlError(f"expecting IN or LIKE after NOT at position {self.peek().pos}")
        op = self.next()
        if op.kind != "op":
            raise SoqlError(f"expecting an operator at position {op.pos}")
        value = self.literal()
        if op.value in ("!=", "<>"):
            return Cond(name, "=", [value], negate=True)
        return Cond(name, op.value, [value])


def parse(text: str) -> Query:
    """Parse a query; raise :class:`SoqlError` when it is outside the subset."""
    if not text or not text.strip():
        raise SoqlError("empty query")
    return _Parser(text).query()


# --------------------------------------------------------------------------- evaluation


def comparable(value: Any) -> Any:
    """Case-insensitive form of a value (SOQL string comparison ignores case)."""
    return value.casefold() if isinstance(value, str) else value


def _like(pattern: str) -> re.Pattern[str]:
    out, i = [], 0
    while i < len(pattern):
        ch = pattern[i]
        if ch == "\\" and i + 1 < len(pattern):
            out.append(re.escape(pattern[i + 1]))
            i += 2
            continue
        out.append(".*" if ch == "%" else "." if ch == "_" else re.escape(ch))
        i += 1
    return re.compile("".join(out), re.IGNORECASE | re.DOTALL)


def compile_expr(expr: Expr | None, norm: Callable[[str, Any], Any]) -> Callable[[dict[str, Any]], bool]:
    """A predicate over a record's fields. ``norm(field, value)`` canonicalises both sides."""
    if expr is None:
        return lambda _fields: True
    if isinstance(expr, BoolOp):
        parts = [compile_expr(item, norm) for item in expr.items]
        if expr.op == "AND":
            return lambda fields: all(p(fields) for p in parts)
        return lambda fields: any(p(fields) for p in parts)
    name, negate = expr.field, expr.negate
    if expr.op == "LIKE":
        regex = _like(expr.values[0])
        return lambda fields: (regex.fullmatch(str(fields.get(name) or "")) is not None) != negate
    targets = [norm(name, v) for v in expr.values]
    if expr.op in ("=", "IN"):
        wanted = set(t for t in targets if t is not None)
        want_null = any(t is None for t in targets)

        def member(fields: dict[str, Any]) -> bool:
            value = norm(name, fields.get(name))
            hit = (value is None and want_null) or (value is not None and value in wanted)
            return hit != negate

        return member
    target = targets[0]
    compare = {"<": lambda a, b: a < b, "<=": lambda a, b: a <= b, ">": lambda a, b: a > b, ">=": lambda a, b: a >= b}[
        expr.op
    ]

    def ordered(fields: dict[str, Any]) -> bool:
        value = norm(name, fields.get(name))
        if value is None or target is None:
            return False
        try:
            return bool(compare(value, target))
        except TypeError:
            return False

    return ordered
