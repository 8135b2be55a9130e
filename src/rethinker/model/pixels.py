"""The image pixel limits (min/max pixels of Qwen2-VL-style resizing), resolved once: the
ones given, else the model's own image-processor settings."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

#: The files of a model directory that hold its image-processor settings, in the order read
#: (the first one present is used; ``processor_config.json`` nests them under ``image_processor``).
PROCESSOR_FILES = ("preprocessor_config.json", "processor_config.json")


def _saved_settings(model_dir: str | os.PathLike) -> dict[str, Any]:
    """The image-processor settings saved in ``model_dir`` ({} when none are)."""
    if not os.fspath(model_dir):
        return {}
    for name in PROCESSOR_FILES:
        p = Path(model_dir) / name
        if p.is_file():
            d = json.loads(p.read_text())
            return d.get("image_processor", d)
    return {}


def _lookup(obj: Any, key: str) -> Any:
    return obj.get(key) if isinstance(obj, Mapping) else getattr(obj, key, None)


def resolve_pixel_limits(
    source: Any, min_pixels: int | None = None, max_pixels: int | None = None
) -> tuple[int | None, int | None]:
    """``(min_pixels, max_pixels)``: each one given, else the one ``source`` sets, else None.

    ``source``: a processor (its ``image_processor`` is read), an image processor, a mapping
    of its saved settings, a model directory (``preprocessor_config.json``, else
    ``processor_config.json``) or None. The setting is ``min_pixels`` / ``max_pixels``, else
    ``size.shortest_edge`` / ``size.longest_edge`` (how Qwen2-VL processors store them)."""
    if min_pixels is not None and max_pixels is not None:
        return int(min_pixels), int(max_pixels)
    if source is None:
        settings: Any = {}
    elif isinstance(source, (str, os.PathLike)):
        settings = _saved_settings(source)
    else:
        settings = getattr(source, "image_processor", source)
    size = _lookup(settings, "size")

    def setting(attr: str, size_key: str) -> int | None:
        v = _lookup(settings, attr)
        if v is None and size is not None:
            v = _lookup(size, size_key)
        return None if v is None else int(v)

    lo = min_pixels if min_pixels is not None else setting("min_pixels", "shortest_edge")
    hi = max_pixels if max_pixels is not None else setting("max_pixels", "longest_edge")
    return (None if lo is None else int(lo)), (None if hi is None else int(hi))
