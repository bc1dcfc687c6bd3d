r"""Process-wide tuning of glibc's ``malloc`` for CPU training.

With its default, *dynamic* thresholds glibc serves tensors of a few megabytes by ``mmap`` and
gives freed memory at the top of the heap back to the system once more than twice the largest
freed block lies there. A training step allocates and frees dozens of such activations, so every
step maps, faults in (the kernel zeroes each page) and unmaps the same memory again. Fixing the
thresholds keeps that memory in the process: :func:`tune_allocator` serves blocks below
``mmap_threshold`` from the heap and trims the heap only when more than ``trim_threshold`` lies
free at its top. The cost is resident memory that stays at its peak between steps (at most about
``trim_threshold`` more than the data need).

This is state of the whole process, so the library never calls it on its own: the command line
(:mod:`preimage.cli`) does, once, before it runs anything; scripts may call it themselves. It does
nothing where the C library is not glibc, when ``PREIMAGE_MALLOC=default`` is set, or when the
user already chose thresholds through glibc's own ``MALLOC_MMAP_THRESHOLD_`` /
``MALLOC_TRIM_THRESHOLD_`` variables.

References:
    The GNU C library manual, "Malloc Tunable Parameters" (``mallopt``, ``M_MMAP_THRESHOLD``,
    ``M_TRIM_THRESHOLD``).

Example:
    >>> tune_allocator(environ={"PREIMAGE_MALLOC": "default"})
    False
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import platform
from collections.abc import Mapping

__all__ = ["GLIBC_VARIABLES", "tune_allocator"]

GLIBC_VARIABLES = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_")
"""glibc's own environment variables for the two thresholds; when set, they win."""

# mallopt's parameter numbers, from glibc's <malloc.h>.
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_INT_MAX = 2**31 - 1


def tune_allocator(
    mmap_threshold: int = 32 << 20,
    trim_threshold: int = 256 << 20,
    *,
    environ: Mapping[str, str] | None = None,
) -> bool:
    """Fix glibc's ``mmap`` and trim thresholds for this process (see the module notes).

    Args:
        mmap_threshold: blocks of at least this many bytes are mapped on their own. The default,
            32 MiB, is the largest value that glibc accepts on every 64-bit version.
        trim_threshold: free bytes at the top of the heap before it is given back.
        environ: the environment to consult (``os.environ`` when ``None``).

    Returns:
        ``True`` when both thresholds were set, ``False`` when nothing was changed.

    Raises:
        ValueError: a threshold that is not positive or does not fit a C ``int``.
    """
    if not (0 < mmap_threshold <= _INT_MAX and 0 < trim_threshold <= _INT_MAX):
        raise ValueError(
            f"thresholds must lie in 1..{_INT_MAX}, got {mmap_threshold} and {trim_threshold}"
        )
    env = os.environ if environ is None else environ
    if env.get("PREIMAGE_MALLOC", "") == "default" or any(v in env for v in GLIBC_VARIABLES):
        return False
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    name = ctypes.util.find_library("c") or "libc.so.6"
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    ok = mallopt(_M_MMAP_THRESHOLD, int(mmap_threshold)) == 1
    return mallopt(_M_TRIM_THRESHOLD, int(trim_threshold)) == 1 and ok
