"""Benchmark readers: each turns the files its publisher distributes into records.

``BENCHMARKS[name](path, split=None) -> LoadResult``. Sources, fields and prompt
conventions are written down in ``docs/benchmarks.md``.
"""

from __future__ import annotations

from collections.abc import Callable

from ..io import LoadResult
from .emma import load_emma
from .mathverse import load_mathverse
from .mathvision import load_mathvision
from .mathvista import load_mathvista
from .megabench import load_megabench
from .mmmu import load_mmmu, load_mmmu_pro_standard, load_mmmu_pro_vision

Reader = Callable[..., LoadResult]

BENCHMARKS: dict[str, Reader] = {
    "mathvista": load_mathvista,
    "mathverse": load_mathverse,
    "mathvision": load_mathvision,
    "mmmu": load_mmmu,
    "mmmu_pro_standard": load_mmmu_pro_standard,
    "mmmu_pro_vision": load_mmmu_pro_vision,
    "emma": load_emma,
    "megabench": load_megabench,
}

__all__ = [
    "BENCHMARKS",
    "Reader",
    "load_emma",
    "load_mathverse",
    "load_mathvision",
    "load_mathvista",
    "load_megabench",
    "load_mmmu",
    "load_mmmu_pro_standard",
    "load_mmmu_pro_vision",
]
