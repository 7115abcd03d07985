"""The interface of a blob store: put a stream, read a byte range, list, delete."""
from __future__ import annotations

from collections.abc import Iterator
from typing import IO, NamedTuple, Protocol

CHUNK = 64 * 1024  # bytes read or written at a time: files stream, they are never held whole


class BlobInfo(NamedTuple):
    """One stored blob: its key, size in bytes and last-modified time (epoch seconds)."""

    key: str
    size: int
    modified: float


class Storage(Protocol):
    """Where file fields keep their blobs. Keys are checked (alyx/storage/names.py) before use."""

    name: str  # "local" | "s3"

    def put(self, key: str, stream: IO[bytes], content_type: str) -> int:
        """Store ``stream`` (read to its end, in chunks) under ``key``; the number of bytes written."""
        ...

    def stat(self, key: str) -> BlobInfo | None:
        """The blob's size and time, or None when there is none."""
        ...

    def read(self, key: str, start: int = 0, end: int | None = None) -> Iterator[bytes]:
        """The bytes ``start`` to ``end`` (exclusive; None: to the end), in chunks."""
        ...

    def delete(self, key: str) -> None:
        """Remove a blob; a missing one is not an error."""
        ...

    def list(self, prefix: str = "") -> Iterator[BlobInfo]:
        """Every blob whose key starts with ``prefix``."""
        ...

    def purge_partial(self, before: float) -> int:
        """Remove writes a crash cut short that started before ``before`` (epoch seconds); how many."""
        ...
