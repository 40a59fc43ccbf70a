"""``$filter`` trees to SQL (stored tables) and to Python predicates (in-memory lists such as metadata).

Both translations give the same answer on the same rows; the choices they share (null-safe ``ne``,
two-valued logic, ASCII-only case folding) are described in ``odata_filter``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from decimal import Decimal
from typing import TypeAlias

from dataverse_emulator.filter_syntax import (
    DECIMAL_RE,
    INT_RE,
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
    QueryError,
    StringCall,
    int64,
    signature_error,
)
from dataverse_emulator.values import EdmType, normalize_guid, parse_datetime

_CHUNK = 50
"""Most operands joined in one SQL ``AND``/``OR`` group, so SQLite's expression depth limit holds."""

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
            f"'{edm.value}' and '{_literal_edm(literal)}' for operator kind '{OPS[expr.op][2]}'."
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
    if edm is EdmType.DECIMAL and DECIMAL_RE.fullmatch(text):
        return float(text)
    if edm in (EdmType.INT32, EdmType.INT64) and INT_RE.fullmatch(text):
        return int64(text)
    raise ValueError(text)


def _string_call_check(expr: StringCall, edm: EdmType) -> None:
    if edm is not EdmType.STRING or expr.func not in STRING_FUNCS:
        raise signature_error(expr.func)


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
        return f"{collated} {OPS[expr.op][1]} ?"
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
    test = OPS[expr.op][3]

    def predicate(row: Row) -> bool:
        value = row.get(path)
        if value is None:
            return expr.op == "ne"
        try:
            return bool(test(_fold(value, edm), target))
        except TypeError:
            return expr.op == "ne"

    return predicate
