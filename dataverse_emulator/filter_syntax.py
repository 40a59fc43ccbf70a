"""The parsed form of ``$filter``: the expression tree, its errors, and what its operators mean.

Shared by the parser (``odata_filter``) and the two translations (``filter_translate``), so each of
them reads one definition of an operator's SQL, OData name and Python test.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeAlias

from dataverse_emulator.values import EdmType


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


OPS: dict[str, tuple[str, str, str, Callable[[Any, Any], bool]]] = {
    # operator: (operator once the operands swap sides, SQL, OData operator kind, Python test)
    "eq": ("eq", "=", "Equal", operator.eq),
    "ne": ("ne", "IS NOT", "NotEqual", operator.ne),
    "gt": ("lt", ">", "GreaterThan", operator.gt),
    "ge": ("le", ">=", "GreaterThanOrEqual", operator.ge),
    "lt": ("gt", "<", "LessThan", operator.lt),
    "le": ("ge", "<=", "LessThanOrEqual", operator.le),
}
INT_RE = re.compile(r"-?[0-9]+")
DECIMAL_RE = re.compile(r"-?[0-9]+(?:\.[0-9]+)?")
_INT64 = 2**63


def int64(text: str) -> int:
    """An Edm.Int64 literal's value; ``ValueError`` when it is out of range."""
    number = int(text) if len(text) <= 20 else _INT64
    if not -_INT64 <= number < _INT64:
        raise ValueError(text)
    return number


STRING_FUNCS = ("contains", "startswith", "endswith")


def signature_error(func: str) -> QueryError:
    """The error for a string function called with operands of the wrong kinds."""
    return QueryError(
        f"No function signature for the function with name '{func}' matches the specified arguments. "
        f"The function signatures considered are: {func}(Edm.String Nullable=true, Edm.String Nullable=true)."
    )
