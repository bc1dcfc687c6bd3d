"""Benchmark: coupling sub-networks in channels-last layout against plain ``nn.Conv2d``.

Builds the fi-RevNet of ``bench/mnist_firevnet.py`` (3 stages x 2 additive blocks x 32 filters)
twice with the same weights: once as preimage builds it (the couplings' convolutions are
:class:`~preimage.nn.fast_layers.ChannelsLastConv2d`), once with those layers computing as a plain
``nn.Conv2d``. It then times one training step (forward, cross-entropy, backward, Adamax) of each
on one random batch, the two taking turns for ``--rounds`` rounds, and prints the medians and the
largest difference of the logits (the same function up to the order of float sums).

    python bench/conv_layout.py [--threads 1] [--rounds 15] [--batch-size 128]
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time
import types
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from preimage.models import FiRevNet
from preimage.nn.fast_layers import ChannelsLastConv2d

NETWORK: dict[str, Any] = {
    "stages": 3,
    "blocks_per_stage": 2,
    "hidden": 32,
    "coupling": "additive",
    "logit_norm": True,
    "readout": "dct",
}
"""``bench/mnist_firevnet.py``'s network."""


def _as_plain(model: nn.Module) -> int:
    """Make every channels-last convolution of ``model`` compute as ``nn.Conv2d``; count them."""
    count = 0
    for module in model.modules():
        if isinstance(module, ChannelsLastConv2d):
            module.forward = types.MethodType(nn.Conv2d.forward, module)  # type: ignore[method-assign]
            count += 1
    return count


def _step(model: FiRevNet, x: torch.Tensor, y: torch.Tensor) -> Callable[[], None]:
    optimizer = torch.optim.Adamax(model.parameters(), 1e-3)
    model.train()

    def step() -> None:
        optimizer.zero_grad()
        F.cross_entropy(model.logits(x), y).backward()
        optimizer.step()

    return step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--batch-size", type=int, default=128)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    layout = FiRevNet((1, 28, 28), 10, **NETWORK)
    with torch.no_grad():  # off the zero-initialised last layers, so the check means something
        for param in layout.parameters():
            param.add_(0.05 * torch.randn_like(param))
    plain = copy.deepcopy(layout)
    count = _as_plain(plain)
    x = torch.rand(args.batch_size, 1, 28, 28)
    y = torch.randint(0, 10, (args.batch_size,))
    layout.eval()
    plain.eval()
    with torch.no_grad():
        diff = float((layout.logits(x) - plain.logits(x)).abs().max())
    steps = {"nn.Conv2d": _step(plain, x, y), "channels-last": _step(layout, x, y)}
    for step in steps.values():
        step()  # warm-up
    times: dict[str, list[float]] = {name: [] for name in steps}
    for _ in range(args.rounds):
        for name, step in steps.items():
            start = time.perf_counter()
            step()
            times[name].append(time.perf_counter() - start)
    medians = {name: statistics.median(t) for name, t in times.items()}
    print(
        f"{count} sub-network convolutions, batch {args.batch_size}, {args.threads} thread(s), "
        f"{args.rounds} rounds; max |logit difference| {diff:.1e}"
    )
    for name, med in medians.items():
        print(f"{name:<14} {1e3 * med:8.1f} ms per training step")
    print(f"speed-up {medians['nn.Conv2d'] / medians['channels-last']:.2f}x")


if __name__ == "__main__":
    main()
