"""Tests for the OData $filter/$orderby/$select parser and its SQL and predicate translations."""

from __future__ import annotations

import random
import sqlite3
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal

import pytest

from dataverse_emulator.odata_filter import (
    MAX_DEPTH,
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
    parse_filter,
    parse_orderby,
    parse_select,
    to_predicate,
    to_sql,
)
from dataverse_emulator.values import EdmType

G1 = "0a1b2c3d-0000-4000-8000-00000000000a"
G2 = "0a1b2c3d-0000-4000-8000-00000000000b"
G3 = "0a1b2c3d-0000-4000-8000-00000000000c"


def micros(year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0) -> int:
    moment = datetime(year, month, day, hour, minute, second, tzinfo=UTC)
    return int(moment.timestamp()) * 1_000_000


NEW_YEAR = micros(2025, 1, 1)

COLUMNS: dict[str, EdmType] = {
    "name": EdmType.STRING,
    "accountid": EdmType.GUID,
    "modifiedon": EdmType.DATETIME,
    "amount": EdmType.DECIMAL,
    "quantity": EdmType.INT32,
    "big": EdmType.INT64,
    "active": EdmType.BOOLEAN,
}

ROWS: list[tuple[object, ...]] = [
    # id, name, accountid, modifiedon, amount, quantity, big, active
    (1, "Contoso", G1, NEW_YEAR, 10.5, 1, 5_000_000_000, 1),
    (2, "contoso", G2, NEW_YEAR + 123_000, 0.1, 2, None, 0),
    (3, "Fabrikam", None, micros(2024, 12, 31, 23, 59, 59), None, None, -1, 1),
    (4, None, G1, None, 3.0, 3, 0, None),
    (5, "50% off_sale\\", G3, micros(2025, 6, 1), -2.0, 0, 7, 0),
    (6, "Émile", G2, micros(2025, 6, 1, 12), 1.0, 10, 2, 1),
    (7, "émile", None, NEW_YEAR - 1, 1.0, -5, None, 1),
    (8, "O'Brien", G3, micros(2023, 1, 1), 100.0, 2, 9_000_000_000_000_000_000, 0),
    (9, "", G1, NEW_YEAR, 0.0, 1, 1, None),
    (10, "CONTOSO LTD", None, NEW_YEAR + 1, -0.5, 7, -9_000_000_000_000_000_000, 1),
]


def sql_resolve(name: str) -> Column:
    if name not in COLUMNS:
        raise QueryError(f"Could not find a property named '{name}' on type 'Microsoft.Dynamics.CRM.test'.")
    return Column(f'"{name}"', COLUMNS[name])


def edm_resolve(name: str) -> EdmType:
    return sql_resolve(name).edm


@pytest.fixture(scope="module")
def db() -> Iterator[sqlite3.Connection]:
    conn = sqlite3.connect(":memory:")
    conn.row_factory = sqlite3.Row
    conn.execute(
        "CREATE TABLE t (id INTEGER PRIMARY KEY, name TEXT, accountid TEXT, modifiedon INTEGER,"
        " amount REAL, quantity INTEGER, big INTEGER, active INTEGER)"
    )
    conn.executemany("INSERT INTO t VALUES (?, ?, ?, ?, ?, ?, ?, ?)", ROWS)
    yield conn
    conn.close()


def sql_ids(db: sqlite3.Connection, text: str) -> list[int]:
    where, params = to_sql(parse_filter(text), sql_resolve)
    return [row["id"] for row in db.execute(f"SELECT id FROM t WHERE {where} ORDER BY id", params)]


def predicate_ids(db: sqlite3.Connection, text: str) -> list[int]:
    predicate = to_predicate(parse_filter(text), edm_resolve)
    rows = [dict(row) for row in db.execute("SELECT * FROM t ORDER BY id")]
    return [int(row["id"]) for row in rows if predicate(row)]


def cmp(op: str, path: str, kind: str, value: object) -> Compare:
    return Compare(op, Property(path), Literal(kind, value))


A = cmp("eq", "a", "int", 1)
B = cmp("eq", "b", "int", 2)
C = cmp("eq", "c", "int", 3)


# --- literals -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("literal", "expected"),
    [
        ("null", Literal("null", None)),
        ("true", Literal("bool", True)),
        ("false", Literal("bool", False)),
        ("42", Literal("int", 42)),
        ("-7", Literal("int", -7)),
        ("0", Literal("int", 0)),
        ("9223372036854775807", Literal("int", 2**63 - 1)),
        ("-9223372036854775808", Literal("int", -(2**63))),
        ("3.25", Literal("decimal", Decimal("3.25"))),
        ("-0.5", Literal("decimal", Decimal("-0.5"))),
        ("'plain'", Literal("string", "plain")),
        ("''", Literal("string", "")),
        ("'it''s'", Literal("string", "it's")),
        ("''''", Literal("string", "'")),
        ("'a  b and c eq 1'", Literal("string", "a  b and c eq 1")),
        ("'Émile'", Literal("string", "Émile")),
        ("Microsoft.Dynamics.CRM.AttributeTypeCode'Lookup'", Literal("enum", "Lookup")),
        ("0A1B2C3D-0000-4000-8000-00000000000A", Literal("guid", G1)),
        ("0a1B2c3D-0000-4000-8000-00000000000a", Literal("guid", G1)),
        ("'0A1B2C3D-0000-4000-8000-00000000000A'", Literal("string", "0A1B2C3D-0000-4000-8000-00000000000A")),
        ("'2025-01-01'", Literal("string", "2025-01-01")),
        ("2025-01-01T00:00:00Z", Literal("datetime", NEW_YEAR)),
        ("2025-01-01T00:00:00.123Z", Literal("datetime", NEW_YEAR + 123_000)),
        ("2025-01-01T00:00:00.1234567Z", Literal("datetime", NEW_YEAR + 123_456)),
        ("2025-01-01", Literal("datetime", NEW_YEAR)),
        ("2025-01-01T00:00:00", Literal("datetime", NEW_YEAR)),
        ("2025-01-01T10:30Z", Literal("datetime", micros(2025, 1, 1, 10, 30))),
        ("2025-01-01T02:00:00+02:00", Literal("datetime", NEW_YEAR)),
        ("2024-12-31T19:00:00-05:00", Literal("datetime", NEW_YEAR)),
        ("2025-01-01T00:00:00+05:30", Literal("datetime", NEW_YEAR - (5 * 3600 + 1800) * 1_000_000)),
    ],
)
def test_literal_kinds(literal: str, expected: Literal) -> None:
    assert parse_filter(f"x eq {literal}") == Compare("eq", Property("x"), expected)


def test_decimal_literal_keeps_its_digits() -> None:
    expr = parse_filter("x eq 0.10")
    assert isinstance(expr, Compare)
    assert str(expr.literal.value) == "0.10"


@pytest.mark.parametrize("path", ["modifiedon", "_parentcustomerid_value", "sdkmessageid/name", "Name2"])
def test_property_paths(path: str) -> None:
    assert parse_filter(f"{path} eq 1") == cmp("eq", path, "int", 1)


def test_whitespace_is_flexible() -> None:
    assert parse_filter("   a   eq   1   ") == A
    assert parse_filter("a eq 1\tand\tb eq 2") == And(A, B)


# --- operators, precedence, flipping -------------------------------------------------------------


@pytest.mark.parametrize("op", ["eq", "ne", "gt", "ge", "lt", "le"])
def test_every_comparison_operator(op: str) -> None:
    assert parse_filter(f"a {op} 1") == cmp(op, "a", "int", 1)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("null eq x", cmp("eq", "x", "null", None)),
        ("null ne x", cmp("ne", "x", "null", None)),
        ("5 lt x", cmp("gt", "x", "int", 5)),
        ("5 le x", cmp("ge", "x", "int", 5)),
        ("5 gt x", cmp("lt", "x", "int", 5)),
        ("5 ge x", cmp("le", "x", "int", 5)),
        ("5 eq x", cmp("eq", "x", "int", 5)),
        ("'a' ne x", cmp("ne", "x", "string", "a")),
    ],
)
def test_literal_on_the_left_is_flipped(text: str, expected: Compare) -> None:
    assert parse_filter(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("a eq 1 or b eq 2 and c eq 3", Or(A, And(B, C))),
        ("a eq 1 and b eq 2 or c eq 3", Or(And(A, B), C)),
        ("(a eq 1 or b eq 2) and c eq 3", And(Or(A, B), C)),
        ("a eq 1 and (b eq 2 or c eq 3)", And(A, Or(B, C))),
        ("a eq 1 and b eq 2 and c eq 3", And(And(A, B), C)),
        ("a eq 1 or b eq 2 or c eq 3", Or(Or(A, B), C)),
        ("not a eq 1 and b eq 2", And(Not(A), B)),
        ("not a eq 1 or b eq 2", Or(Not(A), B)),
        ("not (a eq 1 and b eq 2)", Not(And(A, B))),
        ("not not a eq 1", Not(Not(A))),
        ("((a eq 1))", A),
        ("(a eq 1)and(b eq 2)", And(A, B)),
    ],
)
def test_precedence_and_parentheses(text: str, expected: Expr) -> None:
    assert parse_filter(text) == expected


# --- functions ------------------------------------------------------------------------------------


@pytest.mark.parametrize("func", ["contains", "startswith", "endswith"])
def test_string_functions(func: str) -> None:
    assert parse_filter(f"{func}(name,'O''Br')") == StringCall(func, Property("name"), "O'Br")
    assert parse_filter(f"not {func}( name , 'x' )") == Not(StringCall(func, Property("name"), "x"))


def test_in_and_not_in() -> None:
    expr = parse_filter(f"Microsoft.Dynamics.CRM.In(PropertyName='contactid',PropertyValues=['{G1}','b'])")
    assert expr == In(Property("contactid"), (G1, "b"), negate=False)
    expr = parse_filter("Microsoft.Dynamics.CRM.NotIn(PropertyValues=['it''s'], PropertyName='name')")
    assert expr == In(Property("name"), ("it's",), negate=True)
    expr = parse_filter("a eq 1 and Microsoft.Dynamics.CRM.In(PropertyName='a',PropertyValues=['1','2'])")
    assert expr == And(A, In(Property("a"), ("1", "2"), negate=False))
    # The documented form quotes the values as JSON strings (double quotes, backslash escapes).
    expr = parse_filter(
        'Microsoft.Dynamics.CRM.In(PropertyName=\'name\',PropertyValues=["Contoso","it\'s \\"x\\""])'
    )
    assert expr == In(Property("name"), ("Contoso", 'it\'s "x"'), negate=False)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("Microsoft.Dynamics.CRM.In(PropertyName='a',PropertyValues=[])", "at least one value"),
        ("Microsoft.Dynamics.CRM.NotIn(PropertyName='a')", "needs both PropertyName and PropertyValues"),
        ("Microsoft.Dynamics.CRM.In(PropertyValues=['a'])", "needs both PropertyName and PropertyValues"),
        ("Microsoft.Dynamics.CRM.In(PropertyName='a b',PropertyValues=['a'])", "a property name in single"),
        ("Microsoft.Dynamics.CRM.In(PropertyName=a,PropertyValues=['a'])", "a property name in single"),
        (
            "Microsoft.Dynamics.CRM.In(PropertyName='a',PropertyValues=['a',1])",
            "a value in single or double quotes",
        ),
        ("Microsoft.Dynamics.CRM.In(PropertyName='a',PropertyName='b')", "each parameter once"),
        (
            "Microsoft.Dynamics.CRM.In(Property='a',PropertyValues=['a'])",
            "'PropertyName' or 'PropertyValues'",
        ),
        ("Microsoft.Dynamics.CRM.In(PropertyName='a',PropertyValues=['a'],)", "'PropertyName' or"),
        ("Microsoft.Dynamics.CRM.In(PropertyName='a',PropertyValues=['a']", "expected ')'"),
        ("Microsoft.Dynamics.CRM.LastXDays(PropertyName='a',PropertyValue=3)", "unknown function"),
        ("Contains(name,'x')", "unknown function with name 'Contains'"),
        ("foo(name)", "unknown function with name 'foo'"),
        ("contains(name,5)", "No function signature for the function with name 'contains'"),
        ("startswith('x',name)", "No function signature for the function with name 'startswith'"),
        ("endswith(name,other)", "No function signature for the function with name 'endswith'"),
        ("contains(name,'x') eq true", "expected 'and', 'or' or the end of the filter"),
    ],
)
def test_bad_function_calls(text: str, message: str) -> None:
    with pytest.raises(QueryError, match=message.replace("(", r"\(").replace(")", r"\)")) as caught:
        parse_filter(text)
    assert caught.value.code == "0x80060888"


# --- syntax errors --------------------------------------------------------------------------------


def test_syntax_error_message_names_position_and_token() -> None:
    with pytest.raises(QueryError) as caught:
        parse_filter("name eq")
    assert caught.value.message == (
        "Syntax error at position 7 in 'name eq': expected a property name or a literal, "
        "found the end of the filter."
    )
    assert str(caught.value) == caught.value.message
    with pytest.raises(QueryError) as caught:
        parse_filter("name EQ 'x'")
    assert caught.value.message == (
        "Syntax error at position 5 in 'name EQ 'x'': expected a comparison operator "
        "(eq, ne, gt, ge, lt, le), found 'EQ'."
    )


@pytest.mark.parametrize(
    ("text", "position"),
    [
        ("", 0),
        ("name eq", 7),
        ("name EQ 'x'", 5),
        ("name Eq 'x'", 5),
        ("name eq 'x' AND b eq 1", 12),
        ("NOT name eq 'x'", 4),
        ("(name eq 'x'", 12),
        ("name eq 'x')", 11),
        ("name eq 'x", 8),
        ("name eq 'x' and", 15),
        ("eq 'x'", 0),
        ("and eq 1", 0),
        ("name eq 'x' name eq 'y'", 12),
        ("a/b/c eq 1", 0),
        ("a. eq 1", 0),
        ("name eq $x", 8),
        ("name eq 1.2.3", 8),
        ("name eq 5abc", 8),
        ("name eq 2025-02-30", 8),
        ("name eq 2025-01-01T25:00:00Z", 8),
        ("name eq 9223372036854775808", 8),
        ("name eq 99999999999999999999999999999999", 8),
        ("not", 3),
        ("name eq 'x' and ()", 17),
        ("contains(name 'x')", 14),
        ("name in ('a','b')", 5),
        ("name eq -", 8),
        ("true", 4),
        ("name", 4),
    ],
)
def test_syntax_errors_name_the_position(text: str, position: int) -> None:
    with pytest.raises(QueryError) as caught:
        parse_filter(text)
    assert caught.value.message.startswith(f"Syntax error at position {position} in '{text}'")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("a eq b", "one property and one literal; found two properties"),
        ("1 eq 2", "one property and one literal; found two literals"),
        ("null eq null", "found two literals"),
        ("name eq NULL", "found two properties"),
    ],
)
def test_comparisons_need_one_property_and_one_literal(text: str, message: str) -> None:
    with pytest.raises(QueryError, match=message):
        parse_filter(text)


def test_nesting_is_bounded() -> None:
    atom = "name eq 'x'"
    deepest = "(" * MAX_DEPTH + atom + ")" * MAX_DEPTH
    assert parse_filter(deepest) == cmp("eq", "name", "string", "x")
    assert parse_filter("not " * MAX_DEPTH + atom) is not None
    for depth in (MAX_DEPTH + 1, 100, 20_000):
        with pytest.raises(QueryError, match=f"deeper than {MAX_DEPTH} levels"):
            parse_filter("(" * depth + atom + ")" * depth)
        with pytest.raises(QueryError, match=f"deeper than {MAX_DEPTH} levels"):
            parse_filter("not " * depth + atom)
        with pytest.raises(QueryError, match=f"deeper than {MAX_DEPTH} levels"):
            parse_filter("(not " * depth + atom + ")" * depth)


def test_long_chains_translate_without_recursion_limits(db: sqlite3.Connection) -> None:
    text = " and ".join(["quantity ne 999"] * 3000) + " or " + " or ".join(["name eq 'x'"] * 3000)
    where, params = to_sql(parse_filter(text), sql_resolve)
    assert len(params) == 6000
    found = [row["id"] for row in db.execute(f"SELECT id FROM t WHERE {where} ORDER BY id", params)]
    assert found == [row[0] for row in ROWS]
    assert predicate_ids(db, text) == found


# --- type checking --------------------------------------------------------------------------------


def incompatible(left: str, right: str, kind: str) -> str:
    return (
        "A binary operator with incompatible types was detected. "
        f"Found operand types '{left}' and '{right}' for operator kind '{kind}'."
    )


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("accountid eq 'x'", incompatible("Edm.Guid", "Edm.String", "Equal")),
        (f"accountid eq '{G1}'", incompatible("Edm.Guid", "Edm.String", "Equal")),
        ("'x' ne accountid", incompatible("Edm.Guid", "Edm.String", "NotEqual")),
        ("name gt 5", incompatible("Edm.String", "Edm.Int32", "GreaterThan")),
        ("name eq 99999999999", incompatible("Edm.String", "Edm.Int64", "Equal")),
        (f"name eq {G1}", incompatible("Edm.String", "Edm.Guid", "Equal")),
        ("modifiedon le '2025-01-01'", incompatible("Edm.DateTimeOffset", "Edm.String", "LessThanOrEqual")),
        ("active ne 1", incompatible("Edm.Boolean", "Edm.Int32", "NotEqual")),
        ("quantity eq true", incompatible("Edm.Int32", "Edm.Boolean", "Equal")),
        (f"quantity lt {G1}", incompatible("Edm.Int32", "Edm.Guid", "LessThan")),
        ("amount ge 2025-01-01", incompatible("Edm.Decimal", "Edm.DateTimeOffset", "GreaterThanOrEqual")),
        ("big eq 1.5", None),
        ("quantity eq 2.5", None),
        ("amount eq 3", None),
        ("big eq 99999999999", None),
        ("accountid eq null", None),
        ("null eq active", None),
        ("modifiedon gt null", None),
    ],
)
def test_type_checking(text: str, message: str | None) -> None:
    expr = parse_filter(text)
    if message is None:
        to_sql(expr, sql_resolve)
        to_predicate(expr, edm_resolve)
        return
    for translate in (lambda: to_sql(expr, sql_resolve), lambda: to_predicate(expr, edm_resolve)):
        with pytest.raises(QueryError) as caught:
            translate()
        assert caught.value.message == message
        assert caught.value.code == "0x80060888"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "Microsoft.Dynamics.CRM.In(PropertyName='accountid',PropertyValues=['0a1b2c3d-0000-4000-8000-00000000000a','nope'])",
            "The value 'nope' in PropertyValues of 'Microsoft.Dynamics.CRM.In' is not a valid Edm.Guid "
            "for property 'accountid'.",
        ),
        (
            "Microsoft.Dynamics.CRM.NotIn(PropertyName='quantity',PropertyValues=['1','x1'])",
            "The value 'x1' in PropertyValues of 'Microsoft.Dynamics.CRM.NotIn' is not a valid Edm.Int32 "
            "for property 'quantity'.",
        ),
        (
            "Microsoft.Dynamics.CRM.In(PropertyName='big',PropertyValues=['99999999999999999999'])",
            "The value '99999999999999999999' in PropertyValues of 'Microsoft.Dynamics.CRM.In' "
            "is not a valid Edm.Int64 for property 'big'.",
        ),
        (
            "Microsoft.Dynamics.CRM.In(PropertyName='modifiedon',PropertyValues=['yesterday'])",
            "The value 'yesterday' in PropertyValues of 'Microsoft.Dynamics.CRM.In' is not a valid "
            "Edm.DateTimeOffset for property 'modifiedon'.",
        ),
        (
            "Microsoft.Dynamics.CRM.In(PropertyName='active',PropertyValues=['1'])",
            "The value '1' in PropertyValues of 'Microsoft.Dynamics.CRM.In' is not a valid Edm.Boolean "
            "for property 'active'.",
        ),
        (
            "Microsoft.Dynamics.CRM.In(PropertyName='amount',PropertyValues=['1e5'])",
            "The value '1e5' in PropertyValues of 'Microsoft.Dynamics.CRM.In' is not a valid Edm.Decimal "
            "for property 'amount'.",
        ),
        (
            "contains(accountid,'0a1b')",
            "No function signature for the function with name 'contains' matches the specified arguments. "
            "The function signatures considered are: "
            "contains(Edm.String Nullable=true, Edm.String Nullable=true).",
        ),
        ("startswith(quantity,'1')", "No function signature for the function with name 'startswith'"),
        ("nosuchcolumn eq 1", "Could not find a property named 'nosuchcolumn'"),
        ("name eq 'x' or nosuch/name eq 'y'", "Could not find a property named 'nosuch/name'"),
    ],
)
def test_value_and_function_type_errors(text: str, message: str) -> None:
    expr = parse_filter(text)
    with pytest.raises(QueryError) as caught:
        to_sql(expr, sql_resolve)
    assert caught.value.message.startswith(message)
    with pytest.raises(QueryError) as caught:
        to_predicate(expr, edm_resolve)
    assert caught.value.message.startswith(message)


def test_resolve_is_called_for_every_property() -> None:
    text = (
        "a eq 1 and (b eq 2 or contains(c,'x')) and not "
        "Microsoft.Dynamics.CRM.In(PropertyName='d',PropertyValues=['1']) or e/f eq null"
    )
    seen: list[str] = []

    def record(name: str) -> Column:
        seen.append(name)
        return Column(name, EdmType.STRING if name == "c" else EdmType.INT32)

    to_sql(parse_filter(text), record)
    assert seen == ["a", "b", "c", "d", "e/f"]
    seen.clear()
    to_predicate(parse_filter(text), lambda name: record(name).edm)
    assert seen == ["a", "b", "c", "d", "e/f"]


# --- SQL text -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "sql", "params"),
    [
        ("name eq null", '"name" IS NULL', []),
        ("null eq name", '"name" IS NULL', []),
        ("name ne null", '"name" IS NOT NULL', []),
        ("quantity gt null", "0", []),
        ("name eq 'A'", '"name" COLLATE NOCASE = ?', ["A"]),
        ("name ne 'A'", '"name" COLLATE NOCASE IS NOT ?', ["A"]),
        ("quantity ne 3", '"quantity" IS NOT ?', [3]),
        ("5 lt quantity", '"quantity" > ?', [5]),
        ("quantity le -1", '"quantity" <= ?', [-1]),
        ("amount lt 1.5", '"amount" < ?', [1.5]),
        ("active eq true", '"active" = ?', [1]),
        ("active ne false", '"active" IS NOT ?', [0]),
        ("modifiedon ge 2025-01-01T02:00:00+02:00", '"modifiedon" >= ?', [NEW_YEAR]),
        ("accountid eq 0A1B2C3D-0000-4000-8000-00000000000A", '"accountid" = ?', [G1]),
        (
            "name eq 'a' and quantity eq 1 or not active eq true",
            '(("name" COLLATE NOCASE = ? AND "quantity" = ?) OR NOT IFNULL("active" = ?, 0))',
            ["a", 1, 1],
        ),
        (
            "Microsoft.Dynamics.CRM.In(PropertyName='accountid',PropertyValues=['0A1B2C3D-0000-4000-8000-00000000000A','"
            + G2
            + "'])",
            '"accountid" IN (?, ?)',
            [G1, G2],
        ),
        (
            "Microsoft.Dynamics.CRM.NotIn(PropertyName='quantity',PropertyValues=['5'])",
            '("quantity" IS NULL OR "quantity" NOT IN (?))',
            [5],
        ),
        (
            "Microsoft.Dynamics.CRM.In(PropertyName='name',PropertyValues=['A','b'])",
            '"name" COLLATE NOCASE IN (?, ?)',
            ["A", "b"],
        ),
        (
            "Microsoft.Dynamics.CRM.In(PropertyName='modifiedon',PropertyValues=['2025-01-01'])",
            '"modifiedon" IN (?)',
            [NEW_YEAR],
        ),
        (
            "Microsoft.Dynamics.CRM.In(PropertyName='active',PropertyValues=['true','false'])",
            '"active" IN (?, ?)',
            [1, 0],
        ),
        (
            "Microsoft.Dynamics.CRM.In(PropertyName='amount',PropertyValues=['-2.5','3'])",
            '"amount" IN (?, ?)',
            [-2.5, 3.0],
        ),
        ("contains(name,'50%_\\')", "\"name\" LIKE ? ESCAPE '\\'", ["%50\\%\\_\\\\%"]),
        ("startswith(name,'ab')", "\"name\" LIKE ? ESCAPE '\\'", ["ab%"]),
        ("endswith(name,'ab')", "\"name\" LIKE ? ESCAPE '\\'", ["%ab"]),
        ("name eq 'x'' OR 1=1 --'", '"name" COLLATE NOCASE = ?', ["x' OR 1=1 --"]),
    ],
)
def test_sql_text(text: str, sql: str, params: list[object]) -> None:
    assert to_sql(parse_filter(text), sql_resolve) == (sql, params)


# --- SQL and predicate agree ----------------------------------------------------------------------

EXPECTED: list[tuple[str, list[int]]] = [
    ("name eq 'contoso'", [1, 2]),
    ("name eq 'CONTOSO'", [1, 2]),
    ("name ne 'contoso'", [3, 4, 5, 6, 7, 8, 9, 10]),
    ("name eq null", [4]),
    ("null ne name", [1, 2, 3, 5, 6, 7, 8, 9, 10]),
    ("name eq ''", [9]),
    ("name eq 'émile'", [7]),
    ("name eq 'o''brien'", [8]),
    ("name gt 'd'", [3, 6, 7, 8]),
    ("name lt 'contoso ltd'", [1, 2, 5, 9]),
    ("contains(name,'CONTOSO')", [1, 2, 10]),
    ("contains(name,'%')", [5]),
    ("contains(name,'_')", [5]),
    ("contains(name,'\\')", [5]),
    ("contains(name,'')", [1, 2, 3, 5, 6, 7, 8, 9, 10]),
    ("startswith(name,'con')", [1, 2, 10]),
    ("startswith(name,'50%')", [5]),
    ("startswith(name,'5_')", []),
    ("endswith(name,'LTD')", [10]),
    ("endswith(name,'mile')", [6, 7]),
    ("not contains(name,'contoso')", [3, 4, 5, 6, 7, 8, 9]),
    (f"accountid eq {G1.upper()}", [1, 4, 9]),
    (f"accountid ne {G1}", [2, 3, 5, 6, 7, 8, 10]),
    (f"not (accountid eq {G1})", [2, 3, 5, 6, 7, 8, 10]),
    ("modifiedon eq 2025-01-01", [1, 9]),
    ("modifiedon ge 2025-01-01T00:00:00.123Z", [2, 5, 6]),
    ("modifiedon gt 2025-01-01", [2, 5, 6, 10]),
    ("modifiedon lt 2025-01-01T02:00:00+02:00", [3, 7, 8]),
    ("modifiedon gt null", []),
    ("modifiedon le null", []),
    ("amount eq 0.1", [2]),
    ("amount gt 1", [1, 4, 8]),
    ("amount ge 1.0", [1, 4, 6, 7, 8]),
    ("amount lt 0", [5, 10]),
    ("quantity eq 2", [2, 8]),
    ("2 lt quantity", [4, 6, 10]),
    ("quantity le 1.5", [1, 5, 7, 9]),
    ("quantity ne 2", [1, 3, 4, 5, 6, 7, 9, 10]),
    ("big gt 4000000000", [1, 8]),
    ("big lt -8000000000000000000", [10]),
    ("active eq true", [1, 3, 6, 7, 10]),
    ("active eq false", [2, 5, 8]),
    ("active ne true", [2, 4, 5, 8, 9]),
    ("active eq null", [4, 9]),
    ("not active eq true", [2, 4, 5, 8, 9]),
    ("not (quantity gt 2)", [1, 2, 3, 5, 7, 8, 9]),
    ("not not quantity gt 2", [4, 6, 10]),
    ("quantity eq 1 or quantity eq 2 and active eq false", [1, 2, 8, 9]),
    ("(quantity eq 1 or quantity eq 2) and active eq false", [2, 8]),
    ("Microsoft.Dynamics.CRM.In(PropertyName='name',PropertyValues=['CONTOSO','fabrikam'])", [1, 2, 3]),
    (
        "Microsoft.Dynamics.CRM.NotIn(PropertyName='name',PropertyValues=['CONTOSO','fabrikam'])",
        [4, 5, 6, 7, 8, 9, 10],
    ),
    (
        f"Microsoft.Dynamics.CRM.In(PropertyName='accountid',PropertyValues=['{G2.upper()}','{G3}'])",
        [2, 5, 6, 8],
    ),
    (
        f"Microsoft.Dynamics.CRM.NotIn(PropertyName='accountid',PropertyValues=['{G1}'])",
        [2, 3, 5, 6, 7, 8, 10],
    ),
    ("Microsoft.Dynamics.CRM.In(PropertyName='quantity',PropertyValues=['1','10'])", [1, 6, 9]),
    ('Microsoft.Dynamics.CRM.In(PropertyName=\'quantity\',PropertyValues=["1","10"])', [1, 6, 9]),
    (
        "Microsoft.Dynamics.CRM.NotIn(PropertyName='quantity',PropertyValues=['1','10'])",
        [2, 3, 4, 5, 7, 8, 10],
    ),
    ("Microsoft.Dynamics.CRM.In(PropertyName='amount',PropertyValues=['1','0.1'])", [2, 6, 7]),
    ("Microsoft.Dynamics.CRM.In(PropertyName='active',PropertyValues=['false'])", [2, 5, 8]),
    ("Microsoft.Dynamics.CRM.In(PropertyName='modifiedon',PropertyValues=['2025-01-01T00:00:00Z'])", [1, 9]),
    (
        "not Microsoft.Dynamics.CRM.In(PropertyName='quantity',PropertyValues=['1','10'])",
        [2, 3, 4, 5, 7, 8, 10],
    ),
]


@pytest.mark.parametrize(("text", "expected"), EXPECTED)
def test_sql_and_predicate_give_the_expected_rows(
    db: sqlite3.Connection, text: str, expected: list[int]
) -> None:
    assert sql_ids(db, text) == expected
    assert predicate_ids(db, text) == expected


def test_guids_compare_exactly_as_stored_in_both_translations(db: sqlite3.Connection) -> None:
    text = f"accountid eq {G1}"
    assert to_predicate(parse_filter(text), edm_resolve)({"accountid": G1.upper()}) is False
    where, params = to_sql(parse_filter(text), sql_resolve)
    found = db.execute(f"SELECT count(*) FROM (SELECT ? AS accountid) WHERE {where}", [G1.upper(), *params])
    assert found.fetchone()[0] == 0


def test_predicate_accepts_python_booleans_and_missing_keys() -> None:
    rows: list[dict[str, object]] = [{"active": True}, {"active": False}, {"active": None}, {}]
    matches = to_predicate(parse_filter("active eq true"), edm_resolve)
    assert [matches(row) for row in rows] == [True, False, False, False]
    matches = to_predicate(parse_filter("active ne true"), edm_resolve)
    assert [matches(row) for row in rows] == [False, True, True, True]


STRING_SAMPLES = ["contoso", "CONTOSO", "Émile", "émile", "", "o''brien", "50%", "_", "\\", "ltd", "e"]
LITERALS: dict[str, list[str]] = {
    "name": [f"'{sample}'" for sample in STRING_SAMPLES],
    "accountid": [G1, G2.upper(), G3, "00000000-0000-0000-0000-000000000000"],
    "modifiedon": [
        "2025-01-01",
        "2025-01-01T00:00:00.123Z",
        "2024-12-31T23:59:59Z",
        "2025-06-01T14:00:00+02:00",
    ],
    "amount": ["0.1", "3", "-2.0", "10.5", "1", "0"],
    "quantity": ["1", "2", "-5", "10", "2.5", "0"],
    "big": ["5000000000", "-1", "0", "9000000000000000000", "7"],
    "active": ["true", "false"],
}
IN_VALUES: dict[str, list[str]] = {
    "name": ["contoso", "FABRIKAM", "Émile", "", "o'brien"],
    "accountid": [G1, G2.upper(), G3],
    "modifiedon": ["2025-01-01", "2025-06-01T00:00:00Z", "2023-01-01T00:00:00Z"],
    "amount": ["0.1", "1", "-2"],
    "quantity": ["1", "2", "10"],
    "big": ["-1", "7", "5000000000"],
    "active": ["true", "false"],
}


def random_atom(rng: random.Random) -> str:
    column = rng.choice(list(COLUMNS))
    roll = rng.random()
    if roll < 0.1:
        return f"{column} {rng.choice(['eq', 'ne', 'gt', 'le'])} null"
    if roll < 0.3 and COLUMNS[column] is EdmType.STRING:
        return (
            f"{rng.choice(['contains', 'startswith', 'endswith'])}({column},'{rng.choice(STRING_SAMPLES)}')"
        )
    if roll < 0.45:
        func = rng.choice(["In", "NotIn"])
        values = ",".join("'" + value.replace("'", "''") + "'" for value in rng.sample(IN_VALUES[column], 2))
        return f"Microsoft.Dynamics.CRM.{func}(PropertyName='{column}',PropertyValues=[{values}])"
    op = rng.choice(["eq", "ne", "gt", "ge", "lt", "le"])
    literal = rng.choice(LITERALS[column])
    return f"{literal} {op} {column}" if rng.random() < 0.2 else f"{column} {op} {literal}"


def random_filter(rng: random.Random, depth: int = 0) -> str:
    roll = rng.random()
    if depth < 4 and roll < 0.35:
        joiner = rng.choice([" and ", " or "])
        return random_filter(rng, depth + 1) + joiner + random_filter(rng, depth + 1)
    if depth < 4 and roll < 0.5:
        return "not " + random_filter(rng, depth + 1)
    if depth < 4 and roll < 0.65:
        return "(" + random_filter(rng, depth + 1) + ")"
    return random_atom(rng)


def test_sql_and_predicate_agree_on_random_filters(db: sqlite3.Connection) -> None:
    rng = random.Random(20250101)
    non_trivial = 0
    for _ in range(600):
        text = random_filter(rng)
        found = sql_ids(db, text)
        assert predicate_ids(db, text) == found, text
        non_trivial += 0 < len(found) < len(ROWS)
    assert non_trivial > 200


# --- fuzz -----------------------------------------------------------------------------------------

FUZZ_TOKENS = [
    "name", "quantity", "accountid", "modifiedon", "active", "a/b", "a/b/c", "eq", "ne", "gt", "EQ", "and",
    "or", "not", "AND", "(", ")", "((", "'x'", "''", "'", "'it''s'", "null", "true", "True", "1", "-2.5",
    "1.", ".5", "-", G1.upper(), "2025-01-01", "2025-01-01T00:00:00Z", "2025-13-40", "+02:00", "contains(",
    "startswith", "endswith(name,", ",", "Microsoft.Dynamics.CRM.In(", "Microsoft.Dynamics.CRM.NotIn",
    "PropertyName=", "PropertyValues=[", "]", "[", "=", "/", ".", "$", "%", "\\", "é", "\t", "\x00", "9" * 30,
]  # fmt: skip


def test_fuzz_only_query_errors_escape(db: sqlite3.Connection) -> None:
    rng = random.Random(7)
    parsed = 0
    for index in range(4000):
        if index % 3 == 0:
            text = "".join(rng.choice("ab eqn()'1-:T.Z,/[]=") for _ in range(rng.randint(0, 25)))
        elif index % 3 == 1:
            text = rng.choice(["", " "]).join(rng.choice(FUZZ_TOKENS) for _ in range(rng.randint(1, 9)))
        else:
            text = mutate(rng, random_filter(rng))
        try:
            expr = parse_filter(text)
            where, params = to_sql(expr, sql_resolve)
            predicate = to_predicate(expr, edm_resolve)
        except QueryError:
            continue
        parsed += 1
        found = [row["id"] for row in db.execute(f"SELECT id FROM t WHERE {where} ORDER BY id", params)]
        assert [row[0] for row in ROWS if predicate(dict(zip(db_columns(db), row, strict=True)))] == found
    assert parsed > 300


def mutate(rng: random.Random, text: str) -> str:
    for _ in range(rng.randint(0, 2)):
        at = rng.randrange(len(text) + 1)
        piece = rng.choice([*FUZZ_TOKENS, " ", "'", "(", ")", "0", "a"])
        text = rng.choice(
            [text[:at] + piece + text[at:], text[:at] + text[at + 1 :], text[:at] + piece + text[at + 1 :]]
        )
    return text


def db_columns(db: sqlite3.Connection) -> list[str]:
    return [column[1] for column in db.execute("PRAGMA table_info(t)")]


# --- $orderby and $select -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("name", [("name", False)]),
        ("name asc", [("name", False)]),
        ("name desc", [("name", True)]),
        (
            "modifiedon desc,_parentcustomerid_value",
            [("modifiedon", True), ("_parentcustomerid_value", False)],
        ),
        (" name  desc , createdon asc ", [("name", True), ("createdon", False)]),
    ],
)
def test_orderby(text: str, expected: list[tuple[str, bool]]) -> None:
    assert parse_orderby(text) == expected


@pytest.mark.parametrize(
    "text",
    ["", " ", "name,", ",name", "name DESC", "name descending", "name desc x", "na-me", "a/b", "name;"],
)
def test_orderby_rejects_junk(text: str) -> None:
    with pytest.raises(QueryError, match=r"Syntax error in \$orderby"):
        parse_orderby(text)


def test_select() -> None:
    assert parse_select("name,accountid") == ["name", "accountid"]
    assert parse_select("name, _parentcustomerid_value ") == ["name", "_parentcustomerid_value"]
    assert parse_select("name,name") == ["name", "name"]


@pytest.mark.parametrize("text", ["", " ", "name,", "a,,b", "a b", "a/b", "*", "1abc", "name;drop"])
def test_select_rejects_junk(text: str) -> None:
    with pytest.raises(QueryError, match=r"Syntax error in \$select"):
        parse_select(text)


def test_query_error_carries_code_and_message() -> None:
    error = QueryError("bad", code="0x80040203")
    assert (error.message, error.code, str(error)) == ("bad", "0x80040203", "bad")
    assert QueryError("bad").code == "0x80060888"
