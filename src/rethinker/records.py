"""The one record schema every reader produces and every stage takes.

See ``docs/records.md``: a record is a verifiable query (question, ground-truth answer,
images, optional choices) plus the metadata that selection and reports need. Readers map
their own spellings onto these names; everything downstream takes only ``Record``.
"""

from __future__ import annotations

import base64
import io
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

#: Images larger than this many pixels are refused before decoding (decompression bombs).
MAX_IMAGE_PIXELS = 50_000_000


class RecordError(ValueError):
    """A record (or one of its images) is malformed; the message names the record."""


@dataclass(frozen=True)
class ImageRef:
    """One image of a record: encoded bytes, or a path (relative to ``base_dir``)."""

    bytes: bytes | None = None
    path: str | None = None

    def __post_init__(self) -> None:
        if self.bytes is None and not self.path:
            raise RecordError("an image needs bytes or a path")

    def to_dict(self) -> dict[str, Any]:
        return {"bytes": self.bytes, "path": self.path}

    @classmethod
    def coerce(cls, value: Any) -> ImageRef:
        """Accept an ImageRef, raw bytes, a path string, a ``{bytes, path}`` dict
        (the ``datasets`` Image layout), base64 text (``data:...;base64,`` or bare) or a
        PIL image."""
        if isinstance(value, ImageRef):
            return value
        if isinstance(value, (bytes, bytearray, memoryview)):
            return cls(bytes=bytes(value))
        if isinstance(value, dict):
            data = value.get("bytes")
            if isinstance(data, str):
                data = _b64decode(data)
            return cls(bytes=bytes(data) if data is not None else None, path=value.get("path") or None)
        if isinstance(value, str):
            if value.startswith("data:") and ";base64," in value:
                return cls(bytes=_b64decode(value.split(";base64,", 1)[1]))
            return cls(path=value)
        if hasattr(value, "save") and hasattr(value, "size"):  # PIL.Image
            buf = io.BytesIO()
            value.save(buf, format="PNG")
            return cls(bytes=buf.getvalue())
        raise RecordError(f"cannot read an image from a {type(value).__name__}")


def _b64decode(text: str) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except Exception as exc:  # binascii.Error
        raise RecordError(f"image is not valid base64: {exc}") from None


@dataclass
class Record:
    id: str
    question: str
    answer: str
    images: list[ImageRef] = field(default_factory=list)
    choices: list[str] | None = None
    answer_type: str | None = None
    precision: int | None = None
    category: str | None = None
    source: str | None = None
    pass_rates: dict[str, float] | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    # -- construction -----------------------------------------------------------------
    @classmethod
    def from_dict(cls, row: dict[str, Any]) -> Record:
        """Build a record from a row with canonical names; raises RecordError naming the
        row's id when a field is missing or malformed."""
        rid = row.get("id")
        name = f"record {rid!r}" if rid is not None else "record without id"
        try:
            images_raw = row.get("images")
            if images_raw is None:
                images_raw = []
            elif not isinstance(images_raw, (list, tuple)):
                images_raw = [images_raw]
            meta = row.get("meta") or {}
            if isinstance(meta, str):
                meta = json.loads(meta) if meta.strip() else {}
            pass_rates = row.get("pass_rates")
            if isinstance(pass_rates, list):  # pyarrow map -> list of (key, value) pairs
                pass_rates = dict(pass_rates)
            precision = row.get("precision")
            choices = row.get("choices")
            if isinstance(choices, (str, bytes)):
                raise RecordError("choices must be a list of strings, not one string")
            rec = cls(
                id=str(rid) if rid is not None else "",
                question=row.get("question") or "",
                answer="" if row.get("answer") is None else str(row.get("answer")),
                images=[ImageRef.coerce(v) for v in images_raw if v is not None],
                choices=list(choices) if choices is not None else None,
                answer_type=row.get("answer_type") or None,
                precision=int(precision) if precision is not None and precision == precision else None,
                category=row.get("category") or None,
                source=row.get("source") or None,
                pass_rates={str(k): float(v) for k, v in pass_rates.items()} if pass_rates else None,
                meta=dict(meta),
            )
        except RecordError as exc:
            raise RecordError(f"{name}: {exc}") from None
        except (TypeError, ValueError, json.JSONDecodeError) as exc:
            raise RecordError(f"{name}: {exc}") from None
        rec.validate()
        return rec

    def to_dict(self) -> dict[str, Any]:
        """The on-disk row: images as ``{bytes, path}`` structs, ``meta`` as JSON text."""
        return {
            "id": self.id,
            "question": self.question,
            "answer": self.answer,
            "images": [im.to_dict() for im in self.images],
            "choices": self.choices,
            "answer_type": self.answer_type,
            "precision": self.precision,
            "category": self.category,
            "source": self.source,
            "pass_rates": self.pass_rates,
            "meta": json.dumps(self.meta, sort_keys=True),
        }

    # -- validation --------------------------------------------------------------------
    def validate(self) -> None:
        """Raise RecordError (naming the record) on a missing id, empty question, or
        empty answer. Images are checked when decoded (``load_image``)."""
        if not self.id:
            raise RecordError("record without id")
        if not isinstance(self.question, str) or not self.question.strip():
            raise RecordError(f"record {self.id!r}: empty question")
        if not isinstance(self.answer, str) or not self.answer.strip():
            raise RecordError(f"record {self.id!r}: missing answer")
        if self.choices is not None and not all(isinstance(c, str) for c in self.choices):
            raise RecordError(f"record {self.id!r}: choices must be strings")


def _open_checked(ref: ImageRef, base_dir: str | Path | None, max_pixels: int):
    """Open an image lazily (header only) and check its size; raises ``ValueError`` with
    the reason, or whatever PIL raises for unreadable data."""
    from PIL import Image

    if ref.bytes is not None:
        src: Any = io.BytesIO(ref.bytes)
    else:
        path = Path(ref.path)  # type: ignore[arg-type]
        if base_dir is not None and not path.is_absolute():
            path = Path(base_dir) / path
        if not path.is_file():
            raise ValueError(f"image file not found: {ref.path}")
        src = path
    img = Image.open(src)
    w, h = img.size
    if w * h > max_pixels:
        img.close()
        raise ValueError(f"image of {w}x{h} pixels exceeds the limit of {max_pixels}")
    if w == 0 or h == 0:
        img.close()
        raise ValueError("empty image")
    return img


def image_problem(
    ref: ImageRef, base_dir: str | Path | None = None, *, max_pixels: int = MAX_IMAGE_PIXELS, decode: bool = False
) -> str | None:
    """Why an image cannot be used (missing file, unreadable, too large, empty), or None.
    Without ``decode`` only the header and chunk checksums are read (PIL ``verify``)."""
    try:
        with _open_checked(ref, base_dir, max_pixels) as img:
            img.load() if decode else img.verify()
    except ValueError as exc:
        return str(exc)
    except Exception as exc:  # PIL raises many types (UnidentifiedImageError, OSError, DecompressionBombError ...)
        return f"unreadable image ({type(exc).__name__}: {exc})"
    return None


def load_image(
    ref: ImageRef, base_dir: str | Path | None = None, *, record_id: str = "?", max_pixels: int = MAX_IMAGE_PIXELS
):
    """Decode one image to RGB. Raises RecordError (naming the record) when the bytes or
    file are unreadable, the decoder refuses them, or the image exceeds ``max_pixels``
    (checked from the header, before the pixels are decoded)."""
    try:
        with _open_checked(ref, base_dir, max_pixels) as img:
            return img.convert("RGB")
    except ValueError as exc:
        raise RecordError(f"record {record_id!r}: {exc}") from None
    except Exception as exc:  # PIL raises many types (UnidentifiedImageError, OSError, DecompressionBombError ...)
        raise RecordError(f"record {record_id!r}: unreadable image ({type(exc).__name__}: {exc})") from None
