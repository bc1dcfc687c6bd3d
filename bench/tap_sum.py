"""Benchmark: ``TapSumConv2d`` against ``ChannelsLastConv2d`` by number of output channels.

A coupling sub-network's last convolution maps many hidden channels to few output channels. For
each (batch, in, out, kernel) shape on 14 x 14 images (the MNIST couplings' resolution) this
times the forward pass and the forward + backward pass (input and weight gradients) of one layer,
once through the tap-sum path and once through oneDNN's channels-last kernel, the two taking
turns round by round, and prints medians in microseconds. This is where ``TapSumConv2d``'s limit
of 4 output channels comes from.

    python bench/tap_sum.py [--threads 1] [--rounds 15]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch

from preimage.nn import fast_layers
from preimage.nn.fast_layers import ChannelsLastConv2d, TapSumConv2d

SHAPES = [
    (64, 64, 2, 3),
    (64, 64, 4, 3),
    (64, 64, 8, 3),
    (64, 64, 16, 3),
    (64, 128, 8, 3),
    (16, 64, 4, 3),
    (64, 64, 4, 5),
]
"""(batch, in, out, kernel): both sides of the limit, wider input, small batch, 5 x 5 kernel."""


def _calls(batch: int, n_in: int, n_out: int, kernel: int) -> dict[str, Callable[[], object]]:
    torch.manual_seed(0)
    tap = TapSumConv2d(n_in, n_out, kernel, padding=kernel // 2)
    cl = ChannelsLastConv2d(n_in, n_out, kernel, padding=kernel // 2)
    cl.load_state_dict(tap.state_dict())
    x = torch.randn(batch, n_in, 14, 14, requires_grad=True)
    grad = torch.randn(batch, n_out, 14, 14)

    def forward(layer: torch.nn.Module) -> Callable[[], object]:
        def call() -> object:
            with torch.no_grad():
                return layer(x)

        return call

    def both(layer: torch.nn.Module) -> Callable[[], object]:
        def call() -> object:
            return torch.autograd.grad(layer(x), [x, layer.weight, layer.bias], grad)

        return call

    with torch.no_grad():
        diff = float((tap(x) - cl(x)).abs().max())
    if diff > 1e-3:
        raise AssertionError(f"tap sum and channels-last differ by {diff:.1e}")
    return {
        "fwd channels-last": forward(cl),
        "fwd tap sum": forward(tap),
        "fwd+bwd channels-last": both(cl),
        "fwd+bwd tap sum": both(tap),
    }


def _row(shape: tuple[int, int, int, int], rounds: int) -> dict[str, float]:
    calls = _calls(*shape)
    for call in calls.values():
        call()  # warm-up
    times: dict[str, list[float]] = {name: [] for name in calls}
    for _ in range(rounds):
        for name, call in calls.items():
            start = time.perf_counter()
            for _ in range(5):
                call()
            times[name].append((time.perf_counter() - start) / 5)
    return {name: 1e6 * statistics.median(t) for name, t in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=15)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    # Lift the limit so that wide outputs are timed on the tap-sum path too: the limit is what
    # this script measures.
    fast_layers._TAP_SUM_MAX_OUT = max(shape[2] for shape in SHAPES)
    print(f"{args.threads} thread(s), {args.rounds} rounds, 14 x 14 images; microseconds")
    print(
        f"{'batch':>5} {'in':>4} {'out':>4} {'k':>2} | {'fwd CL':>8} {'fwd tap':>8} {'x':>5} "
        f"| {'both CL':>8} {'both tap':>8} {'x':>5}"
    )
    for shape in SHAPES:
        row = _row(shape, args.rounds)
        fwd = row["fwd channels-last"] / row["fwd tap sum"]
        both = row["fwd+bwd channels-last"] / row["fwd+bwd tap sum"]
        batch, n_in, n_out, kernel = shape
        print(
            f"{batch:>5} {n_in:>4} {n_out:>4} {kernel:>2} | {row['fwd channels-last']:8.0f} "
            f"{row['fwd tap sum']:8.0f} {fwd:5.2f} | {row['fwd+bwd channels-last']:8.0f} "
            f"{row['fwd+bwd tap sum']:8.0f} {both:5.2f}"
        )


if __name__ == "__main__":
    main()
