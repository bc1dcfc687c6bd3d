"""Benchmark: coupling stacks in preimage, FrEIA, normflows and zuko, on the same function.

Each configuration builds the same network in every library: ``--couplings`` one-sided coupling
layers that alternate which half they change (FrEIA's two-sided ``GLOWCouplingBlock`` /
``NICECouplingBlock`` is two of them), the affine ones with preimage's log-scale clamp
:math:`c \\tanh(r / c)`, the same sub-network in each (flat: Linear-ReLU-Linear-ReLU-Linear with
``--hidden`` units; conv: conv3x3-ReLU-conv1x1-ReLU-conv3x3 with ``--hidden`` filters), and the
weights copied from preimage's network; the script checks that outputs and log-dets agree before
timing. The configurations: ``flat`` (784 features) and ``conv`` (MNIST squeezed once, 4 x 14 x
14), each affine and additive. zuko has no convolutional coupling, so it appears in the flat ones.

Two timed operations: ``train`` (forward + log-det + backward of a maximum-likelihood loss, in
training mode) and ``inverse`` (evaluation mode, ``torch.no_grad``). Libraries take turns, one
timed call each per round, for ``--rounds`` rounds, so a change in machine load lands on all of
them; the table reports median milliseconds per call, the ratio peer / preimage (above 1:
preimage is faster) and the page faults per call. For the flat stacks a row ``products`` gives
the time of their matrix products alone as ``torch.mm`` (the BLAS behind ``F.linear``) computes
them, back to back on operands in cache: a lower bound for every library whose linear layers
call ``F.linear`` (the peers' plain ``nn.Sequential`` here). preimage's sub-networks run the same
products through oneDNN instead (``preimage.nn.fast_layers.OneDNNLinear``).

Page faults: glibc's ``malloc`` hands large blocks back to the system and takes fresh pages
(each one a fault, several microseconds on a VM) when they are needed again. How often that
happens depends on the whole process's allocation pattern, so it can shift time from one
library to another between runs. For timings without it, run the script with
``MALLOC_MMAP_THRESHOLD_=67108864 MALLOC_TRIM_THRESHOLD_=1073741824 MALLOC_TOP_PAD_=67108864``
(glibc keeps its pages; the faults column drops to about 0), and report both.

The peers are never dependencies of preimage. Install them into a separate folder:

    pip install --target .peers FrEIA normflows zuko --no-deps
    python bench/flow_speed.py --peers .peers [--rounds 20] [--batch-size 64] [--threads 1]

A peer that cannot be imported is skipped, and the script says so.
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from preimage.nn import AdditiveCoupling, AffineCoupling, InvertibleSequential

CLAMP = 2.0


@dataclass(frozen=True)
class Config:
    name: str
    shape: tuple[int, ...]
    affine: bool

    @property
    def conv(self) -> bool:
        return len(self.shape) == 3


CONFIGS = [
    Config("flat-affine", (784,), True),
    Config("flat-additive", (784,), False),
    Config("conv-affine", (4, 14, 14), True),
    Config("conv-additive", (4, 14, 14), False),
]


class Net:
    """One library's network: ``forward(x) -> (y, logdet)``, ``inverse(y) -> x``, the module."""

    def __init__(
        self,
        module: nn.Module,
        forward: Callable[[Tensor], tuple[Tensor, Tensor]],
        inverse: Callable[[Tensor], Tensor],
    ) -> None:
        self.module, self.forward, self.inverse = module, forward, inverse


def build_preimage(cfg: Config, couplings: int, hidden: int) -> InvertibleSequential:
    kind = AffineCoupling if cfg.affine else AdditiveCoupling
    subnet = "conv" if cfg.conv else "mlp"
    # swap=True first: FrEIA's two-sided blocks change the first half first.
    layers = [
        kind(cfg.shape[0], subnet=subnet, hidden=hidden, swap=i % 2 == 0) for i in range(couplings)
    ]
    torch.manual_seed(1)
    net = InvertibleSequential(layers)
    with torch.no_grad():  # off the zero initialisation, so the check below means something
        for p in net.parameters():
            p.copy_(0.05 * torch.randn_like(p))
    return net


def _plain_subnet(template: nn.Sequential, rows: Tensor | None = None) -> nn.Sequential:
    """A plain ``nn.Sequential`` copy of a preimage sub-network (last layer's rows permuted)."""
    layers = []
    for layer in template:
        if isinstance(layer, nn.Linear):
            new: nn.Module = nn.Linear(layer.in_features, layer.out_features)
        elif isinstance(layer, nn.Conv2d):
            new = nn.Conv2d(
                layer.in_channels, layer.out_channels, layer.kernel_size, padding=layer.padding
            )
        else:
            new = nn.ReLU()
        if isinstance(new, nn.Linear | nn.Conv2d):
            with torch.no_grad():
                new.weight.copy_(layer.weight)
                new.bias.copy_(layer.bias)
        layers.append(new)
    if rows is not None:
        with torch.no_grad():
            layers[-1].weight.copy_(template[-1].weight[rows])
            layers[-1].bias.copy_(template[-1].bias[rows])
    return nn.Sequential(*layers)


def build_freia(cfg: Config, ref: InvertibleSequential) -> Net:
    import FrEIA.framework as ff
    import FrEIA.modules as fm

    subnets = iter([_plain_subnet(layer.subnet) for layer in ref])

    def constructor(c_in: int, c_out: int) -> nn.Module:
        return next(subnets)

    inn = ff.SequenceINN(*cfg.shape)
    for _ in range(len(ref) // 2):
        if cfg.affine:
            # FrEIA builds subnet1 (second half) before subnet2 (first half); ours alternate
            # first-half, second-half: reorder so that the weights land where they belong.
            first, second = next(subnets), next(subnets)
            pair = iter([second, first])
            inn.append(
                fm.GLOWCouplingBlock,
                subnet_constructor=lambda i, o, p=pair: next(p),
                clamp=CLAMP,
                clamp_activation=lambda u: torch.tanh(u / CLAMP),
            )
        else:
            inn.append(fm.NICECouplingBlock, subnet_constructor=constructor)

    def forward(x: Tensor) -> tuple[Tensor, Tensor]:
        y, logdet = inn(x)
        # NICE blocks report their zero log-det as a Python float.
        return y, logdet if isinstance(logdet, Tensor) else y.new_full((len(y),), logdet)

    return Net(inn, forward, lambda y: inn(y, rev=True, jac=False)[0])


class _ClampOddRows(nn.Module):
    """normflows reads shift from even and raw log-scale from odd outputs: clamp the odd ones."""

    def forward(self, a: Tensor) -> Tensor:
        shift, raw = a[:, 0::2], a[:, 1::2]
        return torch.stack((shift, CLAMP * torch.tanh(raw / CLAMP)), dim=2).flatten(1, 2)


def build_normflows(cfg: Config, ref: InvertibleSequential) -> Net:
    import normflows as nf

    flows = []
    for layer in ref:
        if cfg.affine:
            n = layer.subnet[-1].out_channels if cfg.conv else layer.subnet[-1].out_features
            half = n // 2
            # preimage's rows are [raw_0..raw_h, shift_0..shift_h]; normflows interleaves.
            rows = torch.stack((torch.arange(half, n), torch.arange(half)), dim=1).flatten()
            pm: nn.Module = nn.Sequential(_plain_subnet(layer.subnet, rows), _ClampOddRows())
        else:
            pm = _plain_subnet(layer.subnet)
        mode = "channel_inv" if layer.swap else "channel"
        flows.append(nf.flows.AffineCouplingBlock(pm, scale=cfg.affine, split_mode=mode))
    model = nf.NormalizingFlow(nf.distributions.DiagGaussian(cfg.shape), flows)
    return Net(model, model.forward_and_log_det, model.inverse)


def build_zuko(cfg: Config, ref: InvertibleSequential) -> Net:
    import zuko

    if cfg.conv:
        raise ImportError("zuko has no convolutional coupling")

    class TanhAffine(zuko.transforms.MonotonicAffineTransform):
        """zuko's affine map with preimage's clamp instead of zuko's soft clip."""

        def __init__(self, raw: Tensor, shift: Tensor) -> None:
            zuko.transforms.Transform.__init__(self)
            self.shift = shift
            self.log_scale = CLAMP * torch.tanh(raw / CLAMP)
            self.scale = self.log_scale.exp()

    class Shift(zuko.transforms.MonotonicAffineTransform):
        """The additive coupling's map, ``y = x + shift``."""

        def __init__(self, shift: Tensor) -> None:
            zuko.transforms.Transform.__init__(self)
            self.shift = shift
            self.log_scale = torch.zeros_like(shift)
            self.scale = torch.ones_like(shift)

    d = cfg.shape[0]
    transforms = []
    for layer in ref:
        mask = torch.arange(d) >= d // 2 if layer.swap else torch.arange(d) < d // 2
        t = zuko.flows.GeneralCouplingTransform(
            d,
            mask=mask,
            univariate=TanhAffine if cfg.affine else Shift,
            shapes=[()] * (2 if cfg.affine else 1),
        )
        half = layer.subnet[-1].out_features // 2
        # zuko reads (raw, shift) pairs interleaved per feature, like normflows.
        rows = torch.stack((torch.arange(half), torch.arange(half, 2 * half)), dim=1).flatten()
        t.hyper = _plain_subnet(layer.subnet, rows if cfg.affine else None)
        transforms.append(t)
    flow = zuko.flows.Flow(transforms, zuko.distributions.DiagNormal(torch.zeros(d), torch.ones(d)))

    def forward(x: Tensor) -> tuple[Tensor, Tensor]:
        return flow.transform().call_and_ladj(x)

    return Net(flow, forward, lambda y: flow.transform().inv(y))


BUILDERS = {"FrEIA": build_freia, "normflows": build_normflows, "zuko": build_zuko}


def _train_step(net: Net, x: Tensor) -> Callable[[], None]:
    params = list(net.module.parameters())

    def step() -> None:
        for p in params:
            p.grad = None
        y, logdet = net.forward(x)
        (0.5 * y.square().sum() - logdet.sum()).backward()

    return step


def _inverse_step(net: Net, y: Tensor) -> Callable[[], None]:
    def step() -> None:
        with torch.no_grad():
            net.inverse(y)

    return step


def _check(cfg: Config, nets: dict[str, Net], x: Tensor) -> dict[str, float]:
    """Max |difference| of outputs, log-dets and inverses against preimage's."""
    with torch.no_grad():
        y_ref, ld_ref = nets["preimage"].forward(x)
        x_ref = nets["preimage"].inverse(y_ref)
        errors = {}
        for name, net in nets.items():
            y, ld = net.forward(x)
            x_rec = net.inverse(y_ref)
            errors[name] = max(
                float((y - y_ref).abs().max()),
                float((ld - ld_ref).abs().max()),
                float((x_rec - x_ref).abs().max()),
            )
    return errors


def run_config(
    cfg: Config, args: argparse.Namespace, peers: dict[str, Callable]
) -> list[tuple[str, str, float, float, float]]:
    ref = build_preimage(cfg, args.couplings, args.hidden_conv if cfg.conv else args.hidden)
    nets: dict[str, Net] = {"preimage": Net(ref, ref, ref.inverse)}
    for name, build in peers.items():
        try:
            nets[name] = build(cfg, ref)
        except ImportError as e:
            print(f"  {cfg.name}: {name} skipped ({e})")
    torch.manual_seed(2)
    x = torch.randn(args.batch_size, *cfg.shape)
    for name, err in _check(cfg, nets, x).items():
        if err > 1e-4:
            raise SystemExit(f"{cfg.name}: {name} computes another function (max diff {err:.2e})")
    with torch.no_grad():
        y = ref(x)[0]
    rows = []
    for op in ("train", "inverse"):
        steps = {}
        for name, net in nets.items():
            net.module.train(op == "train")
            steps[name] = _train_step(net, x) if op == "train" else _inverse_step(net, y)
            steps[name]()  # warm-up
        times: dict[str, list[float]] = {name: [] for name in nets}
        faults = dict.fromkeys(nets, 0)
        for _ in range(args.rounds):
            for name, step in steps.items():
                before = _minor_faults()
                start = time.perf_counter()
                for _ in range(args.repeats):
                    step()
                times[name].append((time.perf_counter() - start) / args.repeats)
                faults[name] += _minor_faults() - before
        base = statistics.median(times["preimage"])
        calls = args.rounds * args.repeats
        for name in nets:
            med = statistics.median(times[name])
            rows.append((op, name, 1e3 * med, med / base, faults[name] / calls))
        if not cfg.conv:
            floor = _gemm_floor(ref, x, args.rounds)[op]
            rows.append((op, "products", 1e3 * floor, floor / base, float("nan")))
    return rows


def _gemm_floor(ref: InvertibleSequential, x: Tensor, rounds: int) -> dict[str, float]:
    """Seconds that the matrix products of a flat stack take alone in ``torch.mm``.

    Every library computes the same products: per linear layer ``x W^T`` forward, and in the
    backward pass ``g W`` (the input's gradient; none for the first layer of the first coupling,
    whose input needs no gradient) and ``g^T x`` (the weight's). Timed back to back with the
    BLAS that ``F.linear`` calls, on fixed operands that stay in cache: a lower bound on the
    call of every library built on ``F.linear``, per ``train``/``inverse``.
    """
    batch = x.shape[0]
    forward, backward = [], []
    for i, layer in enumerate(ref):
        for j, lin in enumerate(m for m in layer.subnet if isinstance(m, nn.Linear)):
            w = lin.weight.detach()
            a, g = torch.randn(batch, lin.in_features), torch.randn(batch, lin.out_features)
            forward.append((a, w.t()))
            backward.append((g.t(), a))
            if i or j:
                backward.append((g, w))
    ops = {"inverse": forward, "train": forward + backward}
    floor = {}
    for op, pairs in ops.items():
        times = []
        for _ in range(rounds):
            start = time.perf_counter()
            for a, b in pairs:
                torch.mm(a, b)
            times.append(time.perf_counter() - start)
        floor[op] = statistics.median(times)
    return floor


def _minor_faults() -> int:
    """Page faults of this process so far: fresh pages handed out by the allocator."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--peers", default=".peers", help="folder the peers are installed in")
    parser.add_argument("--couplings", type=int, default=8, help="one-sided couplings (even)")
    parser.add_argument("--hidden", type=int, default=256, help="units of the flat sub-networks")
    parser.add_argument("--hidden-conv", type=int, default=64, help="filters of the conv ones")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=2, help="calls per timed turn")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--configs", nargs="*", default=[c.name for c in CONFIGS])
    args = parser.parse_args()
    if args.couplings % 2:
        parser.error("--couplings must be even (FrEIA's blocks hold two couplings)")
    torch.set_num_threads(args.threads)
    if os.path.isdir(args.peers):
        sys.path.insert(0, os.path.abspath(args.peers))
    peers = {}
    for name, build in BUILDERS.items():
        try:
            __import__(name)
            peers[name] = build
        except ImportError as e:
            print(f"{name} not importable from {args.peers!r} ({e}): skipped")
    print(f"{platform.node()}  load average {os.getloadavg()}  torch {torch.__version__}")
    print(
        f"{args.couplings} couplings, hidden {args.hidden} (flat) / {args.hidden_conv} (conv), "
        f"batch {args.batch_size}, "
        f"{args.rounds} rounds x {args.repeats} calls, {args.threads} thread(s)"
    )
    print(
        f"{'config':<14} {'op':<8} {'library':<10} {'ms':>9} {'peer/preimage':>14} "
        f"{'faults/call':>12}"
    )
    for cfg in CONFIGS:
        if cfg.name not in args.configs:
            continue
        for op, name, ms, ratio, faults in run_config(cfg, args, peers):
            print(
                f"{cfg.name:<14} {op:<8} {name:<10} {ms:>9.2f} {ratio:>14.2f} {faults:>12.0f}",
                flush=True,
            )


if __name__ == "__main__":
    main()
