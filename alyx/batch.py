"""Batch writes (``POST /api/batch``): several record writes in one transaction, all or nothing.

Each operation is the records service's own create, update or delete (the one write path), run
as the caller, inside one outer write transaction (alyx/db.py ``Database.write``: all or nothing,
so each record write joins it without a savepoint). Journal writers (change feed, outbox) write
inside it; every ``after_commit`` callback (listeners, blob deletes) runs once the whole batch
commits, and none runs when an operation fails and the batch rolls back. See docs/batch.md.
"""
from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from alyx.db import Database
from alyx.errors import AlyxError, bad_request
from alyx.records import GuardsAhead, Records
from alyx.rules import Principal, RequestInfo

# A collection route and nothing else: no query string, no "..", no percent-escapes, no trailing slash.
COLLECTION_URL = re.compile(r"/api/collections/([a-z][a-z0-9_]{0,62})(?:/([A-Za-z0-9]{1,64}))?")
OPERATION_KEYS = frozenset({"method", "url", "body"})
# method → (takes a record id in the URL, takes a body)
METHODS = {"POST": (False, True), "PATCH": (True, True), "DELETE": (True, False), "PUT": (False, True)}
ACTIONS = {"POST": "create", "PATCH": "update", "DELETE": "delete"}  # PUT: create or update


@dataclass(frozen=True)
class Operation:
    """One checked operation of a batch."""

    index: int
    method: str  # POST (create), PATCH (update), DELETE (delete), PUT (upsert)
    url: str
    collection: str
    record_id: str | None
    body: dict[str, Any]


@dataclass(frozen=True)
class Result:
    """What one operation answered, as its own request would have: status and body."""

    status: int
    body: dict[str, Any] | None

    def to_dict(self) -> dict[str, Any]:
        return {"status": self.status, "body": self.body}


def parse_operations(payload: Any, max_operations: int) -> list[Operation]:
    """``{"requests": [{"method", "url", "body"}, ...]}`` checked key by key: 400 naming what is wrong
    (``requests.3.url``), 413 past ``max_operations``. Nothing is looked up in the database here."""
    if not isinstance(payload, dict):
        raise bad_request("A batch is a JSON object with requests.", {"requests": ["required"]})
    unknown = sorted(set(payload) - {"requests"})
    if unknown:
        raise bad_request("A batch takes only requests.", {key: ["unknown key"] for key in unknown})
    requests = payload.get("requests")
    if not isinstance(requests, list) or not requests:
        raise bad_request("requests must be a non-empty list of operations.", {"requests": ["expected a list"]})
    if len(requests) > max_operations:
        raise AlyxError("too_large", f"A batch holds at most {max_operations} operations (api.max_batch); "
                        f"this one has {len(requests)}.", 413, {"requests": [f"At most {max_operations}."]})
    return [_operation(index, item) for index, item in enumerate(requests)]


def _operation(index: int, item: Any) -> Operation:
    where = f"requests.{index}"
    if not isinstance(item, dict):
        raise bad_request(f"Operation {index} is not an object.", {where: ["expected an object"]})
    unknown = sorted(set(item) - OPERATION_KEYS)
    if unknown:
        raise bad_request(f"Operation {index} has unknown keys.", {f"{where}.{key}": ["unknown key"]
                                                                   for key in unknown})
    method = item.get("method")
    if not isinstance(method, str) or method.upper() not in METHODS:
        raise bad_request(f"Operation {index}: method must be one of {', '.join(METHODS)}.",
                          {f"{where}.method": [f"one of {', '.join(METHODS)}"]})
    method = method.upper()
    url = item.get("url")
    matched = COLLECTION_URL.fullmatch(url) if isinstance(url, str) else None
    if matched is None or matched.group(2) == "bulk":
        raise bad_request(f"Operation {index}: url must be /api/collections/<collection>[/<id>] with no query.",
                          {f"{where}.url": ["not a collection route"]})
    takes_id, takes_body = METHODS[method]
    record_id = matched.group(2)
    if takes_id != (record_id is not None):
        shape = "/api/collections/<collection>/<id>" if takes_id else "/api/collections/<collection>"
        raise bad_request(f"Operation {index}: {method} takes the url {shape}.", {f"{where}.url": [shape]})
    body = item.get("body")
    if takes_body and not isinstance(body, dict):
        raise bad_request(f"Operation {index}: body must be a JSON object.", {f"{where}.body": ["expected an object"]})
    if not takes_body and body not in (None, {}):
        raise bad_request(f"Operation {index}: {method} takes no body.", {f"{where}.body": ["not allowed"]})
    return Operation(index, method, str(url), matched.group(1), record_id, body or {})


class Batch:
    """Runs a batch's operations through the records service in one write transaction.

    Sync hooks (the records service's guards) never run inside a write transaction: on SQLite it holds
    the write lock, and a function call must not. So the operations they guard first run ahead of it,
    in order, up to their guards (``GuardsAhead``), against the records as they are before the batch;
    then every operation runs in the transaction, the guarded ones with their hooks' changes.
    """

    def __init__(self, db: Database, records: Records, max_operations: int) -> None:
        self.db = db
        self.records = records
        self.max_operations = max_operations  # api.max_batch

    def run(self, payload: Any, auth: Principal | None) -> list[dict[str, Any]]:
        """Every operation, in order, or none: the first failure rolls back the batch and is raised
        with its own status and code, its message naming the operation and ``details``
        ``{"index": n, "error": {code, message, details}}`` (the operation's original error)."""
        operations = parse_operations(payload, self.max_operations)
        ahead = self._guards_ahead(operations, auth)
        results: list[dict[str, Any]] = []
        with self.db.write(all_or_nothing=True):  # SQLite: one BEGIN IMMEDIATE under the write lock
            for op in operations:
                try:
                    results.append(self._apply(op, auth, ahead.get(op.index)).to_dict())
                except AlyxError as exc:
                    raise failure(op, exc) from None
        return results

    def _guards_ahead(self, operations: list[Operation], auth: Principal | None
                      ) -> dict[int, tuple[str, GuardsAhead]]:
        """Run the guards of the operations that have any, before the transaction: index → (action, their changes)."""
        ahead: dict[int, tuple[str, GuardsAhead]] = {}
        made_here: set[str] = set()  # ids that operations before this one create
        for op in operations:
            actions = ("create", "update") if op.method == "PUT" else (ACTIONS[op.method],)
            action = self._action(op) if any(self.records.guarded(op.collection, a) for a in actions) else None
            if action is not None and self.records.guarded(op.collection, action):
                guards = GuardsAhead()
                try:
                    self._write(op, action, auth, guards)
                except AlyxError as exc:
                    if exc.status == 404 and op.record_id in made_here:
                        exc = AlyxError("conflict", f"The record {op.record_id!r} is made by an earlier operation of "
                                        "this batch, and sync hooks run before the batch: send this operation in "
                                        "a later request.", 409)
                    raise failure(op, exc) from None
                ahead[op.index] = (action, guards)
            if op.method in ("POST", "PUT") and isinstance(op.body.get("id"), str):
                made_here.add(op.body["id"])
        return ahead

    def _apply(self, op: Operation, auth: Principal | None, ahead: tuple[str, GuardsAhead] | None) -> Result:
        action = self._action(op)
        if ahead is not None and ahead[0] != action:
            raise AlyxError("conflict", f"This upsert's sync hooks ran for a {ahead[0]} before the batch, and an "
                            f"earlier operation made it an {action}: send it in a later request.", 409)
        body = self._write(op, action, auth, ahead[1] if ahead is not None else None)
        return Result({"create": 201, "update": 200, "delete": 204}[action], body)

    def _action(self, op: Operation) -> str:
        """create, update or delete: a PUT is an update when the body's id names a record that exists."""
        if op.method != "PUT":
            return ACTIONS[op.method]
        record_id = op.body.get("id")
        return "update" if isinstance(record_id, str) and self._exists(op.collection, record_id) else "create"

    def _write(self, op: Operation, action: str, auth: Principal | None,
               ahead: GuardsAhead | None) -> dict[str, Any] | None:
        """The operation through the records service (an upsert's create keeps the body's id, which the
        auth collection refuses: its ids are made by the server)."""
        records, name = self.records, op.collection
        if action == "create":
            return records.create(name, op.body, auth, _request("POST", op.body), ahead=ahead)
        record_id = op.record_id or str(op.body["id"])
        if action == "update":
            return records.update(name, record_id, op.body, auth, _request("PATCH", op.body), ahead=ahead)
        records.delete(name, record_id, auth, _request("DELETE", {}), ahead=ahead)
        return None

    def _exists(self, name: str, record_id: str) -> bool:
        """Whether the record exists at all (rules aside: a hidden one is then updated, which 404s,
        rather than created beside itself)."""
        try:
            self.records.view_unchecked(name, record_id)
        except AlyxError as exc:
            if exc.status == 404:
                return False
            raise
        return True


def _request(method: str, body: Mapping[str, Any]) -> RequestInfo:
    """What an operation's rules see as ``request``: the method of its write (an upsert's POST or
    PATCH), its body, no query."""
    return RequestInfo(method=method, query={}, body=body)


def failure(op: Operation, exc: AlyxError) -> AlyxError:
    """The batch's error for operation ``op`` failing with ``exc``: the same status, code and headers."""
    return AlyxError(exc.code, f"Operation {op.index} ({op.method} {op.url}) failed: {exc.message}", exc.status,
                     {"index": op.index, "error": exc.to_dict()["error"]}, exc.headers)
