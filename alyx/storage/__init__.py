"""Blob storage of file fields: a local folder or an S3-compatible bucket, behind one interface."""
from __future__ import annotations

from pathlib import Path

from alyx.config import Config
from alyx.errors import ConfigError
from alyx.storage.base import BlobInfo, Storage
from alyx.storage.local import LocalStorage
from alyx.storage.s3 import S3Storage

__all__ = ["BlobInfo", "LocalStorage", "S3Storage", "Storage", "open_storage"]


def open_storage(config: Config) -> Storage:
    """The configured store: S3 when ``storage.s3`` is set (or ``storage.backend: s3``), else local."""
    backend = config.storage_backend
    if backend == "auto":
        backend = "s3" if config.storage_s3 else "local"
    if backend == "s3":
        try:
            return S3Storage(config.storage_s3 or {})
        except ValueError as exc:
            raise ConfigError(f"storage.s3: {exc}") from None
    path = Path(config.storage_path)
    return LocalStorage(path if path.is_absolute() else config.project_dir / path)
