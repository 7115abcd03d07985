#!/usr/bin/env python3
"""Instructions per CRUD request (callgrind): a figure that repeats on a shared, loaded machine.

    .venv/bin/python bench/crud_callgrind.py                 # this checkout
    .venv/bin/python bench/crud_callgrind.py --root /tmp/base  # another one (git archive REV | tar -x -C DIR)
    .venv/bin/python bench/crud_callgrind.py --floor --kinds get,create  # bench/floor.py, the stack's ceiling

Runs the WSGI app in process (no gunicorn, no sockets) under `valgrind --tool=callgrind`: once with
no measured request and once per kind with N (get, create: 200; list, list2: 40), each after the
same seeding (200 items, 600 tagged rows) and warm-up of every kind; prints (Ir(N) - Ir(0)) / N.
gevent's monkey-patching is applied first, as in a gunicorn worker (its locks are pure Python, so
unpatched counts miss them); `--no-gevent` counts without it.
The schema, bodies and queries are bench/crud.py's: get by id, create, list (indexed filter)
and list2 (unindexed filter, page 1 of the 54 matches). Takes a few minutes (valgrind runs Python ~50x slower).
"""
from __future__ import annotations

import argparse
import gc
import io
import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from crud import ALYX_SCHEMA, Target, record_body, tagged_body


def serve(kind: str, n: int, system: str) -> None:
    """Worker mode: build the app, seed it, warm every kind up, then make n requests of one kind."""
    project = Path(tempfile.mkdtemp(prefix="crud-callgrind-"))
    app: Any
    if system == "floor":
        os.environ["FLOOR_DB"] = str(project / "floor.db")
        import floor

        app = floor.app
    else:
        (project / "functions").mkdir()
        (project / "schema.yaml").write_text(ALYX_SCHEMA)
        os.environ.update(ALYX_PROJECT_DIR=str(project), ALYX_AUTH_SECRET="ab" * 32)
        from alyx.app import create_app

        app = create_app()

    def call(method: str, path: str, data: bytes = b"") -> bytes:
        path_info, _, query = path.partition("?")
        environ = {"REQUEST_METHOD": method, "PATH_INFO": path_info, "QUERY_STRING": query, "SERVER_NAME": "127.0.0.1",
                   "SERVER_PORT": "80", "SERVER_PROTOCOL": "HTTP/1.1", "REMOTE_ADDR": "127.0.0.1",
                   "wsgi.url_scheme": "http", "wsgi.input": io.BytesIO(data), "wsgi.errors": sys.stderr,
                   "wsgi.multithread": False, "wsgi.multiprocess": True, "wsgi.run_once": False,
                   "wsgi.version": (1, 0), "HTTP_HOST": "127.0.0.1", "wsgi.input_terminated": True}
        if data:
            environ.update(CONTENT_TYPE="application/json", CONTENT_LENGTH=str(len(data)))
        status: list[str] = []
        body = b"".join(app(environ, lambda s, h, e=None: status.append(s)))
        if status[0][:3] not in ("200", "201"):
            raise SystemExit(f"{method} {path}: {status[0]} {body[:200]!r}")
        return body

    ids = [json.loads(call("POST", "/api/collections/items", record_body(i)))["id"] for i in range(200)]
    for i in range(600):
        call("POST", "/api/collections/tagged", tagged_body(i))
    works = {"get": lambda k: call("GET", "/api/collections/items/" + ids[k % 200]),
             "create": lambda k: call("POST", "/api/collections/items", record_body(k)),
             "list": lambda k: call("GET", f"/api/collections/items?{Target.list_query}&page={k % 2 + 1}"),
             "list2": lambda k: call("GET", f"/api/collections/tagged?{Target.tagged_query}&page=1")}
    for work in works.values():  # warm-up: caches filled as in a running worker
        for k in range(10):
            work(k)
    gc.freeze()  # as gunicorn.conf.py's post_worker_init does in a worker: fewer, cheaper collections
    gc.set_threshold(50_000, 50, 100)
    for k in range(n):
        works[kind](k)


def instructions(root: Path, kind: str, n: int, flags: list[str]) -> int:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "callgrind.out"
        subprocess.run(["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", sys.executable, __file__,
                        "--serve", kind, str(n), "--root", str(root), *flags], check=True, capture_output=True,
                       env={**os.environ, "PYTHONHASHSEED": "0"})  # the same dict layouts in every run
        found = re.search(r"^summary: (\d+)", out.read_text(), re.M)
        assert found is not None, "no callgrind summary"
        return int(found.group(1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", type=Path, default=Path(__file__).resolve().parent.parent)
    parser.add_argument("--floor", action="store_true", help="count bench/floor.py instead of Alyx")
    parser.add_argument("--no-gevent", action="store_true", help="do not monkey-patch first")
    parser.add_argument("--kinds", default="get,create,list,list2", help="comma-separated: get,create,list,list2")
    parser.add_argument("--serve", nargs=2, metavar=("KIND", "N"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        if not args.no_gevent:
            from gevent import monkey

            monkey.patch_all()
        sys.path.insert(0, str(args.root))
        serve(args.serve[0], int(args.serve[1]), "floor" if args.floor else "alyx")
        return
    # Bytecode first: a run that compiles a changed module counts the compiler (~4 M instructions).
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(args.root / "alyx"), str(Path(__file__).parent)],
                   check=True)
    flags = [flag for flag, on in (("--floor", args.floor), ("--no-gevent", args.no_gevent)) if on]
    counts = {"get": 200, "create": 200, "list": 40, "list2": 40}
    base = instructions(args.root, "get", 0, flags)
    for kind in args.kinds.split(","):
        n = counts[kind]
        print(f"{kind:7} {(instructions(args.root, kind, n, flags) - base) // n:>12,} instructions/request "
              f"({'floor' if args.floor else args.root}{'' if args.no_gevent else ', gevent-patched'})", flush=True)


if __name__ == "__main__":
    main()
