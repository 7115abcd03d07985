"""alyx.cel: the SQL push-down (SqlCompiler, run on SQLite) and the Python Evaluator agree.

A hypothesis property test generates records and CEL expressions over int, string, bool and null
values; whenever the compiler accepts an expression, the rows SQLite returns must be exactly the
records the Evaluator accepts.
"""
from __future__ import annotations

import math
import os

import peewee
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from alyx import cel
from alyx.fields.registry import lookup

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1

db = peewee.SqliteDatabase(":memory:")


class Row(peewee.Model):
    i = peewee.BigIntegerField(null=True)
    j = peewee.BigIntegerField(null=True)
    s = peewee.TextField(null=True)
    t = peewee.TextField(null=True)
    b = peewee.BooleanField(null=True)
    c = peewee.BooleanField(null=True)

    class Meta:
        database = db


TYPES = {"i": "int", "j": "int", "s": "string", "t": "string", "b": "bool", "c": "bool"}


def resolve(path: tuple[str, ...]) -> cel.Column:
    if len(path) != 1 or path[0] not in TYPES:
        raise cel.CelError(f"unknown name {'.'.join(path)!r}")
    return cel.Column(Row._meta.fields[path[0]], lookup(TYPES[path[0]]), path[0])


@pytest.fixture(scope="module", autouse=True)
def table():
    db.connect()
    db.create_tables([Row])
    yield
    db.close()


# -- strategies -----------------------------------------------------------------------------------
ALPHABET = st.sampled_from(list("abAB _%'\"\\é😀ß0"))
small_text = st.text(ALPHABET, max_size=4)
ints = st.one_of(st.integers(-3, 3), st.sampled_from([INT64_MIN, INT64_MAX, INT64_MIN + 1, INT64_MAX - 1]),
                 st.integers(INT64_MIN, INT64_MAX))
values = {"int": ints, "string": small_text, "bool": st.booleans()}

records = st.lists(st.fixed_dictionaries({name: st.one_of(st.none(), values[kind]) for name, kind in TYPES.items()}),
                   max_size=8)


def cel_string(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def int_literal(value: int) -> str:
    return str(value) if value >= 0 else f"-{-value}"


number_literals = st.one_of(
    ints.map(int_literal),
    st.integers(-(2**70), 2**70).map(int_literal),  # beyond 64 bits
    st.sampled_from([INT64_MIN - 1, INT64_MAX + 1, -(2**64), 2**64]).map(int_literal),
    st.sampled_from(["1.0", "0.5", "-2.5", "3.0", "9223372036854775807.0", "-9223372036854775808.0", "1e999",
                     "-1e999", "1e19", "-1e19"]),
)
literal_of = {"int": number_literals, "string": small_text.map(cel_string),
              "bool": st.sampled_from(["true", "false"])}
OPS = ["==", "!=", "<", "<=", ">", ">="]


@st.composite
def comparison(draw) -> str:
    name = draw(st.sampled_from(sorted(TYPES)))
    kind = TYPES[name]
    shape = draw(st.sampled_from(["literal", "flipped", "null", "column", "in", "method", "bare"]))
    op = draw(st.sampled_from(OPS))
    if shape == "literal":
        return f"{name} {op} {draw(literal_of[kind])}"
    if shape == "flipped":
        return f"{draw(literal_of[kind])} {op} {name}"
    if shape == "null":
        return f"{name} {draw(st.sampled_from(['==', '!=']))} null"
    if shape == "column":
        other = draw(st.sampled_from([n for n, k in TYPES.items() if k == kind]))
        return f"{name} {op} {other}"
    if shape == "in":
        items = draw(st.lists(st.one_of(literal_of[kind], st.just("null")), max_size=4))
        return f"{name} in [{', '.join(items)}]"
    if shape == "method" and kind == "string":
        method = draw(st.sampled_from(cel.STRING_METHODS))
        return f"{name}.{method}({draw(small_text.map(cel_string))})"
    if kind == "bool":
        return name
    return f"{name} {op} {draw(literal_of[kind])}"


expressions = st.recursive(
    st.one_of(comparison(), st.sampled_from(["true", "false", "1 == 1", '"a" < "b"', "null == null"])),
    lambda inner: st.one_of(
        st.tuples(inner, st.sampled_from(["&&", "||"]), inner).map(lambda t: f"({t[0]} {t[1]} {t[2]})"),
        inner.map(lambda e: f"!({e})"),
        inner.map(lambda e: f"!{e}" if e.startswith("(") else f"({e})"),
    ),
    max_leaves=8,
)


def run_both(expression: str, rows: list[dict]) -> tuple[set[int], set[int]] | None:
    """(positions of the rows SQLite returns, of those the Evaluator accepts), or None when the dialect
    refuses the expression."""
    try:
        node = cel.parse(expression)
        condition = cel.SqlCompiler(resolve, postgres=False).compile(node)
    except cel.CelError:
        return None
    Row.delete().execute()
    ids = [Row.insert(**row).execute() for row in rows]
    in_sql = {ids.index(r.id) for r in Row.select(Row.id).where(condition)}
    in_python = {n for n, row in enumerate(rows) if cel.Evaluator(lambda path, row=row: row[path[0]]).truth(node)}
    return in_sql, in_python


EXAMPLES = int(os.environ.get("ALYX_CEL_EXAMPLES", "400"))  # raise it to hunt for disagreements


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(expression=expressions, rows=records)
def test_sql_push_down_agrees_with_the_evaluator(expression, rows):
    outcome = run_both(expression, rows)
    assume(outcome is not None)
    in_sql, in_python = outcome
    assert in_sql == in_python, (expression, rows)


# -- examples the property test must keep covering ----------------------------------------------------
EDGE_CASES = [
    ("i == 3.5", [{"i": 3}], set()),
    ("i < 3.5", [{"i": 3}], {0}),
    ("i == -9223372036854775809", [{"i": INT64_MIN}], set()),
    ("i > -9223372036854775809", [{"i": INT64_MIN}], {0}),
    ("i < 9223372036854775808", [{"i": INT64_MAX}], {0}),
    ("i != 9223372036854775808", [{"i": INT64_MAX}, {"i": None}], {0, 1}),
    ("s != \"x\"", [{"s": None}, {"s": "x"}, {"s": "y"}], {0, 2}),
    ("!(s == \"x\")", [{"s": None}, {"s": "x"}], {0}),
    ("s in [\"x\", null]", [{"s": None}, {"s": "x"}, {"s": "y"}], {0, 1}),
    ("i == j", [{"i": None, "j": None}, {"i": 1, "j": None}, {"i": 2, "j": 2}], {0, 2}),
    ("i < j", [{"i": None, "j": 1}, {"i": 0, "j": 1}], {1}),
    ("!b", [{"b": None}, {"b": True}, {"b": False}], {0, 2}),
    ("s.contains(\"%\")", [{"s": "a%b"}, {"s": "ab"}], {0}),
    ("s.startsWith(\"_\")", [{"s": "_a"}, {"s": "xa"}], {0}),
    ("s.endsWith(\"é\")", [{"s": "café"}, {"s": "cafe"}], {0}),
    ("s.endsWith(\"\")", [{"s": ""}, {"s": None}], {0}),
    ("s < \"b\"", [{"s": "a"}, {"s": "é"}, {"s": "B"}], {0, 2}),
]


@pytest.mark.parametrize("expression,rows,expected", EDGE_CASES)
def test_edge_cases(expression, rows, expected):
    full = [{name: row.get(name) for name in TYPES} for row in rows]
    outcome = run_both(expression, full)
    assert outcome is not None
    assert outcome == (expected, expected)


def test_long_runs_of_one_operator_compile_flat():
    expression = " || ".join(f"i == {n}" for n in range(300))
    assert len(expression) < cel.MAX_EXPRESSION_LENGTH
    in_sql, in_python = run_both(expression, [{**dict.fromkeys(TYPES), "i": n} for n in (5, 299, 300)])
    assert in_sql == in_python and len(in_sql) == 2


@pytest.mark.parametrize("expression", [
    "!" * 30 + "b", "(" * 70 + "b" + ")" * 70, "(b && (c || " * 12 + "b" + "))" * 12,
])
def test_deep_nesting_is_refused_not_crashed(expression):
    with pytest.raises(cel.CelError, match="nests deeper"):
        cel.parse(expression)


@pytest.mark.parametrize("expression", [
    "i + 1 == 2", "i ? true : false", "size(s) == 1", "s.matches(\"a\")", "s.contains(t)", "{\"a\": 1}",
    "i == b\"x\"", "i >", "", "   ", "x" * 5000, "s == \"\x00\"", "i in i", "-s == 1",
])
def test_unsupported_or_invalid_expressions_are_cel_errors(expression):
    with pytest.raises(cel.CelError):
        cel.SqlCompiler(resolve, postgres=False).compile(cel.parse(expression))


def test_min_int64_neighbour_is_below_every_int64():
    # the float that stands for an int below the 64-bit range must not equal INT64_MIN
    assert math.nextafter(float(INT64_MIN), -math.inf) < INT64_MIN
