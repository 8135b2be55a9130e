"""Thumbnails of record images: small PNG or JPEG files stored once under a folder,
named by content.

``ThumbnailStore(folder).add(ref, base_dir)`` returns the thumbnail's file name (relative
to ``folder``), writing it only the first time that image is seen; an unreadable image
gives None (the log and the pages say "no image"), never an exception.
"""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

from ..files import write_atomic
from ..records import ImageRef, load_image

#: Longest side of a thumbnail, in pixels.
THUMB_SIDE = 192


def image_key(ref: ImageRef, base_dir: str | Path | None = None) -> str:
    """A stable name for an image: the hash of its bytes, or of its resolved path."""
    h = hashlib.sha1()
    if ref.bytes is not None:
        h.update(b"b\0" + ref.bytes)
    else:
        path = Path(ref.path or "")
        if base_dir is not None and not path.is_absolute():
            path = Path(base_dir) / path
        h.update(b"p\0" + str(path.resolve()).encode("utf-8", "replace"))
    return h.hexdigest()[:20]


def thumbnail(ref: ImageRef, base_dir: str | Path | None = None, side: int = THUMB_SIDE) -> tuple[bytes, str]:
    """The image scaled down (aspect kept) to at most ``side`` pixels: ``(bytes, ext)``,
    PNG or JPEG (quality 85), whichever is smaller (PNG for drawings, JPEG for photos)."""
    img = load_image(ref, base_dir)
    img.thumbnail((side, side))
    png = io.BytesIO()
    img.save(png, format="PNG", optimize=True)
    jpg = io.BytesIO()
    img.save(jpg, format="JPEG", quality=85)
    if len(jpg.getvalue()) < 0.8 * len(png.getvalue()):
        return jpg.getvalue(), ".jpg"
    return png.getvalue(), ".png"


class ThumbnailStore:
    """Thumbnails under ``folder``, one file per distinct image."""

    def __init__(self, folder: str | Path, side: int = THUMB_SIDE):
        self.folder = Path(folder)
        self.side = side
        self.bytes_written = 0

    def add(self, ref: ImageRef, base_dir: str | Path | None = None) -> str | None:
        try:
            key = image_key(ref, base_dir)
            for ext in (".png", ".jpg"):
                if (self.folder / (key + ext)).exists():
                    return key + ext
            data, ext = thumbnail(ref, base_dir, self.side)
            self.folder.mkdir(parents=True, exist_ok=True)
            path = self.folder / (key + ext)
            write_atomic(path, data)
            self.bytes_written += len(data)
            return path.name
        except Exception:  # unreadable / missing image: the pages say so; logging never fails a run
            return None
