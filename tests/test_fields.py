"""alyx.fields: the registry, and each field type through its public methods (validator, column,
JSON Schema, query value, CEL literal, conversion, settings, JSON form)."""
from __future__ import annotations

import datetime as dt
import json
import uuid
from typing import Any

import peewee
import pytest
from marshmallow import ValidationError

from alyx import cel
from alyx.collection import Collection
from alyx.fields.base import FieldSpec, FieldType, NoEquality
from alyx.fields.datetime import DateTimeField
from alyx.fields.number import NumberType
from alyx.fields.registry import FIELD_TYPES, OPTIONS, TYPES, accepting, lookup
from alyx.models import build_model
from alyx.schema import CollectionSpec

ALL = ("string", "text", "int", "float", "bool", "datetime", "date", "json", "email", "url", "uuid", "select",
       "relation", "file")


def spec(ftype: str, **settings: Any) -> FieldSpec:
    if ftype == "select":
        settings.setdefault("values", ("a", "b"))
    if ftype == "relation":
        settings.setdefault("collection", "owners")
    return FieldSpec("f", ftype, **settings)


def valid(ftype: str, value: Any, **settings: Any) -> Any:
    return lookup(ftype).validator(spec(ftype, **settings)).deserialize(value)


def refused(ftype: str, value: Any, **settings: Any) -> str:
    with pytest.raises(ValidationError) as caught:
        valid(ftype, value, **settings)
    return str(caught.value.messages)


# -- the registry ---------------------------------------------------------------------------------
def test_every_type_is_registered_in_its_documented_order():
    assert FIELD_TYPES == ALL
    assert all(lookup(name).name == name for name in FIELD_TYPES)
    assert all(isinstance(t, FieldType) for t in TYPES.values())


def test_unknown_types_and_shared_bases_are_not_types():
    with pytest.raises(ValueError, match="unhandled field type blob"):
        lookup("blob")
    assert not any(type(t) is NumberType for t in TYPES.values())  # a base without a name of its own


def test_settings_are_collected_from_the_types():
    assert OPTIONS == {"min", "max", "pattern", "values", "collection", "on_delete",
                       "multiple", "max_size", "mime_types", "max_files", "protected", "thumbs"}  # file
    assert accepting("values") == ("select",)
    assert accepting("collection") == ("relation",)
    assert set(accepting("pattern")) == {"string", "text", "email", "url"}


@pytest.mark.parametrize("ftype", ALL)
def test_every_type_builds_a_nullable_column_and_accepts_null_when_optional(ftype):
    models = {"owners": type("Owners", (peewee.Model,), {})}
    column = lookup(ftype).column(spec(ftype), models, "things")
    assert isinstance(column, peewee.Field) and column.null
    assert valid(ftype, None) is None
    with pytest.raises(ValidationError):
        valid(ftype, None, required=True)


@pytest.mark.parametrize("ftype", ALL)
def test_every_type_says_nullable_in_its_json_schema_except_json(ftype):
    schema = lookup(ftype).json_schema(spec(ftype))
    assert schema.get("nullable", False) is (ftype != "json")
    assert "nullable" not in lookup(ftype).json_schema(spec(ftype, required=True))


@pytest.mark.parametrize("ftype", ALL)
def test_no_type_takes_a_list_as_a_cel_literal(ftype):
    with pytest.raises(TypeError):
        lookup(ftype).cel_literal([1])


# -- the string family ----------------------------------------------------------------------------
@pytest.mark.parametrize("ftype", ["string", "text"])
def test_strings_check_type_nul_length_and_pattern(ftype):
    assert valid(ftype, "abc", min=2, max=5, pattern="^[a-z]+$") == "abc"
    assert "Not a valid string" in refused(ftype, 3)
    assert "NUL" in refused(ftype, "a\x00b")
    assert "maximum length 5" in refused(ftype, "abcdef", max=5)
    assert "pattern" in refused(ftype, "ABC", pattern="^[a-z]+$")
    assert "Must not be empty" in refused(ftype, "", required=True)


def test_string_schema_and_queries():
    string = lookup("string")
    assert string.json_schema(spec("string", required=True, max=9, pattern="^a")) == {
        "type": "string", "minLength": 1, "maxLength": 9, "pattern": "^a"}
    assert string.query_value("12") == "12"
    assert string.cel_literal("x") == "x"
    with pytest.raises(TypeError):
        string.cel_literal(1)
    assert string.family is cel.Family.TEXT
    assert string.convert({"a": 1}) == json.dumps({"a": 1}) and string.convert(3) == "3"


def test_email_url_uuid_check_their_format():
    assert valid("email", "a@b.co") == "a@b.co"
    refused("email", "not-an-email")
    assert valid("url", "http://localhost:8080/x") == "http://localhost:8080/x"
    refused("url", "localhost")
    value = str(uuid.uuid4())
    assert valid("uuid", value) == value
    assert "UUID" in refused("uuid", "1234")
    assert lookup("email").json_schema(spec("email"))["format"] == "email"
    assert lookup("url").json_schema(spec("url"))["format"] == "uri"
    assert lookup("uuid").json_schema(spec("uuid"))["format"] == "uuid"
    assert lookup("uuid").options == frozenset()


def test_select_takes_one_of_its_values():
    assert valid("select", "a") == "a"
    refused("select", "c")
    schema = lookup("select").json_schema(spec("select", required=True))
    assert schema == {"type": "string", "enum": ["a", "b"]}  # no minLength: the enum says it
    problem = lookup("select").settings_problem({"values": []})
    assert problem is not None and problem.where == ".values" and problem.key == "values"
    assert lookup("select").settings_problem({"values": None}).key is None
    assert lookup("select").settings_problem({"values": ["a"]}) is None


def test_relation_is_a_record_id_with_a_foreign_key():
    relation = lookup("relation")
    assert valid("relation", "a" * 15) == "a" * 15
    assert "record id" in refused("relation", "short")
    owners = type("Owners", (peewee.Model,), {})
    column = relation.column(spec("relation", on_delete="cascade"), {"owners": owners}, "things")
    assert isinstance(column, peewee.ForeignKeyField) and column.on_delete == "CASCADE"
    assert relation.always_indexed and relation.family is cel.Family.TEXT
    assert relation.json_schema(spec("relation"))["description"] == "id of a owners record"
    missing = relation.settings_problem({})
    assert missing is not None and "collection" in missing.message
    bad = relation.settings_problem({"collection": "owners", "on_delete": "explode"})
    assert bad is not None and bad.key == "on_delete"
    assert relation.settings_problem({"collection": "owners"}) is None


# -- numbers --------------------------------------------------------------------------------------
def test_int_is_a_strict_64_bit_integer():
    assert valid("int", 3) == 3 and valid("int", 3.0) == 3
    for bad in ("3", True, 3.5, 2**63):
        refused("int", bad)
    refused("int", 7, min=0, max=5)
    int_type = lookup("int")
    assert int_type.query_value("12") == 12
    with pytest.raises(ValueError):
        int_type.query_value("1.5")
    assert int_type.convert(" 3.7 ") == 3 and int_type.convert(2.9) == 2
    assert int_type.json_schema(spec("int", min=1, max=9)) == {
        "type": "integer", "format": "int64", "minimum": 1, "maximum": 9, "nullable": True}
    assert not int_type.length_bounds


def test_cel_number_literals_are_bound_as_they_are():
    int_type = lookup("int")
    assert int_type.cel_literal(3.5).value == 3.5  # not truncated by the column's converter
    assert int_type.cel_literal(2**63).value == float(2**63)
    assert int_type.cel_literal(-(2**63) - 1).value < -(2**63)
    with pytest.raises(TypeError):
        int_type.cel_literal(True)


def test_float_is_a_finite_number():
    assert valid("float", 1) == 1.0
    for bad in ("1", True, float("nan"), float("inf")):
        refused("float", bad)
    assert lookup("float").query_value("2.5") == 2.5
    assert lookup("float").convert("2.5") == 2.5
    assert lookup("float").json_schema(spec("float"))["format"] == "double"


# -- bool -----------------------------------------------------------------------------------------
def test_bool_is_only_true_or_false():
    assert valid("bool", False) is False
    for bad in (0, "true", "yes"):
        refused("bool", bad)
    bool_type = lookup("bool")
    assert bool_type.query_value("true") is True and bool_type.query_value("false") is False
    with pytest.raises(ValueError):
        bool_type.query_value("1")
    assert bool_type.convert("0") is False and bool_type.convert(" TRUE ") is True
    assert bool_type.convert("maybe") is None and bool_type.convert(2) is True
    assert bool_type.cel_literal(True) is True
    with pytest.raises(TypeError):
        bool_type.cel_literal(1)
    assert bool_type.family is cel.Family.BOOL


# -- dates ----------------------------------------------------------------------------------------
def test_datetime_reads_rfc3339_as_naive_utc_and_prints_milliseconds():
    assert valid("datetime", "2026-01-31T12:00:00+01:00") == dt.datetime(2026, 1, 31, 11, 0)
    refused("datetime", "31/01/2026")
    datetime_type = lookup("datetime")
    stamp = dt.datetime(2026, 1, 31, 11, 0, 0, 123456)
    assert datetime_type.to_json(stamp) == "2026-01-31T11:00:00.123Z"
    assert datetime_type.from_json("2026-01-31T11:00:00.123Z") == dt.datetime(2026, 1, 31, 11, 0, 0, 123000)
    assert datetime_type.from_json("garbage") == "garbage"
    assert datetime_type.cel_literal("2026-01-31T11:00:00Z") == dt.datetime(2026, 1, 31, 11)
    with pytest.raises(ValueError):
        datetime_type.cel_literal("yesterday")
    assert datetime_type.convert("2026-01-31 12:00:00") == dt.datetime(2026, 1, 31, 12)
    assert datetime_type.convert("nope") is None
    assert isinstance(datetime_type.column(spec("datetime"), {}, "things"), DateTimeField)


def test_date_is_a_calendar_date_of_its_own_family():
    assert valid("date", "2026-01-31") == dt.date(2026, 1, 31)
    refused("date", "2026-01-31T00:00:00Z")
    date_type = lookup("date")
    assert date_type.to_json(dt.date(2026, 1, 31)) == "2026-01-31"
    assert date_type.from_json("2026-01-31") == dt.date(2026, 1, 31)
    assert date_type.from_json("2026-02-30") == "2026-02-30"
    assert date_type.convert("2026-01-31T10:00:00") == dt.date(2026, 1, 31)
    assert date_type.family is not lookup("datetime").family
    with pytest.raises(ValueError):
        date_type.cel_literal("2026-13-01")


# -- json -----------------------------------------------------------------------------------------
def test_json_takes_any_value_but_no_equality_filter():
    assert valid("json", {"a": [1, None]}) == {"a": [1, None]}
    deep: Any = 1
    for _ in range(70):
        deep = [deep]
    assert "nest" in refused("json", deep)
    json_type = lookup("json")
    with pytest.raises(NoEquality):
        json_type.query_value("1")
    with pytest.raises(TypeError):
        json_type.cel_literal(1)
    assert json_type.json_schema(spec("json")) == {}
    assert json_type.convert('{"a": 1}') == {"a": 1} and json_type.convert("plain") == "plain"
    assert json_type.family is cel.Family.OPAQUE
    assert not json_type.sortable and [name for name, t in TYPES.items() if not t.sortable] == ["json", "file"]


# -- defaults -------------------------------------------------------------------------------------
def test_defaults_are_checked_and_stored_by_the_type():
    stored = lookup("datetime").stored_default(spec("datetime", default="2026-01-01T00:00:00Z"))
    assert stored == dt.datetime(2026, 1, 1)
    assert lookup("int").default_problem(spec("int"), "x").startswith("invalid default 'x'")
    assert lookup("int").default_problem(spec("int"), 3) is None


# -- the compiler gets its coercer from the resolver ----------------------------------------------
class Shouting:
    """A coercer no field type provides: cel must use it, not a table of type names."""

    name = "shout"
    family = cel.Family.TEXT

    def cel_literal(self, value: Any) -> Any:
        if not isinstance(value, str):
            raise TypeError(value)
        return value.upper()


def test_cel_compiles_with_the_coercer_the_resolver_hands_it():
    column = peewee.TextField(null=True)
    column.bind(type("Rows", (peewee.Model,), {}), "s")

    def resolver(path: tuple[str, ...]) -> cel.Column:
        return cel.Column(column, Shouting(), "s")

    compiler = cel.SqlCompiler(resolver, postgres=False)
    sql, params = peewee.SqliteDatabase(":memory:").get_sql_context().sql(compiler.compile(cel.parse('s == "abc"'))
                                                                         ).query()
    assert params == ["ABC"]
    with pytest.raises(cel.CelError, match="s is a shout field and cannot be compared with a number"):
        compiler.compile(cel.parse("s == 1"))


# -- records serialise through the types ----------------------------------------------------------
def test_records_serialise_and_parse_back_through_the_types():
    collection = CollectionSpec("things", (FieldSpec("when", "datetime"), FieldSpec("day", "date"),
                                           FieldSpec("n", "int")))
    model = build_model(collection, {}, peewee.SqliteDatabase(":memory:"))
    coll = Collection(collection, model)
    row = {"id": "a" * 15, "created_at": dt.datetime(2026, 1, 1), "updated_at": dt.datetime(2026, 1, 2),
           "when": dt.datetime(2026, 1, 3, 4, 5, 6), "day": dt.date(2026, 1, 4), "n": 5}
    out = coll.serialize(row)
    assert out == {"id": "a" * 15, "created_at": "2026-01-01T00:00:00.000Z", "updated_at": "2026-01-02T00:00:00.000Z",
                   "when": "2026-01-03T04:05:06.000Z", "day": "2026-01-04", "n": 5}
    assert coll.from_json(out) == row
    assert coll.serialize({**row, "when": None}, ("when", "n")) == {"when": None, "n": 5}


# -- file -----------------------------------------------------------------------------------------
def test_file_holds_names_and_checks_its_settings():
    from alyx.fields.file import FileNamesField, file_settings, thumb_box
    from alyx.units import parse_size_bytes

    file_type = lookup("file")
    assert valid("file", "a_x.png") == "a_x.png" and valid("file", None) is None
    many = spec("file", extra=(("multiple", True),))
    assert file_type.validator(many).deserialize(["a", "b"]) == ["a", "b"]
    assert file_type.json_schema(many)["type"] == "array" and file_type.json_schema(spec("file"))["type"] == "string"
    with pytest.raises(NoEquality):
        file_type.query_value("x")
    assert file_type.family is cel.Family.OPAQUE and not file_type.sortable
    assert file_type.default_problem(spec("file"), "x") == "file fields take no default"
    column = file_type.column(many, {}, "things")
    assert isinstance(column, FileNamesField)
    assert column.db_value(["a", "b"]) == '["a","b"]' and column.python_value("a") == ["a"]
    single = file_type.column(spec("file"), {}, "things")
    assert single.db_value("a") == "a" and single.python_value('["a","b"]') == "a"
    settings = file_settings(FieldSpec("f", "file", extra=file_type.own_settings(
        {"max_size": "2MB", "mime_types": ["image/*"], "thumbs": ["10x10"], "multiple": True})))
    assert (settings.max_size, settings.mime_types, settings.thumbs, settings.max_files) == \
        (2 * 1024 * 1024, ("image/*",), ("10x10",), 99)
    assert file_settings(spec("file")).max_files == 1
    assert thumb_box("100x0") == (100, 0, False) and thumb_box("10x10f") == (10, 10, True)
    assert thumb_box("0x0") is None and thumb_box("9999x1") is None and thumb_box("1x1; rm") is None
    for bad in ({"max_size": "lots"}, {"max_size": 0}, {"max_files": 0}, {"max_files": 2},
                {"mime_types": "image/*"}, {"mime_types": ["image"]}, {"thumbs": ["big"]}, {"thumbs": [256]},
                {"multiple": "yes"}, {"protected": 1}):
        assert file_type.settings_problem(bad) is not None, bad
    assert file_type.settings_problem({"multiple": True, "max_files": 5, "protected": True}) is None
    assert parse_size_bytes("500KB") == 512_000 and parse_size_bytes(10) == 10 and parse_size_bytes("1G") == 1 << 30
    with pytest.raises(ValueError):
        parse_size_bytes("5 parsecs")
