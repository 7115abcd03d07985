"""File fields in the records write path: check uploads, name them, write blobs before the record
commits, delete replaced or removed blobs after it commits.

A crash between the blob write and the commit leaves blobs no record names; alyx/file_sweep.py
removes them. A committed record never names a blob that was not written first.
"""
from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import IO, Any

from alyx.errors import AlyxError, validation_failed
from alyx.fields.base import FieldSpec
from alyx.fields.file import FileSettings, file_settings
from alyx.schema import CollectionSpec
from alyx.storage import Storage
from alyx.storage.names import blob_key, stored_name, thumb_key
from alyx.storage.sniff import SNIFF_BYTES, Kind, matches, sniff

log = logging.getLogger("alyx.files")

JSON_PART = "@json"  # the multipart part (or form value) holding a write's other fields as one JSON object


@dataclass
class Upload:
    """One uploaded file of a request: the form field (``avatar``; ``append``: sent as ``avatar+``),
    the client's file name and a seekable stream (a temporary file: never the whole file in memory)."""

    field: str
    filename: str
    stream: IO[bytes]
    append: bool = False


@dataclass
class FileInput:
    """The file part of a write: uploads, and names to remove per field (``field-``)."""

    uploads: list[Upload] = field(default_factory=list)
    removals: dict[str, list[str]] = field(default_factory=dict)


@dataclass
class FilePlan:
    """The blobs of one record write: written before the transaction, the replaced ones deleted after."""

    storage: Storage
    values: dict[str, Any] = field(default_factory=dict)  # the file fields' new stored values
    writes: list[tuple[str, Upload, Kind]] = field(default_factory=list)
    deletes: list[str] = field(default_factory=list)
    written: list[str] = field(default_factory=list)

    def write(self) -> None:
        """Write every new blob (before the record's transaction)."""
        for key, upload, kind in self.writes:
            upload.stream.seek(0)
            self.storage.put(key, upload.stream, kind.mime)
            self.written.append(key)

    def discard(self) -> None:
        """The write failed: remove the blobs written for it (what a crash leaves, the sweep removes)."""
        self._delete(self.written)

    def finish(self) -> None:
        """The record committed: delete the blobs it no longer names (and their thumbnails)."""
        self._delete(self.deletes)

    def _delete(self, keys: list[str]) -> None:
        for key in keys:
            try:
                self.storage.delete(key)
            except Exception:  # the sweep removes it later; the committed record is right either way
                log.warning("could not delete blob %s", key, exc_info=True)


class RecordFiles:
    """Turns a write's file input into stored names and a FilePlan (no HTTP, no SQL)."""

    def __init__(self, storage: Storage) -> None:
        self.storage = storage

    def plan(self, spec: CollectionSpec, record_id: str, data: dict[str, Any], files: FileInput | None,
             stored: Mapping[str, Any] | None) -> FilePlan | None:
        """Check the write's files and put the resulting names into ``data``; None when the collection
        has no file fields. 413 for a file past its field's max_size, 422 for a wrong type, too many
        files, a name the record does not have, or a missing required file."""
        file_fields = spec.file_fields
        if not file_fields:
            if files is not None and (files.uploads or files.removals):
                names = sorted({u.field for u in files.uploads} | set(files.removals))
                raise validation_failed({n: [f"{spec.name!r} has no file field {n!r}."] for n in names})
            return None
        files = files or FileInput()
        known = {f.name for f in file_fields}
        unknown = sorted(({u.field for u in files.uploads} | set(files.removals)) - known)
        if unknown:
            raise validation_failed({n: [f"Not a file field of {spec.name!r}."] for n in unknown})
        plan = FilePlan(self.storage)
        problems: dict[str, list[str]] = {}
        for f in file_fields:
            settings = file_settings(f)
            current = names_of(stored.get(f.name) if stored else None)
            uploads = [u for u in files.uploads if u.field == f.name]
            touched = f.name in data or bool(uploads) or f.name in files.removals
            if not touched:
                if stored is None and f.required:
                    problems[f.name] = ["Missing data for required field."]
                elif stored is None and settings.multiple:
                    data[f.name] = plan.values[f.name] = []
                continue
            names = names_of(data.get(f.name)) if f.name in data else list(current)
            strangers = [n for n in names if n not in current]
            if strangers:
                problems[f.name] = [f"{strangers[0]!r} is not a file of this record; upload files with "
                                    "multipart/form-data."]
                continue
            removed = set(files.removals.get(f.name, ()))
            names = [n for n in names if n not in removed]
            if any(not u.append for u in uploads) or (uploads and not settings.multiple):
                names = []  # `field` (not `field+`) replaces the files; a single file is always replaced
            for upload in uploads:
                kind = self._check_upload(f, settings, upload)
                name = stored_name(upload.filename, kind.ext)
                names.append(name)
                plan.writes.append((blob_key(spec.name, record_id, name), upload, kind))
            if len(names) > settings.max_files:
                problems[f.name] = [f"At most {settings.max_files} file(s)."]
            elif f.required and not names:
                problems[f.name] = ["Missing data for required field."]
            data[f.name] = plan.values[f.name] = names if settings.multiple else (names[0] if names else None)
            for gone in (n for n in current if n not in names):
                plan.deletes += keys_of(spec.name, record_id, gone, settings)
        if problems:
            raise validation_failed(problems)
        return plan

    def deleted(self, spec: CollectionSpec, stored: Mapping[str, Any]) -> FilePlan | None:
        """The plan of a record delete: every blob of the record goes after the commit."""
        plan = FilePlan(self.storage)
        for f in spec.file_fields:
            for name in names_of(stored.get(f.name)):
                plan.deletes += keys_of(spec.name, str(stored["id"]), name, file_settings(f))
        return plan if plan.deletes else None

    @staticmethod
    def _check_upload(f: FieldSpec, settings: FileSettings, upload: Upload) -> Kind:
        stream = upload.stream
        stream.seek(0, 2)
        size = stream.tell()
        if size > settings.max_size:
            raise AlyxError("too_large", f"{upload.filename[:80]!r} is {size} bytes; {f.name!r} takes files up to "
                            f"{settings.max_size} bytes.", 413, {f.name: [f"At most {settings.max_size} bytes."]})
        stream.seek(0)
        head = stream.read(SNIFF_BYTES)
        stream.seek(0)
        kind = sniff(head, upload.filename.rpartition(".")[2] if "." in upload.filename else "")
        if not matches(kind.mime, settings.mime_types):
            raise validation_failed({f.name: [f"{upload.filename[:80]!r} is {kind.mime}; {f.name!r} takes "
                                              f"{', '.join(settings.mime_types)}."]}, "The file type is not allowed.")
        return kind


def blobs_written(plan: FilePlan | None) -> contextlib.AbstractContextManager[None]:
    """Write the plan's blobs, then run the block (the record's transaction); remove them if it fails.
    Without a plan (no file field in the write), a no-op context: this is on every record write."""
    return _NO_BLOBS if plan is None else _blobs_written(plan)


_NO_BLOBS = contextlib.nullcontext()


@contextlib.contextmanager
def _blobs_written(plan: FilePlan) -> Iterator[None]:
    try:
        plan.write()
        yield
    except BaseException:
        plan.discard()
        raise


def check_files_unchanged(spec: CollectionSpec, planned_from: Mapping[str, Any], stored: Mapping[str, Any]) -> None:
    """409 when another write changed the record's files between planning an update and its transaction."""
    if any(planned_from.get(f.name) != stored.get(f.name) for f in spec.file_fields):
        raise AlyxError("conflict", "The record's files changed during this update; send it again.", 409)


def names_of(value: Any) -> list[str]:
    """A file field's stored value as a list of names."""
    if value is None or value == "":
        return []
    if isinstance(value, str):
        return [value]
    return [str(v) for v in value]


def keys_of(collection: str, record_id: str, name: str, settings: FileSettings) -> list[str]:
    """The keys of one stored file: the blob and each of its possible thumbnails."""
    return [blob_key(collection, record_id, name)] + [thumb_key(collection, record_id, size, name)
                                                      for size in settings.thumbs]
