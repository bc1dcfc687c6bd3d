"""Benchmark: the i-ResNet targets that need no long training (not a test).

Prints, each with its target:

1. Russian-roulette log-det: mean over 10^4 draws within 3 standard errors of the exact
   value, and the truncated power series' bias with the theorem-5.8 bound (via the
   ``logdet-estimator`` study at its ``cpu`` budget, written to a temporary folder);
2. memory of the Neumann-series gradient vs back-propagation through a 10-term power series
   (target: <= 0.5x). Method: ``torch.autograd.graph.saved_tensors_hooks`` records every tensor
   autograd saves for the backward pass while the log-det is computed; the bytes of the
   distinct storages are summed. This is the memory that back-propagation keeps alive, the
   quantity the Neumann estimator is designed to save (CPU has no peak-memory counter;
   ``tracemalloc`` does not see PyTorch's allocator);
3. exact operator norms of a briefly trained i-ResNet (c = 0.9) after converging the power
   iterations, with ``lipschitz_certificate`` (target: every layer <= c(1 + 1e-3), every block
   contractive);
4. fixed-point steps per block to invert that model to a relative error <= 1e-5 in float32
   (target: <= 30).

    python bench/iresnet_targets.py [--steps 150] [--dataset digits|mnist]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

import torch
from torch import Tensor

from preimage.analysis.invariance import classification_error
from preimage.analysis.operator_norm import lipschitz_certificate
from preimage.data import load_train_test
from preimage.errors import PreimageError
from preimage.nn.iresblock import conv_branch
from preimage.nn.logdet import neumann_logdet, power_series_logdet
from preimage.studies import logdet_estimator
from preimage.studies.iresnet_singular_values import conv_norms
from preimage.studies.residual_parts import (
    adam_recipe,
    converge_spectral,
    invert_with_iterations,
    trained_classifier,
)


def saved_tensor_bytes(fn) -> int:  # type: ignore[no-untyped-def]
    """Bytes of the distinct storages autograd saves for backward while ``fn()`` runs."""
    storages: dict[int, int] = {}

    def pack(t: Tensor) -> Tensor:
        storage = t.untyped_storage()
        storages[storage.data_ptr()] = storage.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = fn()
    out.sum().backward()
    return sum(storages.values())


def memory_ratio(terms: int, batch: int) -> tuple[int, int]:
    torch.manual_seed(0)
    g = conv_branch(16, 64, coeff=0.9, input_shape=(14, 14))
    x = torch.randn(batch, 16, 14, 14)
    series = saved_tensor_bytes(lambda: power_series_logdet(g, x, n_terms=terms)[1])
    neumann = saved_tensor_bytes(lambda: neumann_logdet(g, x, n_terms=terms)[1])
    return series, neumann


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="digits", help="digits (fast) or mnist")
    parser.add_argument("--steps", type=int, default=150)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    load = os.getloadavg() if hasattr(os, "getloadavg") else (float("nan"),) * 3
    print(f"load average {load[0]:.2f} on {os.cpu_count()} cores, {args.threads} thread(s)")

    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        config = logdet_estimator.Config.for_budget("cpu", progress=False)
        m = logdet_estimator.run(config, tmp)
    print(
        f"[1] roulette over {m['roulette_draws']} draws: mean - exact = {m['roulette_bias']:+.5f}"
        f" nats, SE {m['roulette_standard_error']:.5f}, |z| = {m['roulette_z_score']:.2f} "
        f"(target <= 3: {'met' if m['roulette_z_score'] <= 3 else 'NOT met'}); "
        f"{time.perf_counter() - start:.0f} s"
    )
    print(
        f"    truncated series bias: 1 term {m['truncation_error_1_term']:+.3e} (thm 5.8 bound "
        f"{m['theorem58_bound_1_term']:.3e}), {m['series_terms']} terms "
        f"{m['truncation_error_last']:+.3e} (bound {m['theorem58_bound_last']:.3e}); "
        f"violations {m['theorem58_violations']}"
    )

    series, neumann = memory_ratio(10, 16)
    ratio = neumann / series
    print(
        f"[2] saved-for-backward memory, 10 terms, batch 16 x 16x14x14, hidden 64: series "
        f"{series / 2**20:.1f} MiB, Neumann {neumann / 2**20:.1f} MiB, ratio {ratio:.3f} "
        f"(target <= 0.5: {'met' if ratio <= 0.5 else 'NOT met'})"
    )

    try:
        train, (x_test, y_test) = load_train_test(args.dataset, n_train=None, n_test=1000, seed=0)
    except PreimageError as err:
        print(f"    {args.dataset} unavailable ({err}); using digits")
        train, (x_test, y_test) = load_train_test("digits", n_train=None, n_test=None, seed=0)
    # The studies' recipe for --steps steps.
    steps_per_epoch = -(-train[0].shape[0] // 64)
    recipe = adam_recipe(
        epochs=-(-args.steps // steps_per_epoch),
        max_steps_per_epoch=min(args.steps, steps_per_epoch),
        device="cpu",
    )
    torch.manual_seed(0)
    start = time.perf_counter()
    model = trained_classifier(train, recipe, coeff=0.9, n_blocks=4, hidden=32)
    trained = time.perf_counter() - start
    before = max(v for _, v in conv_norms(model, x_test[:1]))
    converge_spectral(model)
    norms = [v for _, v in conv_norms(model, x_test[:1])]
    certs = lipschitz_certificate(model.body, x_test[:1])
    with torch.no_grad():
        accuracy = 1 - classification_error(model.logits, x_test, y_test)
    ok = max(norms) <= 0.9 * (1 + 1e-3) and all(c.is_contractive for c in certs)
    print(
        f"[3] i-ResNet c=0.9, {args.steps} steps ({trained:.0f} s, test accuracy "
        f"{accuracy:.3f}): max sigma as trained {before:.4f}, after "
        f"convergence {max(norms):.6f} over {len(norms)} convs; block bounds "
        f"{', '.join(f'{c.bound:.4f}' for c in certs)} (target met: {ok})"
    )
    x = x_test[:64]
    with torch.no_grad():
        z, _ = model.body(x)
        norms_x = x.flatten(1).norm(dim=1)
        needed = -1
        for k in range(1, 101):
            err = float(
                (
                    (invert_with_iterations(model.body, z, k) - x).flatten(1).norm(dim=1) / norms_x
                ).max()
            )
            if err <= 1e-5:
                needed = k
                break
    print(
        f"[4] fixed-point steps per block to relative error <= 1e-5 (float32, 64 images): "
        f"{needed} (target <= 30: {'met' if 0 < needed <= 30 else 'NOT met'})"
    )


if __name__ == "__main__":
    main()
