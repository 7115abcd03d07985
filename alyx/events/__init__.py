"""Events: database hooks, verified webhooks, custom events and outgoing webhooks → function runs (most as jobs).

- Manifests say what a function listens to (``hooks:``, ``schedules:``, ``retries:``), parsed with the
  rest of the manifest by alyx/sandbox/manifest.py; ``HookIndex`` (index.py) is that, for every
  function, refreshed as files change.
- Async database hooks and outgoing webhooks are an outbox (outbox.py): their job rows are inserted
  by a journal writer inside the record's own write transaction (alyx/records.py), so a committed
  write always has its jobs and a rolled-back one has none.
- Sync database hooks are record guards (sync_hooks.py): they run before the write's transaction
  (never inside the SQLite write lock), within ``events.sync_timeout_seconds``, and may refuse the
  write or change fields.
- Every job runs through the job runner (runner.py): one attempt, one execution record; failures go
  back to the queue with a backoff until the function's ``retries`` are spent, then to the dead letter.
- Outgoing webhooks (outgoing.py): alyx.yaml ``webhooks:`` and the signed POST to the receiver.
- Incoming webhooks and custom events (incoming.py) become ``req.input``: a ``mode: sync`` webhook runs at
  once and its response is the sender's (service.py ``receive_webhook``); ``mode: async`` ones and events are jobs.
- Every function run goes through alyx/functions.py ``Functions.run`` (trigger.py: as its caller — the
  writer, the publisher; anonymous for webhooks and schedules — or as the server with ``run_as: system``).

No Flask here: alyx/blueprints/webhooks.py and schedules.py are the HTTP side.
"""
from __future__ import annotations

from alyx.events.index import HookCatalog, HookIndex, event_matches
from alyx.events.outbox import HOOK_ACTION, change_input
from alyx.events.outgoing import DEFAULT_SIGNATURE_HEADER, OutgoingWebhook, parse_outgoing
from alyx.events.service import Events
from alyx.sandbox.manifest import ACTIONS, DatabaseHook, EventHook, FunctionHooks, WebhookHook

__all__ = ["ACTIONS", "DEFAULT_SIGNATURE_HEADER", "HOOK_ACTION", "DatabaseHook", "EventHook",
           "Events", "FunctionHooks", "HookCatalog", "HookIndex", "OutgoingWebhook", "WebhookHook", "change_input",
           "event_matches", "parse_outgoing"]
