"""The TypeScript client: one `index.ts` (types per collection + the fetch/WebSocket runtime), no dependencies."""
from __future__ import annotations

import json

from alyx.generate.model import AUTH_COLLECTION, Collection, Field, Project, collection_opening, values_type
from alyx.generate.output import Files, header, template


def _doc(text: str, indent: str = "  ") -> list[str]:
    return [f"{indent}/** {text} */"] if text else []


def _value(coll: Collection, f: Field) -> str:
    base = values_type(coll, f) if f.values else f.kind.ts_type
    return base + "[]" if f.is_list else base


def _union(values: tuple[str, ...] | list[str]) -> str:
    return " | ".join(json.dumps(v) for v in values) if values else "never"


def _props(coll: Collection, fields: tuple[Field, ...], optional: bool, record: bool = False) -> list[str]:
    lines = []
    for f in fields:
        nullable = "" if f.required else " | null"
        mark = "?" if optional or (not record and not f.create_required) else ""
        lines += _doc(f.doc) + [f"  {f.name}{mark}: {_value(coll, f)}{nullable};"]
    return lines


def collection_types(project: Project, coll: Collection) -> list[str]:
    s = coll.stem
    out = collection_opening(coll, "//", lambda name, f: [f"export type {name} = {_union(f.values)};", ""])
    out += [f"/** A {coll.name} record as the API returns it (with `fields=`, only the fields asked for). */",
            f"export interface {s}Record {{"] + _props(coll, coll.fields, False, record=True)
    out += [f"  expand?: {s}Expand;", "}", ""]
    out += ["/** Related records, filled for the relations named in `expand`. */", f"export interface {s}Expand {{"]
    out += [f"  {f.name}?: {project.get(str(f.relation)).stem}Record;" for f in coll.relations] + ["}", ""]
    out += [f"/** POST /api/collections/{coll.name}: required fields without a default must be sent. */",
            f"export interface {s}Create {{"] + _props(coll, coll.creatable, False) + ["}", ""]
    out += [f"/** PATCH /api/collections/{coll.name}/<id>: only the fields sent change. */",
            f"export interface {s}Update {{"] + _props(coll, coll.writable, True) + ["}", ""]
    out += [f"export type {s}Field = {_union([f.name for f in coll.fields])};",
            f"export type {s}Relation = {_union([f.name for f in coll.relations])};", ""]
    if coll.name == AUTH_COLLECTION:
        out += ["/** POST /api/auth/register: the user's fields (not role or verified) and a password. */",
                f"export interface {s}Register {{"] + _props(coll, coll.registrable, False)
        out += ["  password: string;", "  passwordConfirm?: string;", "}", ""]
    return out


def files_type(coll: Collection) -> list[str]:
    """The files a create (or an update's set/add) uploads, by file field: one, or a list when multiple."""
    name = f"{coll.stem}Files"
    if not coll.uploads:
        return [f"/** {coll.name} has no file fields. */", f"export type {name} = Record<string, never>;", ""]
    out = [f"/** Files to upload to {coll.name}'s file fields (create, or update's set/add). */",
           f"export interface {name} {{"]
    out += [f"  {f.name}?: FileUpload{'[]' if f.is_list else ''};" for f in coll.uploads]
    return out + ["}", ""]


def _kinds(c: Collection) -> str:
    return f"{c.stem}Record, {c.stem}Create, {c.stem}Update, {c.stem}Field, {c.stem}Relation, {c.stem}Files"


def client_class(project: Project) -> list[str]:
    out = ["// ---- the client ----", "",
           "/** Typed calls for every collection, plus auth, functions and realtime. */",
           "export class AlyxClient extends BaseClient {", "  readonly collections: {"]
    for c in project.collections:
        out.append(f"    readonly {c.name}: CollectionClient<{_kinds(c)}>;")
    out += ["  };", "", "  constructor(options: ClientOptions) {", "    super(options);", "    this.collections = {"]
    out += [f"      {c.name}: new CollectionClient(this, {json.dumps(c.name)})," for c in project.collections]
    out += ["    };", "  }", "}", "",
            "export function createClient(options: ClientOptions): AlyxClient {",
            "  return new AlyxClient(options);", "}", ""]
    return out


def generate(project: Project) -> Files:
    """index.ts for ``project``; tsconfig.json for `tsc -p`."""
    lines = [header("//", "client --lang typescript", project.schema_hash),
             "export const SCHEMA_HASH = " + json.dumps(project.schema_hash) + ";", ""]
    for coll in project.collections:
        lines += collection_types(project, coll) + files_type(coll)
    source = "\n".join(lines) + template("client.ts") + "\n" + "\n".join(client_class(project))
    tsconfig = {"compilerOptions": {"target": "es2022", "module": "es2022", "moduleResolution": "bundler",
                                    "lib": ["es2022", "dom"], "strict": True, "declaration": True,
                                    "outDir": "dist"},
                "files": ["index.ts"]}
    return {"index.ts": source, "tsconfig.json": json.dumps(tsconfig, indent=2) + "\n"}
