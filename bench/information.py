"""Benchmark: speed and accuracy of the information estimators (issue 14; not a test).

1. KSG (Kraskov estimator 1) at n = 10 000, d = 10 (x and y 5-dimensional each, correlated
   Gaussians with a known mutual information): the cKDTree implementation against a
   brute-force O(n^2) reference computed in blocks with NumPy (same definition: max-norm,
   k-th neighbour in the joint space, strict counts in the marginals). Prints both times, both
   estimates (which must agree to rounding) and the closed form.
2. The information-plane callback's overhead per epoch: the MLP of the info-plane study
   (784-256-128-64-32-16-2) trained on random MNIST-shaped inputs, with and without
   ``InformationPlane`` on 2 000 probe inputs.

    OMP_NUM_THREADS=1 python bench/information.py [--n 10000] [--epochs 3]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from scipy.special import digamma

from preimage.information import InformationPlane, gaussian_mutual_information
from preimage.information.knn import ksg_mutual_information
from preimage.models import MLP
from preimage.train import TrainConfig, Trainer


def brute_force_ksg(x: np.ndarray, y: np.ndarray, k: int = 3, block: int = 500) -> float:
    """KSG estimator 1 with all pairwise max-norm distances, ``block`` rows at a time."""
    n = x.shape[0]
    n_x = np.empty(n)
    n_y = np.empty(n)
    for start in range(0, n, block):
        rows = slice(start, min(start + block, n))
        dx = np.abs(x[rows, None, :] - x[None, :, :]).max(axis=2)
        dy = np.abs(y[rows, None, :] - y[None, :, :]).max(axis=2)
        dz = np.maximum(dx, dy)
        eps = np.partition(dz, k, axis=1)[:, k]  # index 0 is the point itself (distance 0)
        n_x[rows] = (dx < eps[:, None]).sum(axis=1) - 1
        n_y[rows] = (dy < eps[:, None]).sum(axis=1) - 1
    return float(digamma(k) + digamma(n) - np.mean(digamma(n_x + 1) + digamma(n_y + 1)))


def bench_ksg(n: int) -> None:
    rng = np.random.default_rng(0)
    rho = 0.6
    x = rng.standard_normal((n, 5))
    y = rho * x + np.sqrt(1 - rho**2) * rng.standard_normal((n, 5))
    cov = np.block([[np.eye(5), rho * np.eye(5)], [rho * np.eye(5), np.eye(5)]])
    exact = gaussian_mutual_information(cov, dim_x=5)
    t0 = time.perf_counter()
    fast = ksg_mutual_information(x, y, k=3)
    t_fast = time.perf_counter() - t0
    t0 = time.perf_counter()
    slow = brute_force_ksg(x, y, k=3)
    t_slow = time.perf_counter() - t0
    print(
        f"KSG n={n} d=10: cKDTree {t_fast:.2f} s -> {fast:.6f} nats; "
        f"brute force {t_slow:.2f} s -> {slow:.6f} nats; closed form {exact:.6f} nats"
    )


def bench_plane(epochs: int) -> None:
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(6000, 1, 28, 28, generator=gen)
    y = torch.randint(0, 2, (6000,), generator=gen)
    cfg = TrainConfig(
        epochs=epochs,
        batch_size=100,
        lr=1e-3,
        optimizer="adam",
        max_shift=0,
        dequantize=False,
        device="cpu",
    )
    for with_plane in (False, True):
        torch.manual_seed(0)
        model = MLP((1, 28, 28), 2, widths=(256, 128, 64, 32, 16))
        callbacks = [InformationPlane(x[:2000], y[:2000])] if with_plane else []
        trainer = Trainer(model, (x, y), None, cfg, callbacks=callbacks, progress=False)
        t0 = time.perf_counter()
        trainer.fit()
        per_epoch = (time.perf_counter() - t0) / epochs
        extra = ""
        if with_plane:
            extra = (
                f"; one measurement (6 layers, 2000 probes) {np.mean(callbacks[0].seconds):.3f} s"
            )
        print(f"MLP epoch on 6000 inputs, InformationPlane={with_plane}: {per_epoch:.3f} s{extra}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=10_000)
    parser.add_argument("--epochs", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(1)
    bench_ksg(args.n)
    bench_plane(args.epochs)


if __name__ == "__main__":
    main()
