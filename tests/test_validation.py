"""RecordLoader (alyx/validation.py) loads exactly what marshmallow's Schema.load loads, and refuses
exactly what it refuses with the same messages, for every field type and option."""
from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from marshmallow import Schema, ValidationError, fields, validates

from alyx.schema import load_schema
from alyx.validation import RecordLoader, record_schema
from tests.conftest import BLOG_SCHEMA, write_project

FIELDS = ["title", "body", "status", "author", "tags", "views", "score", "featured", "published_at", "day",
          "contact", "link", "ref", "slug", "id", "nope"]
VALUES = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(2**64), max_value=2**64), st.floats(allow_nan=True),
    st.text(max_size=30), st.sampled_from(["draft", "published", "", "a@b.co", "not an email", "https://x.y/z",
                                           "ftp://x", "2026-01-02T03:04:05Z", "2026-01-02", "2026-13-40",
                                           "123e4567-e89b-12d3-a456-426614174000", "abc", "a-b-c", "x" * 201,
                                           "abcdefghijklmno", "ABC", "a\x00b", "1"]),
    st.lists(st.integers(), max_size=3), st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
)
BODIES = st.dictionaries(st.sampled_from(FIELDS), VALUES, max_size=8)
PLAUSIBLE = {  # values that are mostly valid for the field, so that the quick path's results are compared too
    "title": st.text(max_size=5), "body": st.one_of(st.none(), st.text(max_size=5)),
    "status": st.sampled_from(["draft", "published", "other"]), "author": st.sampled_from(["abcdefghijklmno", None]),
    "tags": st.one_of(st.none(), st.lists(st.integers(), max_size=2),
                      st.dictionaries(st.text(max_size=2), st.booleans())),
    "views": st.one_of(st.integers(min_value=-2, max_value=2**63), st.floats(min_value=0, max_value=9)),
    "score": st.one_of(st.floats(allow_nan=False), st.integers()), "featured": st.one_of(st.booleans(), st.none()),
    "published_at": st.sampled_from(["2026-01-02T03:04:05Z", "2026-01-02T03:04:05.123+02:00", "2026-01-02 03:04"]),
    "day": st.sampled_from(["2026-01-02", "2026-02-30"]), "contact": st.sampled_from(["a@b.co", "A@B.CO", "no"]),
    "link": st.sampled_from(["https://x.y/z", "http://localhost:8090/a?b=c", "x"]),
    "ref": st.sampled_from(["123e4567-e89b-12d3-a456-426614174000", "123E4567E89B12D3A456426614174000"]),
    "slug": st.sampled_from(["a-b", "A b"]), "id": st.sampled_from(["abcdefghijklmno", "short"]),
}
MOSTLY_VALID = st.fixed_dictionaries({"title": st.text(min_size=1, max_size=5)},
                                     optional={k: v for k, v in PLAUSIBLE.items() if k != "title"})


@pytest.fixture(scope="module")
def schemas(tmp_path_factory: pytest.TempPathFactory) -> dict[bool, Schema]:
    project = write_project(tmp_path_factory.mktemp("validation"), BLOG_SCHEMA)
    spec = load_schema(project / "schema.yaml").collections["posts"]
    return {partial: record_schema(spec, partial=partial) for partial in (False, True)}


def outcome(load: Any, body: Any) -> tuple[str, Any]:
    try:
        return "loaded", load(body)
    except ValidationError as exc:
        return "refused", exc.messages


@settings(max_examples=400, deadline=None)
@given(body=BODIES, partial=st.booleans())
def test_the_loader_is_schema_load(schemas: dict[bool, Schema], body: dict[str, Any], partial: bool) -> None:
    schema = schemas[partial]
    loader = RecordLoader(schema)
    assert loader.quick
    assert outcome(loader.load, body) == outcome(schema.load, body)


@settings(max_examples=400, deadline=None)
@given(body=MOSTLY_VALID, partial=st.booleans())
def test_the_loader_is_schema_load_for_mostly_valid_bodies(schemas: dict[bool, Schema], body: dict[str, Any],
                                                           partial: bool) -> None:
    schema = schemas[partial]
    assert outcome(RecordLoader(schema).load, body) == outcome(schema.load, body)


def test_a_valid_body_skips_schema_load(schemas: dict[bool, Schema], monkeypatch: pytest.MonkeyPatch) -> None:
    loader = RecordLoader(schemas[False])
    body = {"title": "t", "views": 3, "published_at": "2026-01-02T03:04:05Z", "tags": [1]}
    expected = schemas[False].load(body)
    monkeypatch.setattr(schemas[False], "load", lambda *a, **k: pytest.fail("Schema.load ran"))
    assert loader.load(body) == expected == {"title": "t", "tags": [1], "views": 3,
                                             "published_at": dt.datetime(2026, 1, 2, 3, 4, 5)}


def test_a_schema_with_hooks_always_takes_schema_load() -> None:
    class Hooked(Schema):
        n = fields.Integer()

        @validates("n")
        def positive(self, value: int, **kwargs: Any) -> None:
            if value < 0:
                raise ValidationError("negative")

    loader = RecordLoader(Hooked())
    assert not loader.quick
    assert outcome(loader.load, {"n": -1}) == ("refused", {"n": ["negative"]})
