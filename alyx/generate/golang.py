"""The Go client: a module (`go.mod`, `client.go`, `models.go`) using only the standard library; REST only."""
from __future__ import annotations

import json
import re

from alyx.generate.model import AUTH_COLLECTION, Collection, Field, Project, collection_opening, stem, values_type
from alyx.generate.output import Files, header, template

PACKAGE = "alyxclient"


def go_name(name: str) -> str:
    """A field name as an exported Go identifier (``id`` → ``ID``, ``created_at`` → ``CreatedAt``)."""
    return "ID" if name == "id" else stem(name)


def _const_names(prefix: str, values: tuple[str, ...] | list[str]) -> list[str]:
    """One exported constant per value; values that are no identifier (or collide) get their position."""
    names: list[str] = []
    for i, value in enumerate(values):
        word = "".join(p[:1].upper() + p[1:] for p in re.split(r"[^A-Za-z0-9]+", value) if p)
        name = prefix + word if word and word[0].isalpha() and word.isascii() else f"{prefix}{i + 1}"
        names.append(name if name not in names else f"{prefix}{i + 1}")
    return names


def _consts(type_name: str, values: tuple[str, ...] | list[str], doc: str) -> list[str]:
    out = [f"// {type_name} {doc}", f"type {type_name} string", ""]
    for name, value in zip(_const_names(type_name, values), values, strict=True):
        out.append(f"const {name} {type_name} = {json.dumps(value)}")
    return out + [""] if values else out


def _base(coll: Collection, f: Field) -> str:
    base = values_type(coll, f) if f.values else f.kind.go_type
    return "[]" + base if f.is_list else base


def _pointer(coll: Collection, f: Field) -> str:
    base = _base(coll, f)
    return base if base.startswith("json.") else "*" + base


def _struct(name: str, doc: str, fields: list[tuple[str, str, str, str]]) -> list[str]:
    """Fields as (doc, name, type, json tag); one per paragraph, so gofmt has nothing to align."""
    out = [f"// {name} {doc}", f"type {name} struct {{"]
    for i, (fdoc, fname, ftype, tag) in enumerate(fields):
        if i:
            out.append("")
        if fdoc:
            out.append(f"\t// {fdoc}")
        out.append(f"\t{fname} {ftype} `json:\"{tag}\"`")
    return out + ["}", ""]


def _record(project: Project, coll: Collection) -> list[str]:
    s = coll.stem
    fields = [(f.doc, go_name(f.name), _base(coll, f) if f.required or f.is_list else _pointer(coll, f), f.name)
              for f in coll.fields]
    fields.append(("related records, for the relations named in Expand", "Expand", f"*{s}Expand", "expand,omitempty"))
    out = _struct(f"{s}Record", f"is a {coll.name} record as the API returns it.", fields)
    expand = [("", go_name(f.name), f"*{project.get(str(f.relation)).stem}Record", f"{f.name},omitempty")
              for f in coll.relations]
    return out + _struct(f"{s}Expand", "holds related records, filled for the relations named in Expand.", expand)


def _inputs(coll: Collection, fields: tuple[Field, ...], all_optional: bool) -> list[tuple[str, str, str, str]]:
    out = []
    for f in fields:
        if f.create_required and not all_optional:
            out.append((f.doc, go_name(f.name), _base(coll, f), f.name))
        else:
            out.append((f.doc, go_name(f.name), _pointer(coll, f), f"{f.name},omitempty"))
    return out


def collection_types(project: Project, coll: Collection) -> list[str]:
    s = coll.stem
    out = collection_opening(
        coll, "//", lambda name, f: _consts(name, f.values, f"is one of the values of {coll.name}.{f.name}."))
    out += _consts(f"{s}Field", [f.name for f in coll.fields], f"names a field of {coll.name} (ListParams.Fields).")
    out += _consts(f"{s}Relation", [f.name for f in coll.relations],
                   f"names a relation of {coll.name} (ListParams.Expand).")
    out += _record(project, coll)
    out += _struct(f"{s}Create", f"is the body of POST /api/collections/{coll.name}.",
                   _inputs(coll, coll.creatable, False))
    out += _struct(f"{s}Update", f"is the body of PATCH /api/collections/{coll.name}/<id> (nil: unchanged).",
                   _inputs(coll, coll.writable, True))
    out += files_type(coll)
    if coll.name == AUTH_COLLECTION:
        fields = _inputs(coll, coll.registrable, False) + [
            ("", "Password", "string", "password"), ("", "PasswordConfirm", "string", "passwordConfirm,omitempty")]
        out += _struct(f"{s}Register", "is the body of POST /api/auth/register.", fields)
    return out


def files_type(coll: Collection) -> list[str]:
    """<Stem>Files: the files a create (or an update's Set/Add) uploads, by file field, and its form parts."""
    name = f"{coll.stem}Files"
    out = [f"// {name} are files to upload to {coll.name}'s file fields (CreateWithFiles, FileChanges).",
           f"type {name} struct" + (" {" if coll.uploads else "{}")]
    for i, f in enumerate(coll.uploads):
        out += ([""] if i else []) + [f"\t{go_name(f.name)} {'[]' if f.is_list else '*'}FileUpload"]
    if coll.uploads:
        out.append("}")
    out += ["", f"func (f {name}) parts() []filePart {{"]
    if not coll.uploads:
        return out + ["\treturn nil", "}", ""]
    out.append("\tvar out []filePart")
    for f in coll.uploads:
        if f.is_list:
            out += [f"\tfor _, u := range f.{go_name(f.name)} {{",
                    f"\t\tout = append(out, filePart{{{json.dumps(f.name)}, u}})", "\t}"]
        else:
            out += [f"\tif f.{go_name(f.name)} != nil {{",
                    f"\t\tout = append(out, filePart{{{json.dumps(f.name)}, *f.{go_name(f.name)}}})", "\t}"]
    return out + ["\treturn out", "}", ""]


def member(coll: Collection) -> str:
    """The Client field of a collection: its stem, or stem + "Collection" when the Client has that field."""
    return coll.stem + "Collection" if coll.stem in ("Transport", "Auth", "Functions", "Files") else coll.stem


def _kinds(c: Collection) -> str:
    s = c.stem
    return f"{s}Record, {s}Create, {s}Update, {s}Field, {s}Relation, {s}Files"


def client_struct(project: Project) -> list[str]:
    out = ["// Client holds typed calls for every collection, plus auth, functions and files (REST only: no realtime).",
           "type Client struct {", "\tTransport *Transport", "", "\tAuth *Auth", "", "\tFunctions *Functions", "",
           "\tFiles *Files"]
    for c in project.collections:
        out += ["", f"\t{member(c)} *Collection[{_kinds(c)}]"]
    out += ["}", "", "// New returns a client of the server at baseURL (e.g. \"https://api.example.com\").",
            "func New(baseURL string) *Client {", "\tt := newTransport(baseURL)", "\tc := &Client{Transport: t}",
            "\tc.Auth = &Auth{transport: t}", "\tc.Functions = &Functions{transport: t}",
            "\tc.Files = &Files{transport: t}"]
    for c in project.collections:
        out.append(f"\tc.{member(c)} = &Collection[{_kinds(c)}]{{transport: t, Name: {json.dumps(c.name)}}}")
    return out + ["\treturn c", "}", ""]


def generate(project: Project) -> Files:
    """go.mod, client.go (the runtime) and models.go (types per collection and the Client)."""
    top = header("//", "client --lang go", project.schema_hash) + "\n"
    client = top + f"// Package {PACKAGE} is a typed client of an Alyx project.\npackage {PACKAGE}\n" + template(
        "client.go.tmpl")
    lines = [top + f"package {PACKAGE}", "", 'import "encoding/json"', "",
             "// SchemaHash is the sha256 of the schema this package was generated from.",
             f"const SchemaHash = {json.dumps(project.schema_hash)}", "",
             "var _ json.RawMessage // json fields decode as raw JSON", ""]
    for coll in project.collections:
        lines += collection_types(project, coll)
    lines += client_struct(project)
    return {"go.mod": f"module {PACKAGE}\n\ngo 1.19\n", "client.go": client, "models.go": "\n".join(lines)}
