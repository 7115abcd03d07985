"""The Python client: a package of TypedDicts per collection + the requests/websockets runtime."""
from __future__ import annotations

import json
import keyword

from alyx.generate.model import AUTH_COLLECTION, Collection, Field, Project, collection_opening, values_type
from alyx.generate.output import Files, header, template


def _literal(values: tuple[str, ...] | list[str]) -> str:
    return f"Literal[{', '.join(json.dumps(v) for v in values)}]" if values else "Never"


def _value(coll: Collection, f: Field) -> str:
    base = values_type(coll, f) if f.values else f.kind.python_hint
    if f.is_list:
        base = f"list[{base}]"
    return base if f.required else f"{base} | None"


def _typed_dict(name: str, items: list[tuple[str, str]], doc: str, total: bool = True) -> list[str]:
    """Functional syntax: field names may be Python keywords."""
    out = [f"#: {doc}", f"{name} = TypedDict({json.dumps(name)}, {{"]
    out += [f"    {json.dumps(key)}: {json.dumps(value)}," for key, value in items]
    out.append("}" + ("" if total else ", total=False") + ")")
    return out + ["", ""]


def _inputs(coll: Collection, fields: tuple[Field, ...], all_optional: bool) -> list[tuple[str, str]]:
    items = []
    for f in fields:
        wrap = "NotRequired" if all_optional or not f.create_required else "Required"
        items.append((f.name, f"{wrap}[{_value(coll, f)}]"))
    return items


def collection_types(project: Project, coll: Collection) -> list[str]:
    s = coll.stem
    out = collection_opening(coll, "#", lambda name, f: [f"{name} = {_literal(f.values)}", ""])
    out += ["", f"{s}Field = {_literal([f.name for f in coll.fields])}",
            f"{s}Relation = {_literal([f.name for f in coll.relations])}", "", ""]
    out += _typed_dict(f"{s}Expand", [(f.name, f"{project.get(str(f.relation)).stem}Record") for f in coll.relations],
                       "Related records, filled for the relations named in ``expand``.", total=False)
    record = [(f.name, _value(coll, f)) for f in coll.fields] + [("expand", f"NotRequired[{s}Expand]")]
    out += _typed_dict(f"{s}Record", record, f"A {coll.name} record as the API returns it.")
    out += _typed_dict(f"{s}Create", _inputs(coll, coll.creatable, False),
                       f"POST /api/collections/{coll.name}: required fields without a default must be sent.")
    out += _typed_dict(f"{s}Update", _inputs(coll, coll.writable, True),
                       f"PATCH /api/collections/{coll.name}/<id>: only the fields sent change.")
    out += _typed_dict(f"{s}Files", [(f.name, "list[FileUpload]" if f.is_list else "FileUpload") for f in coll.uploads],
                       f"Files to upload to {coll.name}'s file fields (create, update).", total=False)
    if coll.name == AUTH_COLLECTION:
        items = _inputs(coll, coll.registrable, False) + [("password", "Required[str]"),
                                                           ("passwordConfirm", "NotRequired[str]")]
        out += _typed_dict(f"{s}Register", items, "POST /api/auth/register: the user's fields and a password.")
    return out


_TAKEN = {"auth", "functions", "files", "transport", "realtime", "close"}  # BaseClient's own attributes


def attribute(name: str) -> str:
    """The client attribute of a collection: its name, with a trailing _ when that is taken or a keyword."""
    return name + "_" if name in _TAKEN or keyword.iskeyword(name) else name


def client_class(project: Project) -> list[str]:
    out = ["# ---- the client ----", "", "", "class AlyxClient(BaseClient):",
           '    """Typed calls for every collection (``client.posts.list(...)``), plus auth, functions, realtime."""',
           "",
           "    def __init__(self, base_url: str, tokens: TokenStore | None = None,",
           "                 session: requests.Session | None = None, timeout: float = 30.0) -> None:",
           "        super().__init__(base_url, tokens, session, timeout)"]
    for c in project.collections:
        s = c.stem
        kinds = f"{s}Record, {s}Create, {s}Update, {s}Field, {s}Relation, {s}Files"
        out.append(f"        self.{attribute(c.name)}: Collection[{kinds}] = Collection(self, {json.dumps(c.name)})")
    return out + ["", "", "SCHEMA_HASH = " + json.dumps(project.schema_hash)]


def generate(project: Project) -> Files:
    """``__init__.py`` and ``py.typed`` of a package named after the output folder."""
    lines = [header("#", "client --lang python", project.schema_hash).rstrip("\n"),
             '"""Typed client of an Alyx project (generated): AlyxClient(base_url).<collection>.list(...)"""']
    lines.append(template("client.py.tmpl"))
    lines.append("")
    for coll in project.collections:
        lines += collection_types(project, coll)
    lines += client_class(project)
    return {"__init__.py": "\n".join(lines) + "\n", "py.typed": ""}
