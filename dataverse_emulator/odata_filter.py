"""The OData ``$filter``, ``$orderby`` and ``$select`` options, as Dataverse's Web API accepts them.

A parsed filter becomes either a parameterised SQLite ``WHERE`` clause (for stored tables) or a
Python predicate (for small in-memory lists such as metadata); both give the same answer on the
same rows. Choices the callers rely on:

- ``ne`` is null-safe: ``x ne 5`` matches rows whose ``x`` is null (SQL ``IS NOT``).
- Logic is two-valued: a comparison against a null column value is false, so ``not (x eq 5)``
  matches null rows too, exactly like ``x ne 5``; ``gt``/``ge``/``lt``/``le`` against ``null``
  match nothing.
- Strings compare case-insensitively for ASCII letters only, which is what SQLite's ``NOCASE``
  collation and ``LIKE`` do; the predicate folds the same way so the two never disagree.
- ``not`` binds tighter than ``and`` and ``or`` but looser than a comparison:
  ``not x eq 1`` means ``not (x eq 1)``.

This module parses; the tree is defined in ``filter_syntax`` and translated in ``filter_translate``
(both re-exported here, so callers import one module).
"""

from __future__ import annotations

import json
import re
from decimal import Decimal
from typing import NamedTuple

from dataverse_emulator.filter_syntax import (
    OPS,
    STRING_FUNCS,
    And,
    Column,
    Compare,
    Expr,
    In,
    Literal,
    Not,
    Or,
    Property,
    QueryError,
    StringCall,
    int64,
    signature_error,
)
from dataverse_emulator.filter_translate import Predicate, to_predicate, to_sql
from dataverse_emulator.values import parse_datetime

__all__ = [
    "And",
    "Column",
    "Compare",
    "Expr",
    "In",
    "Literal",
    "Not",
    "Or",
    "Predicate",
    "Property",
    "QueryError",
    "StringCall",
    "parse_filter",
    "parse_orderby",
    "parse_select",
    "to_predicate",
    "to_sql",
]

MAX_DEPTH = 64
"""Deepest nesting of parentheses and ``not``: deeper input is refused instead of exhausting the stack."""

_TOKEN_RE = re.compile(
    r"""(?P<space>[ \t]+)
    |(?P<string>'(?:[^']|'')*')
    |(?P<dstring>"(?:[^"\\]|\\.)*")
    |(?P<enum>[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)+'[A-Za-z0-9_, ]*')
    |(?P<guid>[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}(?![0-9A-Za-z_-]))
    |(?P<datetime>[0-9]{4}-[0-9]{2}-[0-9]{2}(?:T[0-9]{2}:[0-9]{2}(?::[0-9]{2}(?:\.[0-9]{1,7})?)?)?
        (?:Z|[+-][0-9]{2}:[0-9]{2})?(?![0-9A-Za-z_.:+-]))
    |(?P<number>-?[0-9]+(?:\.[0-9]+)?(?![0-9A-Za-z_.]))
    |(?P<name>[A-Za-z_][A-Za-z0-9_]*(?:[./][A-Za-z_][A-Za-z0-9_]*)*(?![0-9A-Za-z_./]))
    |(?P<punct>[(),=\[\]])""",
    re.VERBOSE,
)
_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_PATH_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(?:/[A-Za-z_][A-Za-z0-9_]*)?")
_KEYWORDS = {"and", "or", "not", *OPS}
_IN_FUNCS = {"Microsoft.Dynamics.CRM.In": False, "Microsoft.Dynamics.CRM.NotIn": True}


class _Token(NamedTuple):
    kind: str
    text: str
    pos: int


def _unquote(token: _Token) -> str:
    return token.text[1:-1].replace("''", "'")


def _tokenize(text: str) -> list[_Token]:
    tokens: list[_Token] = []
    pos = 0
    while pos < len(text):
        match = _TOKEN_RE.match(text, pos)
        if match is None:
            found = text[pos:].split(" ", 1)[0][:30]
            detail = "unterminated string literal" if found.startswith("'") else f"unexpected text '{found}'"
            raise QueryError(f"Syntax error at position {pos} in '{text}': {detail}.")
        if match.lastgroup != "space":
            tokens.append(_Token(match.lastgroup or "", match.group(), pos))
        pos = match.end()
    tokens.append(_Token("end", "", len(text)))
    return tokens


class _Parser:
    """Recursive descent over the tokens: or_expr > and_expr > unary > primary (comparison or call)."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens = _tokenize(text)
        self.index = 0
        self.depth = 0

    def peek(self) -> _Token:
        return self.tokens[self.index]

    def advance(self) -> _Token:
        token = self.tokens[self.index]
        if token.kind != "end":
            self.index += 1
        return token

    def error(self, token: _Token, expected: str) -> QueryError:
        found = "the end of the filter" if token.kind == "end" else f"'{token.text}'"
        return QueryError(
            f"Syntax error at position {token.pos} in '{self.text}': expected {expected}, found {found}."
        )

    def at(self, kind: str, text: str) -> bool:
        token = self.peek()
        return token.kind == kind and token.text == text

    def expect(self, punct: str) -> None:
        if not self.at("punct", punct):
            raise self.error(self.peek(), f"'{punct}'")
        self.advance()

    def descend(self, token: _Token) -> None:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise QueryError(
                f"The filter nests parentheses or 'not' deeper than {MAX_DEPTH} levels "
                f"at position {token.pos} in '{self.text}'."
            )

    def parse(self) -> Expr:
        expr = self.or_expr()
        if self.peek().kind != "end":
            raise self.error(self.peek(), "'and', 'or' or the end of the filter")
        return expr

    def or_expr(self) -> Expr:
        expr = self.and_expr()
        while self.at("name", "or"):
            self.advance()
            expr = Or(expr, self.and_expr())
        return expr

    def and_expr(self) -> Expr:
        expr = self.unary()
        while self.at("name", "and"):
            self.advance()
            expr = And(expr, self.unary())
        return expr

    def unary(self) -> Expr:
        if not self.at("name", "not"):
            return self.primary()
        self.descend(self.advance())
        expr = Not(self.unary())
        self.depth -= 1
        return expr

    def primary(self) -> Expr:
        token = self.peek()
        if self.at("punct", "("):
            self.descend(self.advance())
            expr = self.or_expr()
            self.expect(")")
            self.depth -= 1
            return expr
        following = self.tokens[min(self.index + 1, len(self.tokens) - 1)]
        if token.kind == "name" and following.kind == "punct" and following.text == "(":
            return self.call()
        return self.comparison()

    def comparison(self) -> Compare:
        left = self.operand()
        token = self.peek()
        if token.kind != "name" or token.text not in OPS:
            raise self.error(token, "a comparison operator (eq, ne, gt, ge, lt, le)")
        self.advance()
        right = self.operand()
        if isinstance(left, Property) and isinstance(right, Literal):
            return Compare(token.text, left, right)
        if isinstance(left, Literal) and isinstance(right, Property):
            return Compare(OPS[token.text][0], right, left)
        what = "two properties" if isinstance(left, Property) else "two literals"
        raise QueryError(
            f"A comparison needs one property and one literal; found {what} "
            f"around position {token.pos} in '{self.text}'."
        )

    def operand(self) -> Property | Literal:
        token = self.advance()
        if token.kind == "string":
            return Literal("string", _unquote(token))
        if token.kind == "guid":
            return Literal("guid", token.text.lower())
        if token.kind == "enum":  # Namespace.EnumType'Member': compares as the member's name
            return Literal("enum", token.text.split("'")[1])
        if token.kind == "datetime":
            try:
                return Literal("datetime", parse_datetime(token.text))
            except (ValueError, OverflowError):
                raise self.error(token, "a valid date-time") from None
        if token.kind == "number" and "." in token.text:
            return Literal("decimal", Decimal(token.text))
        if token.kind == "number":
            try:
                return Literal("int", int64(token.text))
            except ValueError:
                raise self.error(token, "an integer within the Edm.Int64 range") from None
        if token.kind == "name" and token.text in ("null", "true", "false"):
            return Literal("null", None) if token.text == "null" else Literal("bool", token.text == "true")
        return self.property(token)

    def property(self, token: _Token) -> Property:
        if token.kind != "name" or token.text in _KEYWORDS or not _PATH_RE.fullmatch(token.text):
            raise self.error(token, "a property name or a literal")
        return Property(token.text)

    def call(self) -> Expr:
        token = self.advance()
        self.expect("(")
        if token.text in STRING_FUNCS:
            first = self.operand()
            self.expect(",")
            second = self.operand()
            self.expect(")")
            if not isinstance(first, Property) or not isinstance(second, Literal) or second.kind != "string":
                raise signature_error(token.text)
            return StringCall(token.text, first, str(second.value))
        if token.text in _IN_FUNCS:
            return self.in_call(token)
        raise QueryError(
            f"An unknown function with name '{token.text}' was found "
            f"at position {token.pos} in '{self.text}'."
        )

    def in_call(self, token: _Token) -> In:
        name: str | None = None
        values: list[str] | None = None
        while True:
            key = self.advance()
            if key.kind != "name" or key.text not in ("PropertyName", "PropertyValues"):
                raise self.error(key, "'PropertyName' or 'PropertyValues'")
            if (name if key.text == "PropertyName" else values) is not None:
                raise self.error(key, "each parameter once")
            self.expect("=")
            if key.text == "PropertyName":
                value = self.advance()
                if value.kind != "string" or not _PATH_RE.fullmatch(_unquote(value)):
                    raise self.error(value, "a property name in single quotes")
                name = _unquote(value)
            else:
                values = self.string_list()
            if not self.at("punct", ","):
                break
            self.advance()
        self.expect(")")
        if name is None or values is None:
            raise QueryError(f"The function '{token.text}' needs both PropertyName and PropertyValues.")
        if not values:
            raise QueryError(f"PropertyValues of '{token.text}' must hold at least one value.")
        return In(Property(name), tuple(values), _IN_FUNCS[token.text])

    def string_list(self) -> list[str]:
        self.expect("[")
        values: list[str] = []
        while not self.at("punct", "]"):
            if values:
                self.expect(",")
            token = self.advance()
            if token.kind == "dstring":  # the documented form: a JSON string
                values.append(str(json.loads(token.text)))
                continue
            if token.kind != "string":
                raise self.error(token, "a value in single or double quotes")
            values.append(_unquote(token))
        self.advance()
        return values


def parse_filter(text: str) -> Expr:
    """Parse a ``$filter`` value (already URL-decoded); any fault is a ``QueryError``."""
    return _Parser(text).parse()


def parse_orderby(text: str) -> list[tuple[str, bool]]:
    """Parse ``$orderby`` into ``(property, descending)`` pairs; ``asc`` is the default."""
    result: list[tuple[str, bool]] = []
    for item in text.split(","):
        words = item.split()
        direction = words[1] if len(words) == 2 else "asc"
        if len(words) not in (1, 2) or not _NAME_RE.fullmatch(words[0]) or direction not in ("asc", "desc"):
            raise QueryError(f"Syntax error in $orderby '{text}': '{item.strip()}' is not 'name [asc|desc]'.")
        result.append((words[0], direction == "desc"))
    return result


def parse_select(text: str) -> list[str]:
    """Parse ``$select`` into property names; spaces around a name are tolerated."""
    names = [item.strip(" ") for item in text.split(",")]
    for name in names:
        if not _NAME_RE.fullmatch(name):
            raise QueryError(f"Syntax error in $select '{text}': '{name}' is not a property name.")
    return names
