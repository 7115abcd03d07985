"""Downloads of file fields: who may read a file (the view rule; protected files need a file token),
where its bytes are, and its thumbnails (made once, then kept in storage)."""
from __future__ import annotations

import hashlib
import io
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import jwt

from alyx.errors import AlyxError, not_found
from alyx.fields.file import file_settings, thumb_box
from alyx.record_files import names_of
from alyx.records import Records
from alyx.rules import Principal, RequestInfo
from alyx.signing_keys import KeyRing
from alyx.storage import Storage
from alyx.storage.names import blob_key, is_stored_name, thumb_key
from alyx.storage.sniff import Kind, kind_of_name
from alyx.thumbs import can_thumb, make_thumb

ISSUER = "alyx"
TOKEN_TYPE = "file"


@dataclass(frozen=True)
class StoredFile:
    """One file to send: its storage key, stored name, kind, size and entity tag."""

    key: str
    name: str
    kind: Kind
    size: int
    etag: str
    protected: bool


class FileAccess:
    """Finds the file a download asks for, checks the caller may read it, and issues file tokens."""

    def __init__(self, records: Records, storage: Storage, keys: Callable[[], KeyRing], token_ttl: int) -> None:
        self.records = records
        self.storage = storage
        self.keys = keys
        self.token_ttl = token_ttl

    # -- tokens ---------------------------------------------------------------------------------
    def issue_token(self, principal: Principal) -> dict[str, Any]:
        """A short-lived token for protected files, bound to the caller (``?token=`` on downloads)."""
        now = int(time.time())
        ring = self.keys()
        claims = {"iss": ISSUER, "typ": TOKEN_TYPE, "sub": principal.id, "email": principal.email,
                  "role": principal.role, "verified": principal.verified, "iat": now, "exp": now + self.token_ttl}
        token = jwt.encode(claims, ring.signing_key, algorithm="HS256", headers={"kid": ring.signing_kid})
        return {"token": token, "expires_in": self.token_ttl}

    def token_principal(self, token: str) -> Principal:
        """The user a file token was issued to; 401 for a bad, expired or foreign token."""
        ring = self.keys()
        try:
            kid = jwt.get_unverified_header(token).get("kid")
            key = ring.keys.get(kid) if isinstance(kid, str) else None
            if key is None:
                raise jwt.InvalidTokenError("unknown key")
            claims = jwt.decode(token, key, algorithms=["HS256"], issuer=ISSUER,
                                options={"require": ["exp", "iat", "sub", "iss"]})
        except jwt.ExpiredSignatureError:
            raise AlyxError("token_expired", "The file token has expired; get a new one from "
                            "POST /api/files/token.", 401) from None
        except jwt.InvalidTokenError:
            raise AlyxError("invalid_token", "The file token is invalid.", 401) from None
        if claims.get("typ") != TOKEN_TYPE or not isinstance(claims.get("sub"), str):
            raise AlyxError("invalid_token", "The token is not a file token.", 401)
        return Principal(claims["sub"], str(claims.get("email") or ""), str(claims.get("role") or "user"),
                         bool(claims.get("verified")))

    # -- downloads ------------------------------------------------------------------------------
    def locate(self, collection: str, record_id: str, name: str, principal: Principal | None,
               request: RequestInfo | None, with_token: bool) -> tuple[StoredFile, tuple[str, ...]]:
        """The file and its field's thumbnail sizes; 404 when the record is hidden or has no such file,
        401 for a protected file without a file token."""
        if not is_stored_name(name):
            raise not_found("No such file.")
        coll = self.records.collection(collection)
        record = self.records.view(collection, record_id, {}, principal, request)
        for f in coll.spec.file_fields:
            if name in names_of(record.get(f.name)):
                settings = file_settings(f)
                if settings.protected and not with_token:
                    raise AlyxError("unauthorized", "This file is protected: download it with ?token= from "
                                    "POST /api/files/token.", 401)
                return self._stored(blob_key(collection, record_id, name), name, settings.protected), settings.thumbs
        raise not_found("No such file.")

    def thumbnail(self, original: StoredFile, collection: str, record_id: str, size: str,
                  sizes: tuple[str, ...]) -> StoredFile:
        """The thumbnail of ``size`` (one of the field's ``thumbs``), made on first request and kept."""
        box = thumb_box(size)
        if size not in sizes or box is None:
            allowed = ", ".join(sizes) or "none"
            raise AlyxError("bad_request", f"Thumbnail size {size[:20]!r} is not offered (sizes: {allowed}).", 400)
        if not can_thumb(original.kind.mime):
            return original  # not an image: the file itself
        key = thumb_key(collection, record_id, size, original.name)
        if self.storage.stat(key) is None:
            with tempfile.SpooledTemporaryFile(max_size=1024 * 1024) as source:
                for chunk in self.storage.read(original.key):
                    source.write(chunk)
                source.seek(0)
                try:
                    data = make_thumb(source, original.kind.mime, *box)
                except ValueError:
                    return original
            self.storage.put(key, io.BytesIO(data), original.kind.mime)
        return self._stored(key, original.name, original.protected)

    def _stored(self, key: str, name: str, protected: bool) -> StoredFile:
        info = self.storage.stat(key)
        if info is None:
            raise not_found("The file's content is missing from storage.")
        # stored names are unique and blobs are never rewritten: the key and size identify the bytes
        etag = hashlib.sha256(f"{key}:{info.size}".encode()).hexdigest()[:32]
        return StoredFile(key, name, kind_of_name(name), info.size, etag, protected)
