"""The function-side SDK (`alyx generate sdk`): `getContext()` typed with the project's collections, as TypeScript."""
from __future__ import annotations

import json

from alyx.generate.model import Project
from alyx.generate.output import Files, header, template
from alyx.generate.typescript import collection_types


def generate(project: Project) -> Files:
    """index.ts (types + getContext) and tsconfig.json emitting index.js and index.d.ts into dist/."""
    lines = [header("//", "sdk", project.schema_hash),
             "export const SCHEMA_HASH = " + json.dumps(project.schema_hash) + ";", ""]
    for coll in project.collections:
        lines += collection_types(project, coll)
    lines += ["/** alyx.collections: one typed API per collection of schema.yaml. */", "export interface Collections {"]
    lines += [f"  {c.name}: CollectionApi<{c.stem}Record, {c.stem}Create, {c.stem}Update>;"
              for c in project.collections]
    lines += ["}", ""]
    tsconfig = {"compilerOptions": {"target": "es2022", "module": "es2022", "moduleResolution": "bundler",
                                    "lib": ["es2022"], "strict": True, "declaration": True, "outDir": "dist"},
                "files": ["index.ts"]}
    return {"index.ts": "\n".join(lines) + template("sdk.ts"), "tsconfig.json": json.dumps(tsconfig, indent=2) + "\n"}
