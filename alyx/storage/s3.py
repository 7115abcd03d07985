"""A blob store in any S3-compatible bucket (AWS, MinIO, R2, ...), through boto3.

boto3 is imported and its client made on first use, never at start-up: gunicorn's master builds the
services before forking gevent workers, and botocore imported there (before the worker patches
``ssl``) makes every TLS context in the worker recurse until it fails (STACK.md: patch first).
"""
from __future__ import annotations

import importlib
import threading
from collections.abc import Iterator, Mapping
from typing import IO, Any

from alyx.storage.base import CHUNK, BlobInfo
from alyx.storage.names import check_key

SINGLE_PUT_MAX = 1024 ** 3  # bytes sent in one PUT (S3 takes up to 5 GB; parts beyond)
S3_SETTINGS = frozenset({"endpoint", "bucket", "region", "access_key", "secret", "force_path_style", "prefix"})


class S3Storage:
    """Blobs as objects of one bucket (optionally under ``prefix``). Uploads go through boto3's managed
    transfer, which sends large files in parts: a file is streamed, never held whole."""

    name = "s3"

    def __init__(self, settings: Mapping[str, Any]) -> None:
        unknown = set(settings) - S3_SETTINGS
        if unknown:
            raise ValueError(f"unknown key(s) {', '.join(sorted(unknown))}; known: {', '.join(sorted(S3_SETTINGS))}")
        if not settings.get("bucket"):
            raise ValueError("bucket is required")
        self.bucket = str(settings["bucket"])
        self.prefix = str(settings.get("prefix") or "").strip("/")
        self.settings = dict(settings)
        self._client: Any = None
        self._lock = threading.Lock()

    @property
    def client(self) -> Any:
        """The boto3 S3 client, made on first use (see the module's docstring)."""
        if self._client is None:
            with self._lock:
                if self._client is None:
                    boto3 = importlib.import_module("boto3")
                    boto_config = importlib.import_module("botocore.config")
                    settings = self.settings
                    style = "path" if settings.get("force_path_style") else "auto"
                    self._client = boto3.session.Session().client(
                        "s3", endpoint_url=settings.get("endpoint") or None,
                        region_name=settings.get("region") or "us-east-1",
                        aws_access_key_id=settings.get("access_key") or None,
                        aws_secret_access_key=settings.get("secret") or None,
                        config=boto_config.Config(s3={"addressing_style": style}, retries={"max_attempts": 3}))
        return self._client

    def _object(self, key: str) -> str:
        check_key(key)
        return f"{self.prefix}/{key}" if self.prefix else key

    def put(self, key: str, stream: IO[bytes], content_type: str) -> int:
        start = stream.tell()
        size = stream.seek(0, 2) - start
        stream.seek(start)
        if size <= SINGLE_PUT_MAX:  # one PUT streams the body from the file in small blocks
            self.client.put_object(Bucket=self.bucket, Key=self._object(key), Body=_KeepOpen(stream),
                                   ContentLength=size, ContentType=content_type)
        else:  # larger: parts (each part is read into memory by s3transfer; one at a time)
            transfer = importlib.import_module("boto3.s3.transfer")
            self.client.upload_fileobj(_KeepOpen(stream), self.bucket, self._object(key),
                                       ExtraArgs={"ContentType": content_type},
                                       Config=transfer.TransferConfig(max_concurrency=1, use_threads=False))
        return size

    def stat(self, key: str) -> BlobInfo | None:
        client = self.client
        try:
            head = client.head_object(Bucket=self.bucket, Key=self._object(key))
        except client.exceptions.ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return None
            raise
        return BlobInfo(key, int(head["ContentLength"]), head["LastModified"].timestamp())

    def read(self, key: str, start: int = 0, end: int | None = None) -> Iterator[bytes]:
        extra = {}
        if start or end is not None:
            extra["Range"] = f"bytes={start}-{'' if end is None else end - 1}"
        body = self.client.get_object(Bucket=self.bucket, Key=self._object(key), **extra)["Body"]
        try:
            yield from body.iter_chunks(CHUNK)
        finally:
            body.close()

    def delete(self, key: str) -> None:
        self.client.delete_object(Bucket=self.bucket, Key=self._object(key))

    def list(self, prefix: str = "") -> Iterator[BlobInfo]:
        full = f"{self.prefix}/{prefix}" if self.prefix else prefix
        cut = len(self.prefix) + 1 if self.prefix else 0
        for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=full):
            for item in page.get("Contents", ()):
                yield BlobInfo(item["Key"][cut:], int(item["Size"]), item["LastModified"].timestamp())

    def purge_partial(self, before: float) -> int:
        """Nothing to do: an object appears only when its upload completes (boto3 aborts failed multipart
        uploads; a bucket lifecycle rule can expire ones a crash left)."""
        return 0


class _KeepOpen:
    """A stream boto3 reads (in parts, seeking) without closing it: the caller owns the stream."""

    def __init__(self, stream: IO[bytes]) -> None:
        self.stream = stream

    def read(self, size: int = -1) -> bytes:
        return self.stream.read(size)

    def seek(self, offset: int, whence: int = 0) -> int:
        return self.stream.seek(offset, whence)

    def tell(self) -> int:
        return self.stream.tell()

    def close(self) -> None:
        pass
