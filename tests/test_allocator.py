"""tune_allocator: its opt-outs, its argument checks and its effect on glibc's malloc."""

from __future__ import annotations

import platform
import subprocess
import sys

import pytest

from preimage.allocator import GLIBC_VARIABLES, tune_allocator

glibc = pytest.mark.skipif(
    platform.system() != "Linux" or platform.libc_ver()[0] != "glibc", reason="needs glibc"
)

# Counts glibc's separately mapped blocks before and after one 8 MiB malloc, in a fresh process
# whose dynamic mmap threshold still has its start value (128 KiB).
_PROBE = """
import ctypes, sys
from preimage.allocator import tune_allocator
class Info(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in (
        "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks",
        "fordblks", "keepcost")]
libc = ctypes.CDLL("libc.so.6")
libc.mallinfo2.restype = Info
libc.malloc.restype = ctypes.c_void_p
if sys.argv[1] == "tuned":
    assert tune_allocator(environ={})
before = libc.mallinfo2().hblks
block = libc.malloc(8 << 20)
print(libc.mallinfo2().hblks - before)
"""


def test_opt_outs_leave_malloc_alone() -> None:
    assert not tune_allocator(environ={"PREIMAGE_MALLOC": "default"})
    for name in GLIBC_VARIABLES:
        assert not tune_allocator(environ={name: "1000000"})


@pytest.mark.parametrize("sizes", [(0, 1), (1, -5), (2**31, 1)])
def test_thresholds_must_fit_a_c_int(sizes: tuple[int, int]) -> None:
    with pytest.raises(ValueError, match="thresholds"):
        tune_allocator(*sizes, environ={})


@glibc
def test_tuned_malloc_serves_megabyte_blocks_from_the_heap() -> None:
    counts = {}
    for mode in ("default", "tuned"):
        done = subprocess.run(
            [sys.executable, "-c", _PROBE, mode], capture_output=True, text=True, check=True
        )
        counts[mode] = int(done.stdout.strip())
    assert counts == {"default": 1, "tuned": 0}
