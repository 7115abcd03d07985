"""Safe stored names and storage keys: what a client uploads never becomes a path by itself."""
from __future__ import annotations

import re
import secrets
import unicodedata

NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,150}")
KEY_PART_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,150}")
THUMBS = "thumbs"
MAX_STEM = 60
SUFFIX_ALPHABET = "abcdefghijklmnopqrstuvwxyz0123456789"


def stored_name(original: str, ext: str) -> str:
    """``My Photo (1).PNG`` → ``my_photo_1_ab12cd34ef.png``: the original stem kept readable (ASCII
    letters, digits, ``_ - .``), a random suffix that makes it unique per record, and ``ext`` (from the
    content, see sniff.py; empty: the original extension when it is safe)."""
    base = original.replace("\\", "/").rsplit("/", 1)[-1]
    stem, dot, original_ext = base.rpartition(".")
    if not dot:
        stem, original_ext = base, ""
    ascii_stem = unicodedata.normalize("NFKD", stem).encode("ascii", "ignore").decode()
    clean = re.sub(r"[^A-Za-z0-9]+", "_", ascii_stem).strip("_").lower()[:MAX_STEM] or "file"
    suffix = "".join(secrets.choice(SUFFIX_ALPHABET) for _ in range(10))
    if not ext:
        ext = re.sub(r"[^a-z0-9]", "", original_ext.lower())[:10]
    return f"{clean}_{suffix}.{ext}" if ext else f"{clean}_{suffix}"


def is_stored_name(name: str) -> bool:
    """Whether ``name`` has the form of a stored name (no separators, no dot-dot, no leading dot)."""
    return bool(NAME_RE.fullmatch(name)) and ".." not in name


def blob_key(collection: str, record_id: str, name: str) -> str:
    """The storage key of a record's file: ``<collection>/<record id>/<name>``."""
    return join_key(collection, record_id, name)


def thumb_key(collection: str, record_id: str, size: str, name: str) -> str:
    """The storage key of a cached thumbnail: ``<collection>/<record id>/thumbs/<size>/<name>``."""
    return join_key(collection, record_id, THUMBS, size, name)


def record_prefix(collection: str, record_id: str) -> str:
    """The prefix of every key of one record (its files and their thumbnails)."""
    return join_key(collection, record_id) + "/"


def join_key(*parts: str) -> str:
    """Parts joined with ``/``; ValueError for a part that could climb out of its folder."""
    for part in parts:
        if not KEY_PART_RE.fullmatch(part) or ".." in part:
            raise ValueError(f"unsafe storage key part {part[:40]!r}")
    return "/".join(parts)


def check_key(key: str) -> str:
    """``key`` itself when every part of it is safe (ValueError otherwise)."""
    join_key(*key.split("/"))
    return key
