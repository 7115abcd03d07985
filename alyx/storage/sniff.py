"""A file's type from its first bytes (magic numbers), never from its name: the few types Alyx knows."""
from __future__ import annotations

from typing import NamedTuple

SNIFF_BYTES = 2048  # how much of a file `sniff` reads


class Kind(NamedTuple):
    """What a file is: its MIME type and the extension its stored name gets."""

    mime: str
    ext: str


OCTET_STREAM = Kind("application/octet-stream", "")
PLAIN_TEXT = Kind("text/plain", "txt")

# (offset, signature, kind): checked in order, the first match wins.
SIGNATURES: tuple[tuple[int, bytes, Kind], ...] = (
    (0, b"\x89PNG\r\n\x1a\n", Kind("image/png", "png")),
    (0, b"\xff\xd8\xff", Kind("image/jpeg", "jpg")),
    (0, b"GIF87a", Kind("image/gif", "gif")),
    (0, b"GIF89a", Kind("image/gif", "gif")),
    (0, b"BM", Kind("image/bmp", "bmp")),
    (0, b"II*\x00", Kind("image/tiff", "tif")),
    (0, b"MM\x00*", Kind("image/tiff", "tif")),
    (0, b"\x00\x00\x01\x00", Kind("image/x-icon", "ico")),
    (0, b"%PDF-", Kind("application/pdf", "pdf")),
    (0, b"PK\x03\x04", Kind("application/zip", "zip")),
    (0, b"\x1f\x8b", Kind("application/gzip", "gz")),
    (0, b"7z\xbc\xaf\x27\x1c", Kind("application/x-7z-compressed", "7z")),
    (0, b"ID3", Kind("audio/mpeg", "mp3")),
    (0, b"\xff\xfb", Kind("audio/mpeg", "mp3")),
    (0, b"OggS", Kind("audio/ogg", "ogg")),
    (0, b"fLaC", Kind("audio/flac", "flac")),
    (0, b"\x1aE\xdf\xa3", Kind("video/webm", "webm")),
)
RIFF_KINDS = {b"WEBP": Kind("image/webp", "webp"), b"WAVE": Kind("audio/wav", "wav"),
              b"AVI ": Kind("video/x-msvideo", "avi")}
FTYP_KINDS = {b"avif": Kind("image/avif", "avif"), b"heic": Kind("image/heic", "heic"),
              b"qt  ": Kind("video/quicktime", "mov")}
# Text files keep these extensions (and their type); any other text is text/plain, stored as .txt.
TEXT_KINDS = {"txt": PLAIN_TEXT, "md": Kind("text/markdown", "md"), "csv": Kind("text/csv", "csv"),
              "json": Kind("application/json", "json")}
# Types a browser may show inline from the API's origin: they cannot run script there.
INLINE_SAFE = frozenset({"image/png", "image/jpeg", "image/gif", "image/webp", "image/bmp", "image/x-icon",
                         "image/avif", "application/pdf"})
BY_EXTENSION = {kind.ext: kind for _, _, kind in SIGNATURES} | {k.ext: k for k in RIFF_KINDS.values()} \
    | {k.ext: k for k in FTYP_KINDS.values()} | {"mp4": Kind("video/mp4", "mp4")} | TEXT_KINDS


def sniff(head: bytes, name_ext: str = "") -> Kind:
    """The kind of a file whose first bytes are ``head``; ``name_ext`` (the uploaded name's extension)
    only chooses among text kinds. HTML, SVG and other markup are text/plain: never a type a browser
    would render with script."""
    for offset, signature, kind in SIGNATURES:
        if head[offset:offset + len(signature)] == signature:
            return kind
    if head[:4] == b"RIFF" and head[8:12] in RIFF_KINDS:
        return RIFF_KINDS[head[8:12]]
    if head[4:8] == b"ftyp":
        return FTYP_KINDS.get(head[8:12], Kind("video/mp4", "mp4"))
    if _is_text(head):
        return TEXT_KINDS.get(name_ext.lower(), PLAIN_TEXT)
    return OCTET_STREAM


def kind_of_name(name: str) -> Kind:
    """The kind a stored name stands for (its extension was chosen by `sniff`)."""
    _, dot, ext = name.rpartition(".")
    return BY_EXTENSION.get(ext.lower(), OCTET_STREAM) if dot else OCTET_STREAM


def matches(mime: str, patterns: tuple[str, ...]) -> bool:
    """Whether ``mime`` is one of ``patterns`` (``image/*``, ``application/pdf``); no patterns: any."""
    if not patterns:
        return True
    major = mime.split("/", 1)[0]
    return any(p == mime or (p.endswith("/*") and p[:-2] == major) or p == "*/*" for p in patterns)


def _is_text(head: bytes) -> bool:
    if b"\x00" in head:
        return False
    for cut in range(4):  # the sample may end inside a multi-byte character
        try:
            head[:len(head) - cut].decode("utf-8")
            return True
        except UnicodeDecodeError:
            continue
    return False
