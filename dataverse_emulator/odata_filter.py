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
"""

from __future__ import annotations

import json
import operator
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, NamedTuple, TypeAlias

from dataverse_emulator.values import EdmType, normalize_guid, parse_datetime

MAX_DEPTH = 64
"""Deepest nesting of parentheses and ``not``: deeper input is refused instead of exhausting the stack."""

_CHUNK = 50
"""Most operands joined in one SQL ``AND``/``OR`` group, so SQLite's expression depth limit holds."""


class QueryError(Exception):
    """A malformed or invalid query; the server answers 400 with this code and message."""

    def __init__(self, message: str, code: str = "0x80060888") -> None:
        super().__init__(message)
        self.message = message
        self.code = code


@dataclass(frozen=True)
class Property:
    """A property path: a name, or a navigation property and one of its properties (``a/b``)."""

    path: str


@dataclass(frozen=True)
class Literal:
    """A literal: ``kind`` is null, string, guid, datetime (epoch micros), int, decimal or bool."""

    kind: str
    value: object


@dataclass(frozen=True)
class Compare:
    """``prop op literal``; the parser puts the property on the left whatever the written order."""

    op: str
    prop: Property
    literal: Literal


@dataclass(frozen=True)
class And:
    """Both operands hold."""

    left: Expr
    right: Expr


@dataclass(frozen=True)
class Or:
    """Either operand holds."""

    left: Expr
    right: Expr


@dataclass(frozen=True)
class Not:
    """The operand does not hold (null comparisons count as not holding, see the module notes)."""

    operand: Expr


@dataclass(frozen=True)
class In:
    """``Microsoft.Dynamics.CRM.In`` (or ``NotIn`` when ``negate``); values stay text until typed."""

    prop: Property
    values: tuple[str, ...]
    negate: bool


@dataclass(frozen=True)
class StringCall:
    """``contains``, ``startswith`` or ``endswith`` of a string property and a string literal."""

    func: str
    prop: Property
    value: str


Expr: TypeAlias = Compare | And | Or | Not | In | StringCall


@dataclass(frozen=True)
class Column:
    """How a property is stored: ``sql`` is embedded as given, so it must already be quoted."""

    sql: str
    edm: EdmType


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
_INT_RE = re.compile(r"-?[0-9]+")
_DECIMAL_RE = re.compile(r"-?[0-9]+(?:\.[0-9]+)?")
_OPS: dict[str, tuple[str, str, str, Callable[[Any, Any], bool]]] = {
    # operator: (operator once the operands swap sides, SQL, OData operator kind, Python test)
    "eq": ("eq", "=", "Equal", operator.eq),
    "ne": ("ne", "IS NOT", "NotEqual", operator.ne),
    "gt": ("lt", ">", "GreaterThan", operator.gt),
    "ge": ("le", ">=", "GreaterThanOrEqual", operator.ge),
    "lt": ("gt", "<", "LessThan", operator.lt),
    "le": ("ge", "<=", "LessThanOrEqual", operator.le),
}
_KEYWORDS = {"and", "or", "not", *_OPS}
_STRING_FUNCS = ("contains", "startswith", "endswith")
_IN_FUNCS = {"Microsoft.Dynamics.CRM.In": False, "Microsoft.Dynamics.CRM.NotIn": True}
_INT64 = 2**63


def _int64(text: str) -> int:
    number = int(text) if len(text) <= 20 else _INT64
    if not -_INT64 <= number < _INT64:
        raise ValueError(text)
    return number


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


def _signature_error(func: str) -> QueryError:
    return QueryError(
        f"No function signature for the function with name '{func}' matches the specified arguments. "
        f"The function signatures considered are: {func}(Edm.String Nullable=true, Edm.String Nullable=true)."
    )


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
        if token.kind != "name" or token.text not in _OPS:
            raise self.error(token, "a comparison operator (eq, ne, gt, ge, lt, le)")
        self.advance()
        right = self.operand()
        if isinstance(left, Property) and isinstance(right, Literal):
            return Compare(token.text, left, right)
        if isinstance(left, Literal) and isinstance(right, Property):
            return Compare(_OPS[token.text][0], right, left)
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
                return Literal("int", _int64(token.text))
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
        if token.text in _STRING_FUNCS:
            first = self.operand()
            self.expect(",")
            second = self.operand()
            self.expect(")")
            if not isinstance(first, Property) or not isinstance(second, Literal) or second.kind != "string":
                raise _signature_error(token.text)
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


_NUMERIC = frozenset({"int", "decimal"})
_ACCEPTS = {
    EdmType.GUID: frozenset({"guid"}),
    EdmType.STRING: frozenset({"string", "enum"}),
    EdmType.DATETIME: frozenset({"datetime"}),
    EdmType.INT32: _NUMERIC,
    EdmType.INT64: _NUMERIC,
    EdmType.DECIMAL: _NUMERIC,
    EdmType.BOOLEAN: frozenset({"bool"}),
}
_LITERAL_EDM = {
    "string": "Edm.String",
    "enum": "Edm.Enum",
    "guid": "Edm.Guid",
    "datetime": "Edm.DateTimeOffset",
    "decimal": "Edm.Decimal",
    "bool": "Edm.Boolean",
}
_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")


def _fold(value: object, edm: EdmType) -> object:
    """Fold a string column's ASCII letters only, as SQLite's NOCASE and LIKE do; keep anything else."""
    return value.translate(_ASCII_LOWER) if edm is EdmType.STRING and isinstance(value, str) else value


def _literal_edm(literal: Literal) -> str:
    if literal.kind == "int":
        small = isinstance(literal.value, int) and -(2**31) <= literal.value < 2**31
        return "Edm.Int32" if small else "Edm.Int64"
    return _LITERAL_EDM.get(literal.kind, literal.kind)


def _compare_value(expr: Compare, edm: EdmType) -> object:
    """Check the literal against the column type and give the stored form (``None`` for null)."""
    literal = expr.literal
    if literal.kind == "null":
        return None
    if literal.kind not in _ACCEPTS[edm]:
        raise QueryError(
            "A binary operator with incompatible types was detected. Found operand types "
            f"'{edm.value}' and '{_literal_edm(literal)}' for operator kind '{_OPS[expr.op][2]}'."
        )
    if literal.kind == "bool":
        return int(bool(literal.value))
    if isinstance(literal.value, Decimal):
        return float(literal.value)
    return literal.value


def _in_values(expr: In, edm: EdmType) -> list[object]:
    """Convert the textual In/NotIn values to the column's stored form."""
    func = "Microsoft.Dynamics.CRM." + ("NotIn" if expr.negate else "In")
    if not expr.values:
        raise QueryError(f"PropertyValues of '{func}' must hold at least one value.")
    converted: list[object] = []
    for text in expr.values:
        try:
            converted.append(_in_value(text, edm))
        except ValueError:
            raise QueryError(
                f"The value '{text}' in PropertyValues of '{func}' is not a valid {edm.value} "
                f"for property '{expr.prop.path}'."
            ) from None
    return converted


def _in_value(text: str, edm: EdmType) -> object:
    if edm is EdmType.STRING:
        return text
    if edm is EdmType.GUID:
        return normalize_guid(text)
    if edm is EdmType.DATETIME:
        return parse_datetime(text)
    if edm is EdmType.BOOLEAN and text in ("true", "false"):
        return int(text == "true")
    if edm is EdmType.DECIMAL and _DECIMAL_RE.fullmatch(text):
        return float(text)
    if edm in (EdmType.INT32, EdmType.INT64) and _INT_RE.fullmatch(text):
        return _int64(text)
    raise ValueError(text)


def _string_call_check(expr: StringCall, edm: EdmType) -> None:
    if edm is not EdmType.STRING or expr.func not in _STRING_FUNCS:
        raise _signature_error(expr.func)


def _flatten(expr: And | Or) -> list[Expr]:
    """List the operands of a chain of one connective, in order, without recursing (chains can be long)."""
    parts: list[Expr] = []
    stack: list[Expr] = [expr]
    while stack:
        node = stack.pop()
        if isinstance(node, And | Or) and type(node) is type(expr):
            stack.extend((node.right, node.left))
        else:
            parts.append(node)
    return parts


def to_sql(expr: Expr, resolve: Callable[[str], Column]) -> tuple[str, list[object]]:
    """Translate a filter into a SQLite condition and its parameters (values are never embedded)."""
    params: list[object] = []
    return _sql(expr, resolve, params), params


def _sql(expr: Expr, resolve: Callable[[str], Column], params: list[object]) -> str:
    if isinstance(expr, And | Or):
        joiner = " AND " if isinstance(expr, And) else " OR "
        parts = [_sql(part, resolve, params) for part in _flatten(expr)]
        while len(parts) > 1:
            parts = ["(" + joiner.join(parts[i : i + _CHUNK]) + ")" for i in range(0, len(parts), _CHUNK)]
        return parts[0]
    if isinstance(expr, Not):
        return f"NOT IFNULL({_sql(expr.operand, resolve, params)}, 0)"
    column = resolve(expr.prop.path)
    collated = column.sql + (" COLLATE NOCASE" if column.edm is EdmType.STRING else "")
    if isinstance(expr, Compare):
        value = _compare_value(expr, column.edm)
        if value is None:
            return {"eq": f"{column.sql} IS NULL", "ne": f"{column.sql} IS NOT NULL"}.get(expr.op, "0")
        params.append(value)
        return f"{collated} {_OPS[expr.op][1]} ?"
    if isinstance(expr, In):
        values = _in_values(expr, column.edm)
        params.extend(values)
        marks = ", ".join("?" * len(values))
        if expr.negate:
            return f"({column.sql} IS NULL OR {collated} NOT IN ({marks}))"
        return f"{collated} IN ({marks})"
    _string_call_check(expr, column.edm)
    escaped = expr.value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    before = "%" if expr.func in ("contains", "endswith") else ""
    after = "%" if expr.func in ("contains", "startswith") else ""
    params.append(before + escaped + after)
    return f"{column.sql} LIKE ? ESCAPE '\\'"


Row: TypeAlias = Mapping[str, object]
Predicate: TypeAlias = Callable[[Row], bool]


def to_predicate(expr: Expr, resolve: Callable[[str], EdmType]) -> Predicate:
    """Build a test on rows keyed by property path that answers exactly as ``to_sql`` does."""
    if isinstance(expr, And | Or):
        parts = [to_predicate(part, resolve) for part in _flatten(expr)]
        combine = all if isinstance(expr, And) else any
        return lambda row: combine(part(row) for part in parts)
    if isinstance(expr, Not):
        inner = to_predicate(expr.operand, resolve)
        return lambda row: not inner(row)
    path = expr.prop.path
    edm = resolve(path)
    if isinstance(expr, Compare):
        return _compare_predicate(expr, edm)
    if isinstance(expr, In):
        wanted = {_fold(value, edm) for value in _in_values(expr, edm)}
        if expr.negate:
            return lambda row: (value := row.get(path)) is None or _fold(value, edm) not in wanted
        return lambda row: (value := row.get(path)) is not None and _fold(value, edm) in wanted
    _string_call_check(expr, edm)
    needle = str(_fold(expr.value, edm))
    test: Callable[[str], bool] = {
        "contains": lambda text: needle in text,
        "startswith": lambda text: text.startswith(needle),
        "endswith": lambda text: text.endswith(needle),
    }[expr.func]
    return lambda row: isinstance(value := row.get(path), str) and test(str(_fold(value, edm)))


def _compare_predicate(expr: Compare, edm: EdmType) -> Predicate:
    path = expr.prop.path
    target = _fold(_compare_value(expr, edm), edm)
    if target is None:
        if expr.op in ("eq", "ne"):
            wanted_null = expr.op == "eq"
            return lambda row: (row.get(path) is None) is wanted_null
        return lambda row: False
    test = _OPS[expr.op][3]

    def predicate(row: Row) -> bool:
        value = row.get(path)
        if value is None:
            return expr.op == "ne"
        try:
            return bool(test(_fold(value, edm), target))
        except TypeError:
            return expr.op == "ne"

    return predicate
