"""Benchmark: ReLU pre-image queries per second and the cost of the stability analysis.

Part 1 classifies the pre-images of random ReLU layers (Gaussian weights scaled by
1/sqrt(inputs), biases N(0, 0.1^2)) at inputs ``x`` (MNIST test images when ``--data`` holds
them, else uniform noise), with ``x`` as ``x_ref``: queries per second, the share of queries
with k = 0 (singletons, no LP) and the share decided without any LP, for 784 -> 256 (the
issue's case), 784 -> 2048 and a second layer 256 -> 256 under the prior h >= 0.

Part 2 times the stability analysis of ThinCIFAR/WideCIFAR (table 3.1) at one 3x32x32 input,
up to the last convolution's ReLU (``relu6``), in float64: ``stability_profile`` (forward-mode
tangents + ``svdvals``), the same with the 10 largest and smallest singular values by Lanczos,
against the baseline of a dense reverse-mode Jacobian (``torch.func.jacrev``, chunks of 256
outputs) + ``svdvals``.

    PYTHONPATH=. python bench/relu_preimage.py [--queries 50] [--threads 1] [--data DIR]
"""

from __future__ import annotations

import argparse
import math
import os
import time

import torch

from preimage.analysis.relu_preimage import classify_preimage
from preimage.analysis.stability import stability_profile
from preimage.models.strided_cnn import strided_cnn


def _inputs(n: int, dim: int, data: str | None, gen: torch.Generator) -> torch.Tensor:
    if data and dim == 784:
        from preimage.data import load_dataset

        return load_dataset("mnist", "test", data_dir=data).images[:n].reshape(n, -1).double()
    return torch.rand(n, dim, generator=gen, dtype=torch.float64)


def _preimage_rate(
    n_in: int, n_out: int, queries: int, data: str | None, prior: bool
) -> tuple[float, float, float]:
    gen = torch.Generator().manual_seed(0)
    weight = torch.randn(n_out, n_in, generator=gen, dtype=torch.float64) / n_in**0.5
    bias = 0.1 * torch.randn(n_out, generator=gen, dtype=torch.float64)
    x = _inputs(queries, n_in, None if prior else data, gen)
    y = torch.relu(x @ weight.T + bias)
    start = time.perf_counter()
    results = [
        classify_preimage(weight, bias, yi, x_ref=xi, lower=0.0 if prior else None, box=False)
        for xi, yi in zip(x, y, strict=True)
    ]
    elapsed = time.perf_counter() - start
    k0 = sum(r.null_dim == 0 for r in results) / queries
    no_lp = sum(r.n_lps == 0 for r in results) / queries
    return queries / elapsed, k0, no_lp


def _stability_times(variant: str, k: int) -> tuple[float, float, float, float]:
    torch.manual_seed(0)
    net = strided_cnn(variant, in_channels=3).double().eval()  # type: ignore[arg-type]
    x = torch.rand(1, 3, 32, 32, dtype=torch.float64)
    start = time.perf_counter()
    [dense] = stability_profile(net, x, layers=["relu6"])
    ours = time.perf_counter() - start
    lanczos = math.nan
    if k > 0:  # --k 0 skips the matrix-free path (minutes at WideCIFAR's size)
        start = time.perf_counter()
        stability_profile(net, x, layers=["relu6"], k=k)
        lanczos = time.perf_counter() - start
    head = net[:12]
    start = time.perf_counter()
    # Chunked reverse mode: torch.autograd.functional.jacobian(vectorize=True) would hold all
    # outputs' backward passes at once (several GB for WideCIFAR).
    jac = torch.func.jacrev(lambda v: head(v).reshape(-1), chunk_size=256)(x)
    baseline_values = torch.linalg.svdvals(jac.reshape(-1, x.numel()))
    baseline = time.perf_counter() - start
    error = float((baseline_values - dense.singular_values).abs().max())
    return ours, lanczos, baseline, error


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--queries", type=int, default=50)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--data", default=os.environ.get("PREIMAGE_DATA"))
    parser.add_argument("--k", type=int, default=10, help="Lanczos k; 0 skips that path")
    parser.add_argument("--nets", nargs="+", choices=("thin", "wide"), default=["thin", "wide"])
    parser.add_argument("--skip-preimage", action="store_true", help="only the stability part")
    parser.add_argument("--skip-stability", action="store_true", help="only the pre-image part")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"threads {args.threads}, load average {os.getloadavg()[0]:.1f}")
    print("layer                     queries/s   share k=0   share without LP")
    layers = () if args.skip_preimage else ((784, 256, False), (784, 2048, False), (256, 256, True))
    for n_in, n_out, prior in layers:
        rate, k0, no_lp = _preimage_rate(n_in, n_out, args.queries, args.data, prior)
        name = f"{n_in} -> {n_out}" + (" (h >= 0)" if prior else "")
        print(f"{name:24s} {rate:11.2f} {k0:11.2f} {no_lp:18.2f}", flush=True)
    if args.skip_stability:
        return
    print(f"stability up to relu6, 3x32x32 input, float64 (Lanczos k={args.k})")
    print("net    profile (s)   Lanczos (s)   jacobian+svdvals (s)   max |sigma diff|")
    for variant in args.nets:
        ours, lanczos, baseline, error = _stability_times(variant, args.k)
        print(
            f"{variant:6s} {ours:12.2f} {lanczos:13.2f} {baseline:22.2f} {error:18.2e}", flush=True
        )


if __name__ == "__main__":
    main()
