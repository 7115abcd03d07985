"""The orphan sweep: blobs that no record names (a crash between blob write and commit, a failed
delete) are removed once they are older than a grace period (a write may still be committing)."""
from __future__ import annotations

import logging
import time
from collections import defaultdict

from alyx.fields.file import file_settings
from alyx.record_files import keys_of, names_of
from alyx.records import Records
from alyx.storage import Storage

log = logging.getLogger("alyx.files")


def sweep_orphans(records: Records, storage: Storage, grace_seconds: float) -> list[str]:
    """Delete every blob older than ``grace_seconds`` that no record names; the keys deleted.

    Callable from a CLI command (``alyx files sweep``) or any background loop; reads records in
    batches per record id (one query per record with blobs) without holding a transaction.
    """
    cutoff = time.time() - grace_seconds
    by_record: dict[tuple[str, str], list[str]] = defaultdict(list)
    deleted: list[str] = []
    for blob in storage.list():
        if blob.modified > cutoff:
            continue
        parts = blob.key.split("/")
        if len(parts) < 3:
            _drop(storage, blob.key, deleted)
            continue
        by_record[(parts[0], parts[1])].append(blob.key)
    with records.db.connection():
        for (collection, record_id), keys in by_record.items():
            kept = _kept_keys(records, collection, record_id)
            for key in keys:
                if key not in kept:
                    _drop(storage, key, deleted)
    storage.purge_partial(cutoff)
    return deleted


def _kept_keys(records: Records, collection: str, record_id: str) -> set[str]:
    coll = records.collections.get(collection)
    if coll is None:
        return set()
    fields = coll.spec.file_fields
    if not fields:
        return set()
    row = coll.model.select(*(coll.model._meta.fields[f.name] for f in fields)).where(
        coll.id_column == record_id).dicts().get_or_none()
    if row is None:
        return set()
    kept: set[str] = set()
    for f in fields:
        for name in names_of(row.get(f.name)):
            kept.update(keys_of(collection, record_id, name, file_settings(f)))
    return kept


def _drop(storage: Storage, key: str, deleted: list[str]) -> None:
    try:
        storage.delete(key)
    except Exception:
        log.warning("sweep: could not delete %s", key, exc_info=True)
        return
    deleted.append(key)
