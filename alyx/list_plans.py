"""Prepared list queries: the SQL text of a list's page and count, built by peewee once per shape.

A list request with a filter cost about a millisecond more than one without, and almost all of it
was peewee turning the compiled filter (and the rule's condition) into SQL text, twice (page and
count). The text depends only on the shape of the request: the collection, the filter as written,
the bare ``?field=value`` pairs, sort, fields, expand, page size, whether to count, and for each
rule the caller it was compiled for. So it is built once per shape and kept (bounded); every list
still runs its queries, values stay bound parameters, and the page number only moves ``OFFSET``.

Not prepared (built by ``query.select_page`` every time, as before): rules that read ``request.*``
(their SQL differs per request), rules tested per row in Python, and lists without a filter text
(bulk writes' ``every_match``).
"""
from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass
from typing import Any

import peewee

from alyx import query as q
from alyx.db import RowReader, run_sql
from alyx.rules import AccessRules, Principal


@dataclass(frozen=True)
class PagePlan:
    """The SQL of one list shape: the page (``LIMIT``/``OFFSET`` parameters last) and the count."""

    sql: str
    params: tuple[Any, ...]
    count_sql: str | None  # None: skipTotal
    count_params: tuple[Any, ...]
    read: RowReader  # a row of the page → its dict


def plan_key(access: AccessRules, collection: str, lq: q.ListQuery, operations: tuple[str, ...],
             auth: Principal | None) -> tuple[Hashable, ...] | None:
    """Everything the SQL of a list depends on, or None when it must be built for this request alone."""
    if lq.where and lq.filter_source is None:
        return None
    admin = auth is not None and auth.is_admin
    callers: list[Principal | None] = []
    for op in operations:
        rule = access.rule(collection, op)
        if admin or rule.public:
            callers.append(None)  # no condition at all
        elif rule.reads_request or (rule.node is not None and not rule.pushdown):
            return None  # SQL per request, or a per-row test
        else:
            callers.append(auth)  # the condition is compiled per caller (AccessRules.where)
    return (collection, lq.filter_source, tuple(lq.equals.items()), tuple(lq.sort), lq.fields, lq.expand,
            lq.per_page, lq.skip_total, operations, admin, tuple(callers))


def plan_page(database: peewee.Database, model: type[peewee.Model], columns: list[peewee.Field],
              lq: q.ListQuery, conditions: list[peewee.Node], sqlite: bool) -> PagePlan:
    """The statements ``query.select_page`` runs without row tests, as text (peewee builds them here)."""
    select = model.select(*columns)
    if conditions:
        select = select.where(*conditions)
    ordered = select.order_by(*q.order_of(lq, model, sqlite)).paginate(1, lq.per_page)
    sql, params = ordered.sql()
    count_sql, count_params = None, []
    if not lq.skip_total:  # what peewee's .count() runs: COUNT(1) over the wrapped select
        inner = model.select(peewee.SQL("1"))
        if conditions:
            inner = inner.where(*conditions)
        counter = peewee.Select([inner.alias("_wrapped")], [peewee.fn.COUNT(peewee.SQL("1"))])
        count_sql, count_params = database.get_sql_context().sql(counter).query()  # type: ignore[no-untyped-call]
    return PagePlan(sql, tuple(params[:-2]), count_sql, tuple(count_params),
                    RowReader(columns))


def run_plan(database: peewee.Database, plan: PagePlan, lq: q.ListQuery) -> q.Page:
    """One page and its count, as ``query.select_page`` returns them."""
    bound = (*plan.params, lq.per_page, (lq.page - 1) * lq.per_page)
    raw = run_sql(database, plan.sql, bound).fetchall()
    rows = [plan.read(row) for row in raw]
    if plan.count_sql is None:
        return q.Page(rows, -1)
    total = run_sql(database, plan.count_sql, plan.count_params).fetchone()[0]
    return q.Page(rows, int(total))


class PagePlans:
    """Plans by ``plan_key``, at most ``max_entries`` (all forgotten when full: a hostile client sending
    endless distinct filters costs a rebuild, never memory)."""

    def __init__(self, max_entries: int = 1024) -> None:
        self.max_entries = max_entries
        self._plans: dict[tuple[Hashable, ...], PagePlan] = {}

    def __len__(self) -> int:
        return len(self._plans)

    def get(self, key: tuple[Hashable, ...] | None) -> PagePlan | None:
        return None if key is None else self._plans.get(key)

    def put(self, key: tuple[Hashable, ...], plan: PagePlan) -> PagePlan:
        if len(self._plans) >= self.max_entries:
            self._plans.clear()
        self._plans[key] = plan
        return plan

