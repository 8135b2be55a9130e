"""The host process's memory, as the training loop reads and trims it after every step."""

from __future__ import annotations

from typing import Any


def proc_status_bytes(field: str = "VmRSS") -> float:
    """A memory figure of this process from Linux's ``/proc/self/status`` (``VmRSS``: now,
    ``VmHWM``: peak), in bytes; 0 where there is none."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return float(line.split()[1]) * 1024
    except OSError:
        pass
    return 0.0


_MALLOC_TRIM: Any = None


def release_free_heap() -> bool:
    """Hand the heap's free pages back to the OS (glibc's ``malloc_trim(0)``); False where
    there is no glibc (macOS, musl) and nothing was done. The trainer calls it after every
    step: tensors of a new shape each step (images of many sizes, prompts and responses of
    many lengths) are freed into glibc's heap once its mmap threshold has risen, and would
    stay resident there, so the RSS would creep up step after step."""
    global _MALLOC_TRIM
    if _MALLOC_TRIM is None:
        _MALLOC_TRIM = False
        import platform
        import sys

        if sys.platform.startswith("linux") and platform.libc_ver()[0] == "glibc":
            try:
                import ctypes

                fn = ctypes.CDLL(None).malloc_trim
                fn.argtypes, fn.restype = [ctypes.c_size_t], ctypes.c_int
                _MALLOC_TRIM = fn
            except (OSError, AttributeError):
                pass
    if _MALLOC_TRIM is False:
        return False
    _MALLOC_TRIM(0)
    return True
