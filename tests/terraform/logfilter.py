"""A small evaluator for the subset of Cloud Logging's query language the module writes.

Supported: comparisons `path = value`, `!=`, `:` (has: substring, case-insensitive, or `:*` for
"present"), `=~` / `!~` (RE2-style regular expressions, Python's re here), values that are quoted
strings, bare words or a parenthesised OR-list (`path=("a" OR "b")`); `AND`, `OR`, `NOT`,
parentheses and implicit AND between juxtaposed terms. Precedence is Logging's: NOT, then OR, then
AND (`a AND b OR c` is `a AND (b OR c)`). And the two label extractors of log-based metrics,
`EXTRACT(path)` and `REGEXP_EXTRACT(path, "re")`.

It answers for LogEntry-shaped dicts: {"resource": {...}, "jsonPayload": {...}, "severity": ...}.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

_TOKEN = re.compile(
    r"""\s*(?:
        (?P<string>"(?:[^"\\]|\\.)*")
      | (?P<op>!=|=~|!~|>=|<=|[=:<>])
      | (?P<paren>[()])
      | (?P<comma>,)
      | (?P<word>[A-Za-z0-9_.@%/*\-]+)
    )""",
    re.X,
)
_MISSING = object()


@dataclass(frozen=True)
class Token:
    kind: str
    text: str


def tokenize(text: str) -> list[Token]:
    tokens, pos = [], 0
    text = text.strip()
    while pos < len(text):
        match = _TOKEN.match(text, pos)
        if not match or match.end() == pos:
            raise ValueError(f"cannot read the filter at: {text[pos : pos + 30]!r}")
        kind = match.lastgroup or ""
        tokens.append(Token(kind, match.group(kind)))
        pos = match.end()
        while pos < len(text) and text[pos].isspace():
            pos += 1
    return tokens


def lookup(entry: dict[str, Any], path: str) -> Any:
    value: Any = entry
    for part in path.split("."):
        if isinstance(value, dict) and part in value:
            value = value[part]
        else:
            return _MISSING
    return value


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value
    return json.dumps(value)


class _Parser:
    def __init__(self, text: str) -> None:
        self.tokens = tokenize(text)
        self.pos = 0

    def peek(self) -> Token | None:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else None

    def take(self) -> Token:
        token = self.peek()
        if token is None:
            raise ValueError("the filter ends too early")
        self.pos += 1
        return token

    def expect(self, text: str) -> None:
        token = self.take()
        if token.text != text:
            raise ValueError(f"expected {text!r}, found {token.text!r}")

    # and_expr := or_expr ((AND)? or_expr)*
    def and_expr(self) -> Any:
        terms = [self.or_expr()]
        while (token := self.peek()) is not None and token.text != ")":
            if token.text == "AND":
                self.take()
            terms.append(self.or_expr())
        return ("and", terms)

    def or_expr(self) -> Any:
        terms = [self.unary()]
        while (token := self.peek()) is not None and token.text == "OR":
            self.take()
            terms.append(self.unary())
        return ("or", terms)

    def unary(self) -> Any:
        token = self.take()
        if token.text in ("NOT", "-"):
            return ("not", self.unary())
        if token.text == "(":
            inner = self.and_expr()
            self.expect(")")
            return inner
        if token.kind != "word":
            raise ValueError(f"expected a field, found {token.text!r}")
        op = self.take()
        if op.kind != "op":
            raise ValueError(f"expected an operator after {token.text}, found {op.text!r}")
        return ("cmp", token.text, op.text, self.value())

    def value(self) -> list[str]:
        token = self.take()
        if token.text == "(":
            values = [self.value_one(self.take())]
            while (nxt := self.take()).text == "OR":
                values.append(self.value_one(self.take()))
            if nxt.text != ")":
                raise ValueError(f"expected ')' in a value list, found {nxt.text!r}")
            return values
        return [self.value_one(token)]

    @staticmethod
    def value_one(token: Token) -> str:
        if token.kind == "string":
            return str(json.loads(token.text))
        if token.kind == "word":
            return token.text
        raise ValueError(f"expected a value, found {token.text!r}")


def parse(text: str) -> Any:
    parser = _Parser(text)
    tree = parser.and_expr()
    if parser.peek() is not None:
        raise ValueError(f"unexpected {parser.peek()}")
    return tree


def _compare(actual: Any, op: str, expected: str) -> bool:
    if op == ":":
        if expected == "*":
            return actual is not _MISSING and actual is not None
        return actual is not _MISSING and expected.lower() in _text(actual).lower()
    if op == "!=":
        return actual is _MISSING or _text(actual) != expected
    if actual is _MISSING:
        return False
    if op == "=":
        return _text(actual) == expected
    if op == "=~":
        return re.search(expected, _text(actual)) is not None
    if op == "!~":
        return re.search(expected, _text(actual)) is None
    raise ValueError(f"operator {op} is outside the subset")


def evaluate(tree: Any, entry: dict[str, Any]) -> bool:
    kind = tree[0]
    if kind == "and":
        return all(evaluate(t, entry) for t in tree[1])
    if kind == "or":
        return any(evaluate(t, entry) for t in tree[1])
    if kind == "not":
        return not evaluate(tree[1], entry)
    _, path, op, values = tree
    actual = lookup(entry, path)
    if op == "!=":
        return all(_compare(actual, op, v) for v in values)
    return any(_compare(actual, op, v) for v in values)


def matches(filter_text: str, entry: dict[str, Any]) -> bool:
    return evaluate(parse(filter_text), entry)


def extract(extractor: str, entry: dict[str, Any]) -> str | None:
    """The value a log-based metric's label extractor takes from an entry (None: no value)."""
    m = re.fullmatch(r"EXTRACT\(\s*([\w.@]+)\s*\)", extractor)
    if m:
        value = lookup(entry, m.group(1))
        return None if value is _MISSING or value is None else _text(value)
    m = re.fullmatch(r'REGEXP_EXTRACT\(\s*([\w.@]+)\s*,\s*("(?:[^"\\]|\\.)*")\s*\)', extractor)
    if m:
        value = lookup(entry, m.group(1))
        if value is _MISSING or value is None:
            return None
        found = re.search(json.loads(m.group(2)), _text(value))
        return found.group(1) if found else None
    raise ValueError(f"extractor outside the subset: {extractor}")
