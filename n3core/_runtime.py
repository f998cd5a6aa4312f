"""Process-wide tuning applied once when ``n3core`` is imported.

glibc returns every large freed block to the OS and maps it again on the next allocation;
PyTorch's CPU kernels allocate large activation buffers on every call, so the kernel spends
most of its time zeroing fresh pages (measured here: a Lite0 forward of 64 images at 160 px
took 1.25 s with the defaults and 0.45 s with these settings: benchmarks/malloc_tuning.py). Keeping freed memory
in the heap removes that. Set ``N3_NO_MALLOC_TUNING=1`` to leave malloc alone.
"""
from __future__ import annotations

import ctypes
import os
import sys

_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3


def tune_malloc() -> bool:
    if os.environ.get("N3_NO_MALLOC_TUNING") or not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
        ok = libc.mallopt(_M_MMAP_THRESHOLD, 1 << 30) == 1
        ok &= libc.mallopt(_M_TRIM_THRESHOLD, 1 << 31) == 1
        return bool(ok)
    except (OSError, AttributeError):
        return False


MALLOC_TUNED = tune_malloc()
