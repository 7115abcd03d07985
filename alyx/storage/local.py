"""A blob store in a local folder (the default: data/storage/ in the project)."""
from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from alyx.storage.base import CHUNK, BlobInfo
from alyx.storage.names import check_key

PARTIAL = ".upload-"  # temporary files of writes in progress


class LocalStorage:
    """Blobs as files under ``root``; written to a temporary file and renamed, so a reader never sees
    half a file. Every key is checked and its resolved path must stay under ``root``."""

    name = "local"

    def __init__(self, root: Path) -> None:
        self.root = root.resolve()

    def path(self, key: str) -> Path:
        """The file of ``key``; ValueError for a key that would leave the root."""
        path = (self.root / check_key(key)).resolve()
        if not path.is_relative_to(self.root) or path == self.root:
            raise ValueError(f"storage key {key[:40]!r} leaves the storage folder")
        return path

    def put(self, key: str, stream: IO[bytes], content_type: str) -> int:
        path = self.path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=PARTIAL)
        written = 0
        try:
            with os.fdopen(fd, "wb") as out:
                while chunk := stream.read(CHUNK):
                    out.write(chunk)
                    written += len(chunk)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return written

    def stat(self, key: str) -> BlobInfo | None:
        try:
            st = self.path(key).stat()
        except FileNotFoundError:
            return None
        return BlobInfo(key, st.st_size, st.st_mtime)

    def read(self, key: str, start: int = 0, end: int | None = None) -> Iterator[bytes]:
        with self.path(key).open("rb") as f:
            f.seek(start)
            left = None if end is None else end - start
            while left is None or left > 0:
                chunk = f.read(CHUNK if left is None else min(CHUNK, left))
                if not chunk:
                    return
                if left is not None:
                    left -= len(chunk)
                yield chunk

    def delete(self, key: str) -> None:
        path = self.path(key)
        path.unlink(missing_ok=True)
        for parent in path.parents:  # drop folders left empty, never the root
            if parent == self.root or not parent.is_relative_to(self.root):
                break
            try:
                parent.rmdir()
            except OSError:
                break

    def list(self, prefix: str = "") -> Iterator[BlobInfo]:
        if not self.root.is_dir():
            return
        for dirpath, _, files in os.walk(self.root):
            for file_name in files:
                if file_name.startswith(PARTIAL):
                    continue  # a write in progress, or one a crash cut short (purge_partial)
                full = Path(dirpath) / file_name
                key = full.relative_to(self.root).as_posix()
                if key.startswith(prefix):
                    st = full.stat()
                    yield BlobInfo(key, st.st_size, st.st_mtime)

    def purge_partial(self, before: float) -> int:
        removed = 0
        for partial in self.root.rglob(f"{PARTIAL}*") if self.root.is_dir() else ():
            if partial.is_file() and partial.stat().st_mtime < before:
                partial.unlink(missing_ok=True)
                removed += 1
        return removed
