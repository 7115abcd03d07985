"""Who sees what: audiences (one collection, principal and filter), their verdict on each change,
and the subscribe-time check that a principal's rules can let anything through at all."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from alyx import cel
from alyx.collection import Collection
from alyx.errors import AlyxError
from alyx.realtime.feed import Change
from alyx.rules import AccessRules, Principal, RequestInfo, RuleNames

RULE_OPERATIONS = ("list", "view")  # a subscriber sees a record when both rules let it through


class Recipient(Protocol):
    """Where a subscription's frames go (a realtime client)."""

    def push(self, frame: bytes) -> None: ...


@dataclass(eq=False)
class Subscription:
    """One live query of one client."""

    id: str
    client: Recipient
    audience: Audience
    cursor: int = 0  # every change up to here has been considered for this subscription


class Audience:
    """Subscriptions that see the same thing: one collection, one principal, one filter."""

    def __init__(self, key: tuple[Any, ...], coll: Collection, access: AccessRules, principal: Principal | None,
                 where: cel.Node | None) -> None:
        self.key = key
        self.coll = coll
        self.access = access
        self.principal = principal
        self.where = where
        self.subs: set[Subscription] = set()

    def visible(self, change: Change, doc: dict[str, Any] | None) -> bool:
        """Whether this audience may see `doc` (a state of the changed record) and it passes the filter."""
        if doc is None:
            return False
        typed = change.typed.get(id(doc))
        if typed is None:
            typed = change.typed[id(doc)] = self.coll.from_json(doc)
        name = self.coll.spec.name
        request = RequestInfo()
        if not all(self.access.allows(name, op, self.principal, typed, request) for op in RULE_OPERATIONS):
            return False
        if self.where is None:
            return True
        try:
            return cel.Evaluator(lambda path: typed.get(path[0])).truth(self.where)
        except (cel.CelError, TypeError, ValueError):
            return False

    def verdict(self, change: Change) -> tuple[str, Any] | None:
        """What this audience should be told about a change: insert/update (doc), delete (id), or nothing."""
        if change.action == "create":
            return ("insert", change.record) if self.visible(change, change.record) else None
        if change.action == "delete":
            return ("delete", change.record.get("id")) if self.visible(change, change.record) else None
        now = self.visible(change, change.record)
        before = self.visible(change, change.previous) if change.previous is not None else now
        if now:
            return ("update" if before else "insert", change.record)
        return ("delete", change.record.get("id")) if before else None


def check_subscribable(access: AccessRules, coll: Collection, principal: Principal | None) -> None:
    """Refuse a subscription the list/view rules can never let through for this principal (401/403)."""
    if principal is not None and principal.is_admin:
        return
    names = RuleNames(coll.spec, None, principal, None)
    for op in RULE_OPERATIONS:
        rule = access.rule(coll.spec.name, op)
        if rule.node is None or static_truth(rule.node, names) is False:
            if principal is None:
                raise AlyxError("unauthorized", f"Sign in to subscribe to {coll.spec.name!r}.", 401)
            raise AlyxError("forbidden", f"You are not allowed to subscribe to {coll.spec.name!r}.", 403)


def static_truth(node: cel.Node, names: RuleNames) -> bool | None:
    """A rule's value when it does not depend on the record (auth/request only), else None (unknown)."""
    if isinstance(node, cel.BoolOp):
        left, right = static_truth(node.left, names), static_truth(node.right, names)
        if node.op == "&&":
            return False if False in (left, right) else (True if left is True and right is True else None)
        return True if True in (left, right) else (False if left is False and right is False else None)
    if isinstance(node, cel.Not):
        value = static_truth(node.operand, names)
        return None if value is None else not value
    if any(path[0] == "doc" for path in cel.names_in(node)):
        return None

    def lookup(path: tuple[str, ...]) -> Any:
        resolved = names(path)
        if isinstance(resolved, cel.Column):
            raise AttributeError(path)  # a record field: the value is unknown here
        return resolved.value

    try:
        return cel.Evaluator(lookup).truth(node)
    except (cel.CelError, TypeError, ValueError, AttributeError):
        return None
