"""/api/files/<collection>/<id>/<name> (downloads, thumbnails) and /api/files/token (protected files)."""
from __future__ import annotations

from urllib.parse import quote

from flask import Blueprint, Response, request

from alyx.blueprints import current_principal, request_info, services
from alyx.blueprints.access import signed_in_principal, signed_in_required
from alyx.errors import AlyxError
from alyx.file_access import StoredFile
from alyx.http import json_response
from alyx.storage.sniff import INLINE_SAFE

bp = Blueprint("files", __name__, url_prefix="/api/files")


@bp.post("/token")
@signed_in_required
def file_token() -> Response:
    return json_response(services().files.issue_token(signed_in_principal()))


@bp.get("/<collection>/<record_id>/<name>")
def download(collection: str, record_id: str, name: str) -> Response:
    files = services().files
    token = request.args.get("token")
    principal = files.token_principal(token) if token else current_principal()
    found, sizes = files.locate(collection, record_id, name, principal, request_info(), with_token=bool(token))
    thumb = request.args.get("thumb")
    if thumb:
        found = files.thumbnail(found, collection, record_id, thumb, sizes)
    return send(found)


def send(found: StoredFile) -> Response:
    """The file's bytes (or the asked-for range), with headers that keep a browser from running it."""
    headers = {
        "ETag": f'"{found.etag}"',
        "Accept-Ranges": "bytes",
        "X-Content-Type-Options": "nosniff",
        "Cache-Control": "private, no-cache" if found.protected else "public, max-age=0, must-revalidate",
        "Content-Disposition": disposition(found),
    }
    if found.kind.mime not in INLINE_SAFE:
        headers["Content-Security-Policy"] = "sandbox; default-src 'none'"
    else:
        headers["Content-Security-Policy"] = "default-src 'none'"
    if request.if_none_match.contains(found.etag):
        return Response(status=304, headers=headers)
    start, end, status = 0, found.size, 200
    ranged = request.range
    if ranged is not None and len(ranged.ranges) == 1 and (  # several ranges: the whole file (RFC 9110 allows it)
            not request.if_range.etag or request.if_range.etag == found.etag):
        span = ranged.range_for_length(found.size)
        if span is None:
            raise AlyxError("range_not_satisfiable", "The requested range is outside the file.", 416,
                            headers={"Content-Range": f"bytes */{found.size}"})
        start, end = span
        status = 206
        headers["Content-Range"] = f"bytes {start}-{end - 1}/{found.size}"
    headers["Content-Length"] = str(end - start)
    body = services().storage.read(found.key, start, end) if end > start else iter(())
    return Response(body, status=status, mimetype=found.kind.mime, headers=headers, direct_passthrough=True)


def disposition(found: StoredFile) -> str:
    """``inline`` only for images and PDFs; the stored name is already safe ASCII, quoted anyway."""
    kind = "inline" if found.kind.mime in INLINE_SAFE else "attachment"
    return f"{kind}; filename=\"{found.name}\"; filename*=UTF-8''{quote(found.name)}"
