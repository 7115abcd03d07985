"""Image thumbnails with Pillow: crop to a box, fit inside it, or scale to one side."""
from __future__ import annotations

import io
import warnings
from typing import IO

from PIL import Image, ImageOps

MAX_PIXELS = 50_000_000  # larger images are refused (a decompression bomb is not rendered)
FORMATS = {"image/png": "PNG", "image/jpeg": "JPEG", "image/gif": "GIF", "image/webp": "WEBP", "image/bmp": "BMP"}


def can_thumb(mime: str) -> bool:
    """Whether thumbnails are made for this type (other files have none)."""
    return mime in FORMATS


def make_thumb(source: IO[bytes], mime: str, width: int, height: int, fit: bool) -> bytes:
    """The thumbnail of an image as bytes in the image's own format.

    ``width x height`` crops to exactly that box (centred); ``fit`` keeps the whole image inside the
    box; a side of 0 follows the other one with the image's ratio. ValueError when it is not an image
    Pillow can read, or it is too large.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            image: Image.Image = Image.open(source)
            if image.width * image.height > MAX_PIXELS:
                raise ValueError("the image is too large for a thumbnail")
            image.load()
        except (OSError, Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
            raise ValueError(f"not a readable image: {exc}") from None
    image = ImageOps.exif_transpose(image) or image
    if width == 0 or height == 0:
        ratio = width / image.width if width else height / image.height
        box = (max(1, round(image.width * ratio)), max(1, round(image.height * ratio)))
        image = image.resize(box, Image.Resampling.LANCZOS)
    elif fit:
        image.thumbnail((width, height), Image.Resampling.LANCZOS)
    else:
        image = ImageOps.fit(image, (width, height), Image.Resampling.LANCZOS)
    fmt = FORMATS[mime]
    if fmt == "JPEG" and image.mode not in ("RGB", "L"):
        image = image.convert("RGB")
    out = io.BytesIO()
    image.save(out, fmt)
    return out.getvalue()
