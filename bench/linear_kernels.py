"""Benchmark: ``F.linear`` (the BLAS) against oneDNN's linear operator, as ``OneDNNLinear`` uses it.

For each product shape (batch, in, out) it times the forward product ``x W^T + b`` and the
weight gradient ``g^T x``, both through ``F.linear`` / ``torch.mm`` and through
``mkldnn::_linear_pointwise``. The four calls take turns round by round; the script prints
medians in microseconds and GFLOP/s. This is where ``OneDNNLinear``'s threshold of 1.5 M
multiply-adds comes from.

    python bench/linear_kernels.py [--threads 1] [--rounds 9]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F

from preimage.nn.fast_layers import onednn_linear_available

SHAPES = [
    (16, 392, 64),
    (64, 64, 64),
    (256, 64, 64),
    (64, 392, 64),
    (64, 392, 256),
    (64, 256, 256),
    (64, 256, 784),
    (16, 1024, 1024),
]
"""(batch, in, out): around the threshold, and the flat coupling sub-networks' own shapes."""


def _row(batch: int, n_in: int, n_out: int, rounds: int) -> list[float]:
    """Median microseconds of the four calls for one shape, the four taking turns each round."""
    x, w, b = torch.randn(batch, n_in), torch.randn(n_out, n_in), torch.randn(n_out)
    g = torch.randn(batch, n_out)
    onednn = torch.ops.mkldnn._linear_pointwise
    calls: list[Callable[[], object]] = [
        lambda: F.linear(x, w, b),
        lambda: onednn(x, w, b, "none", [], ""),
        lambda: g.t() @ x,
        lambda: onednn(g.t(), x.t(), None, "none", [], ""),
    ]
    repeats = max(5, int(2e8 / (batch * n_in * n_out)))
    times: list[list[float]] = [[] for _ in calls]
    for fn in calls:
        fn()  # warm-up
    for _ in range(rounds):
        for fn, record in zip(calls, times, strict=True):
            start = time.perf_counter()
            for _ in range(repeats):
                fn()
            record.append((time.perf_counter() - start) / repeats)
    return [1e6 * statistics.median(record) for record in times]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=9)
    args = parser.parse_args()
    if not onednn_linear_available():
        raise SystemExit("this PyTorch build has no oneDNN linear operator")
    torch.set_num_threads(args.threads)
    print(f"{args.threads} thread(s), torch {torch.__version__}; microseconds (GFLOP/s)")
    print(f"{'batch, in, out':<18} {'M MACs':>7} {'F.linear':>16} {'oneDNN':>16} "
          f"{'grad W, BLAS':>16} {'grad W, oneDNN':>16}")  # fmt: skip
    for batch, n_in, n_out in SHAPES:
        macs = batch * n_in * n_out
        timed = _row(batch, n_in, n_out, args.rounds)
        cells = " ".join(f"{us:>8.1f} ({2e-3 * macs / us:>5.0f})" for us in timed)
        print(f"{f'{batch}, {n_in}, {n_out}':<18} {macs / 1e6:>7.2f} {cells}")


if __name__ == "__main__":
    main()
