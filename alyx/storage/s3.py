"""A blob store in any S3-compatible bucket (AWS, MinIO, R2, ...), through boto3.

boto3 is imported and its client made on first use, never at start-up: gunicorn's master builds the
services before forking gevent workers, and botocore imported there (before the worker patches
``ssl``) makes every TLS context in the worker recurse until it fails (STACK.md: patch first).
"""
from __future__ import annotations

import base64
import hashlib
import importlib
import threading
from collections.abc import Iterator, Mapping
from typing import IO, Any

from alyx.storage.base import CHUNK, BlobInfo
from alyx.storage.names import check_key

SINGLE_PUT_MAX = 1024 ** 3  # bytes sent in one PUT (S3 takes up to 5 GB); larger files go in parts
PART_SIZE = 64 * 1024 ** 2  # bytes per part of a multipart upload (10,000 parts at most: 640 GB)
S3_SETTINGS = frozenset({"endpoint", "bucket", "region", "access_key", "secret", "force_path_style", "prefix"})


class S3Storage:
    """Blobs as objects of one bucket (optionally under ``prefix``).

    Every upload streams from its (temporary) file in small blocks: one PUT up to ``single_put_max``,
    parts of ``part_size`` above, each part a window on the file. Integrity comes from a Content-MD5
    computed here in CHUNK-sized reads, so botocore neither signs the payload (a SHA-256 read in 1 MB
    pieces) nor wraps it in aws-chunked CRC32 framing (1 MB chunks re-sliced per 8 KB send): both
    held 2+ MB per upload, which the allocator kept (docs/benchmarks.md, Files).
    """

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
        self.single_put_max = SINGLE_PUT_MAX
        self.part_size = PART_SIZE
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
                        config=boto_config.Config(s3={"addressing_style": style, "payload_signing_enabled": False},
                                                  request_checksum_calculation="when_required",
                                                  retries={"max_attempts": 3}))
        return self._client

    def _object(self, key: str) -> str:
        check_key(key)
        return f"{self.prefix}/{key}" if self.prefix else key

    def put(self, key: str, stream: IO[bytes], content_type: str) -> int:
        name = self._object(key)
        start = stream.tell()
        size = stream.seek(0, 2) - start
        if size <= self.single_put_max:
            body = _Window(stream, start, size)
            self.client.put_object(Bucket=self.bucket, Key=name, Body=body, ContentLength=size,
                                   ContentType=content_type, ContentMD5=_md5(body))
        else:
            self._put_parts(name, stream, start, size, content_type)
        return size

    def _put_parts(self, name: str, stream: IO[bytes], start: int, size: int, content_type: str) -> None:
        """A multipart upload, one part at a time; aborted (no object, no stored parts) if any part fails."""
        client = self.client
        upload_id = client.create_multipart_upload(Bucket=self.bucket, Key=name, ContentType=content_type)["UploadId"]
        parts = []
        try:
            for number, offset in enumerate(range(0, size, self.part_size), 1):
                part = _Window(stream, start + offset, min(self.part_size, size - offset))
                sent = client.upload_part(Bucket=self.bucket, Key=name, UploadId=upload_id, PartNumber=number,
                                          Body=part, ContentLength=part.length, ContentMD5=_md5(part))
                parts.append({"ETag": sent["ETag"], "PartNumber": number})
            client.complete_multipart_upload(Bucket=self.bucket, Key=name, UploadId=upload_id,
                                             MultipartUpload={"Parts": parts})
        except BaseException:
            client.abort_multipart_upload(Bucket=self.bucket, Key=name, UploadId=upload_id)
            raise

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
        """Nothing to do: an object appears only when its upload completes (a failed multipart upload is
        aborted; a bucket lifecycle rule can expire the parts of one a crash cut short)."""
        return 0


def _md5(body: _Window) -> str:
    """The base64 MD5 of ``body`` (read in CHUNK pieces, then rewound), for Content-MD5."""
    digest = hashlib.md5(usedforsecurity=False)
    body.seek(0)
    while chunk := body.read(CHUNK):
        digest.update(chunk)
    body.seek(0)
    return base64.b64encode(digest.digest()).decode("ascii")


class _Window:
    """``length`` bytes of a stream from ``start``, as a file botocore reads (and rewinds on a retry)
    without closing it: the caller owns the stream."""

    def __init__(self, stream: IO[bytes], start: int, length: int) -> None:
        self.stream = stream
        self.start = start
        self.length = length
        self.pos = 0
        stream.seek(start)

    def read(self, size: int | None = -1) -> bytes:
        left = self.length - self.pos
        size = left if size is None or size < 0 else min(size, left)
        data = self.stream.read(size) if size > 0 else b""
        self.pos += len(data)
        return data

    def seek(self, offset: int, whence: int = 0) -> int:
        base = {0: 0, 1: self.pos, 2: self.length}[whence]
        self.pos = max(0, min(self.length, base + offset))
        self.stream.seek(self.start + self.pos)
        return self.pos

    def tell(self) -> int:
        return self.pos

    def close(self) -> None:
        pass
