"""Benchmark: training throughput of one i-ResNet block (forward + log-det + backward).

Compares ``preimage.nn.IResBlock`` with FrEIA's ``IResNetLayer`` and normflows' ``Residual``
(the Residual Flows code) on the same configuration: a batch of ``8 x 14 x 14`` inputs, a
branch of three 3x3 convolutions ``8 -> 32 -> 32 -> 8``, one Hutchinson probe, and a power
series of ``--terms`` terms (plus preimage's and normflows' Russian roulette). Prints samples/s
(best of ``--repeats`` timed rounds after a warm-up) and the machine's load average, which
matters on shared machines.

The comparison libraries are never dependencies of preimage. Install them into a throwaway
folder and the script picks them up from there:

    pip install --target /tmp/benchdeps FrEIA normflows --no-deps
    python bench/iresnet_speed.py [--deps /tmp/benchdeps] [--threads 1]

Without them the script says so and measures preimage alone. The script checks whether FrEIA's
log-det is differentiable: FrEIA 0.2 takes its vector-Jacobian products without
``create_graph``, so its log-det carries no gradient to the branch's parameters and its time is
not that of a maximum-likelihood step (it is flagged in the output). Other differences: FrEIA
uses ELU and rescales its weights in a separate ``lipschitz_correction()`` call (not timed, it
is not part of the forward pass); normflows uses LipSwish activations and induced-norm
convolutions with a few power iterations per forward pass; preimage uses ELU and
``SpectralConv2d`` with one power iteration per training forward pass.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable

import torch
from torch import Tensor, nn

from preimage.nn.iresblock import IResBlock, conv_branch
from preimage.nn.logdet import neumann_logdet

Step = Callable[[Tensor], Tensor]


def _throughput(step: Step, x: Tensor, repeats: int, rounds: int) -> float:
    """Samples per second of ``step`` (forward + log-det + backward), best round."""
    step(x)
    best = float("inf")
    for _ in range(rounds):
        start = time.perf_counter()
        for _ in range(repeats):
            step(x)
        best = min(best, (time.perf_counter() - start) / repeats)
    return x.shape[0] / best


def _preimage_step(mode: str, terms: int, hidden: int, channels: int) -> tuple[nn.Module, Step]:
    block = IResBlock(
        conv_branch(channels, hidden, coeff=0.9, kernel_sizes=(3, 3, 3)),
        logdet=mode,  # type: ignore[arg-type]
        n_terms=terms,
    ).train()

    def step(x: Tensor) -> Tensor:
        block.zero_grad(set_to_none=True)
        y, logdet = block(x)
        loss = 0.5 * y.pow(2).flatten(1).sum(1).mean() - logdet.mean()
        loss.backward()
        return loss

    return block, step


def _preimage_neumann_fixed(terms: int, hidden: int, channels: int) -> Step:
    """Neumann-gradient log-det with a fixed number of terms: the match of normflows'
    ``n_power_series`` mode (``IResBlock(logdet="neumann")`` draws the count at random)."""
    g = conv_branch(channels, hidden, coeff=0.9, kernel_sizes=(3, 3, 3)).train()

    def step(x: Tensor) -> Tensor:
        g.zero_grad(set_to_none=True)
        y, logdet = neumann_logdet(g, x, n_terms=terms)
        loss = 0.5 * y.pow(2).flatten(1).sum(1).mean() - logdet.mean()
        loss.backward()
        return loss

    return step


def _freia_step(terms: int, hidden: int, shape: tuple[int, int, int]) -> tuple[Step, bool]:
    """The step, and whether FrEIA's log-det carries a gradient to the parameters."""
    import FrEIA.modules as fm

    layer = fm.IResNetLayer(
        [shape], internal_size=hidden, n_internal_layers=1, jacobian_iterations=terms
    )
    layer.lipschitz_correction()
    _, probe_logdet = layer([torch.randn(2, *shape)], jac=True)
    differentiable = bool(probe_logdet.requires_grad)

    def step(x: Tensor) -> Tensor:
        layer.zero_grad(set_to_none=True)
        (y,), logdet = layer([x], jac=True)
        loss = 0.5 * y.pow(2).flatten(1).sum(1).mean() - logdet.mean()
        loss.backward()
        return loss

    return step, differentiable


def _normflows_step(terms: int | None, hidden: int, channels: int) -> Step:
    import normflows as nf

    net = nf.nets.LipschitzCNN([channels, hidden, hidden, channels], [3, 3, 3], lipschitz_const=0.9)
    flow = nf.flows.Residual(net, reverse=False, n_power_series=terms)

    def step(x: Tensor) -> Tensor:
        flow.zero_grad(set_to_none=True)
        y, logdet = flow(x)
        # normflows returns -log det of the forward map when reverse=False.
        loss = 0.5 * y.pow(2).flatten(1).sum(1).mean() + logdet.mean()
        loss.backward()
        return loss

    return step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--deps", default="/tmp/benchdeps", help="folder with FrEIA/normflows")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--channels", type=int, default=8)
    parser.add_argument("--size", type=int, default=14)
    parser.add_argument("--hidden", type=int, default=32)
    parser.add_argument("--terms", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    if os.path.isdir(args.deps) and args.deps not in sys.path:
        sys.path.insert(0, args.deps)
    shape = (args.channels, args.size, args.size)
    x = torch.randn(args.batch, *shape)
    load = os.getloadavg() if hasattr(os, "getloadavg") else (float("nan"),) * 3
    print(
        f"i-ResNet block throughput: batch {args.batch} x {shape}, branch 3x3 convs "
        f"{args.channels}->{args.hidden}->{args.hidden}->{args.channels}, {args.terms} series "
        f"terms, 1 probe, {args.threads} thread(s); load average {load[0]:.2f} "
        f"(on {os.cpu_count()} cores)"
    )
    rows: list[tuple[str, float]] = []
    for mode, label in (
        ("series", f"preimage IResBlock series ({args.terms} terms, backprop)"),
        ("neumann", "preimage IResBlock neumann (roulette, Neumann gradient)"),
        ("roulette", "preimage IResBlock roulette (backprop)"),
    ):
        _, step = _preimage_step(mode, args.terms, args.hidden, args.channels)
        rows.append((label, _throughput(step, x, args.repeats, args.rounds)))
    rows.append(
        (
            f"preimage neumann_logdet ({args.terms} terms, Neumann gradient)",
            _throughput(
                _preimage_neumann_fixed(args.terms, args.hidden, args.channels),
                x,
                args.repeats,
                args.rounds,
            ),
        )
    )
    try:
        step, differentiable = _freia_step(args.terms, args.hidden, shape)
        note = "" if differentiable else " [log-det has NO parameter gradient]"
        rows.append(
            (
                f"FrEIA IResNetLayer ({args.terms} terms){note}",
                _throughput(step, x, args.repeats, args.rounds),
            )
        )
    except ImportError as err:
        print(f"FrEIA not available ({err}); install it with pip --target {args.deps}")
    try:
        step = _normflows_step(args.terms, args.hidden, args.channels)
        rows.append(
            (
                f"normflows Residual ({args.terms} terms, Neumann grad)",
                _throughput(step, x, args.repeats, args.rounds),
            )
        )
        step = _normflows_step(None, args.hidden, args.channels)
        rows.append(
            (
                "normflows Residual (roulette, Neumann grad)",
                _throughput(step, x, args.repeats, args.rounds),
            )
        )
    except ImportError as err:
        print(f"normflows not available ({err}); install it with pip --target {args.deps}")
    width = max(len(label) for label, _ in rows)
    for label, rate in rows:
        print(f"  {label:<{width}}  {rate:9.1f} samples/s")
    rates = dict(rows)
    pairs = (
        (f"preimage neumann_logdet ({args.terms} terms, Neumann gradient)",
         f"normflows Residual ({args.terms} terms, Neumann grad)"),
        ("preimage IResBlock neumann (roulette, Neumann gradient)",
         "normflows Residual (roulette, Neumann grad)"),
    )  # fmt: skip
    for ours, theirs in pairs:
        if ours in rates and theirs in rates:
            print(f"  ratio {ours} / {theirs}: {rates[ours] / rates[theirs]:.2f}")


if __name__ == "__main__":
    main()
