"""Memory-saving backpropagation against ordinary backpropagation, for every invertible block.

Every public :class:`~preimage.nn.InvertibleModule` subclass of preimage has a case here (the
first test fails when a new one has none). Blocks with an exact inverse must give the gradients
of ordinary backpropagation (inputs, parameters, log-det included; float32 <= 1e-5, float64
<= 1e-10 relative to the gradient's scale) and leave the same buffers; the others must be refused
with a ConfigError.
"""

from __future__ import annotations

import copy
import importlib
import pkgutil
from collections.abc import Callable, Iterator

import pytest
import torch
from torch import Tensor, nn

import preimage
from preimage.errors import ConfigError
from preimage.models import FiRevNet, GlowFlow, IResNet, IResNetFlow
from preimage.models.iresnet import IResNetBase, IResNetLinear
from preimage.nn import (
    ActNorm,
    AdditiveCoupling,
    AffineCoupling,
    CenterReadout,
    DCT2d,
    DCTReadout,
    FlatCodeModel,
    Flatten,
    InjectivePad,
    InvConv1x1,
    InvertibleModule,
    InvertibleSequential,
    IResBlock,
    LogitTransform,
    Split,
    Squeeze,
    dense_branch,
)
from preimage.nn.base import flat_dim
from preimage.nn.memory_saving import SavedTensorMeter

Case = tuple[Callable[[], InvertibleModule], tuple[int, ...]]

SHAPE = (4, 4, 6)
CASES: dict[type, Case] = {
    ActNorm: (lambda: ActNorm(4), SHAPE),
    InvConv1x1: (lambda: InvConv1x1(4), SHAPE),
    AdditiveCoupling: (lambda: AdditiveCoupling(4, hidden=6, batch_norm=True), SHAPE),
    AffineCoupling: (lambda: AffineCoupling(5, subnet="mlp", hidden=6, swap=True), (5,)),
    Squeeze: (Squeeze, SHAPE),
    Flatten: (lambda: Flatten(SHAPE), SHAPE),
    InjectivePad: (lambda: InjectivePad(2), SHAPE),
    LogitTransform: (lambda: LogitTransform(0.05), SHAPE),
    DCT2d: (DCT2d, SHAPE),
    DCTReadout: (lambda: DCTReadout(SHAPE), SHAPE),
    CenterReadout: (lambda: CenterReadout(SHAPE, 3), SHAPE),
    Split: (
        lambda: Split(SHAPE, InvertibleSequential(ActNorm(2), AffineCoupling(2, hidden=4))),
        SHAPE,
    ),
    InvertibleSequential: (
        lambda: InvertibleSequential(ActNorm(4), InvConv1x1(4), AffineCoupling(4, hidden=6)),
        SHAPE,
    ),
    FiRevNet: (lambda: FiRevNet((1, 8, 8), 3, stages=3, blocks_per_stage=2, hidden=6), (1, 8, 8)),
    IResBlock: (lambda: IResBlock(dense_branch(5, 8), logdet="exact"), (5,)),
    IResNet: (
        lambda: IResNet((1, 4, 4), 2, readout="first", stages=1, blocks_per_stage=1, hidden=4),
        (1, 4, 4),
    ),
    IResNetFlow: (
        lambda: IResNetFlow((1, 4, 4), stages=1, blocks_per_stage=1, hidden=4),
        (1, 4, 4),
    ),
    GlowFlow: (lambda: GlowFlow((1, 8, 8), stages=2, blocks_per_stage=1, hidden=4), (1, 8, 8)),
    IResNetLinear: (
        lambda: IResNetLinear((1, 4, 4), 2, stages=1, blocks_per_stage=1, hidden=4),
        (1, 4, 4),
    ),
}
UNIT_INTERVAL: set[type] = {LogitTransform}
"""Blocks defined on [0, 1] data only: their inputs are drawn there."""
ABSTRACT: set[type] = {FlatCodeModel, IResNetBase}
"""Shared bases that are never built alone; their subclasses have cases."""


def _subclasses(cls: type) -> Iterator[type]:
    for sub in cls.__subclasses__():
        yield sub
        yield from _subclasses(sub)


def _public_blocks() -> set[type]:
    for info in pkgutil.walk_packages(preimage.__path__, "preimage."):
        if not info.name.endswith("__main__"):
            importlib.import_module(info.name)
    return {c for c in _subclasses(InvertibleModule) if not c.__name__.startswith("_")}


def test_every_invertible_block_has_a_case() -> None:
    missing = sorted(c.__qualname__ for c in _public_blocks() - set(CASES) - ABSTRACT)
    assert not missing, f"add memory-saving cases for {missing}"


def _perturb(module: nn.Module) -> None:
    # Zero-initialised last layers would make many gradients trivially equal.
    with torch.no_grad():
        for p in module.parameters():
            p.add_(0.1 * torch.randn_like(p))


def _step(chain: InvertibleSequential, x: Tensor, w: Tensor) -> list[Tensor]:
    """Gradients of a loss that uses the output and the log-det, for x and every parameter."""
    x = x.clone().requires_grad_(True)
    y, logdet = chain(x)
    loss = (y.reshape(len(x), -1) * w).sum() + 0.1 * y.square().sum() - 0.7 * logdet.sum()
    return list(torch.autograd.grad(loss, [x, *chain.parameters()]))


def _max_rel_error(a: list[Tensor], b: list[Tensor]) -> float:
    return max(
        float((u - v).abs().max()) / max(1.0, float(u.abs().max()))
        for u, v in zip(a, b, strict=True)
    )


@pytest.mark.parametrize("cls", sorted(CASES, key=lambda c: c.__name__), ids=lambda c: c.__name__)
def test_gradients_equal_ordinary_backprop(cls: type) -> None:
    factory, shape = CASES[cls]
    for dtype, tol in ((torch.float32, 1e-5), (torch.float64, 1e-10)):
        torch.manual_seed(0)
        block = factory().to(dtype)
        _perturb(block)
        if block.recompute_blocker() is not None:
            with pytest.raises(ConfigError, match="memory_saving"):
                InvertibleSequential(block, memory_saving=True)
            return
        # Copies taken before any forward pass: ActNorm's data-dependent initialisation happens
        # inside the compared step, in both modes.
        plain = InvertibleSequential(copy.deepcopy(block)).train()
        saving = InvertibleSequential(copy.deepcopy(block), memory_saving=True).train()
        x = torch.randn(6, *shape, dtype=dtype)
        if cls in UNIT_INTERVAL:
            x = torch.sigmoid(x)
        w = torch.randn(6, flat_dim(block.output_shape(shape)), dtype=dtype)
        error = _max_rel_error(_step(plain, x, w), _step(saving, x, w))
        assert error <= tol, (cls.__name__, dtype, error)
        for (name, a), b in zip(plain.named_buffers(), saving.buffers(), strict=True):
            assert torch.equal(a, b), f"{cls.__name__}: buffer {name} differs"


def test_firevnet_option_and_training_trajectory() -> None:
    """A few SGD steps (batch norm, ActNorm init, nested splits) end at the same parameters."""
    torch.manual_seed(0)
    kwargs = {"stages": 3, "blocks_per_stage": 2, "hidden": 6, "coupling": "additive"}
    plain = FiRevNet((1, 8, 8), 3, **kwargs).double()
    saving = FiRevNet((1, 8, 8), 3, memory_saving=True, **kwargs).double()
    saving.load_state_dict(plain.state_dict())
    assert FiRevNet(**saving.config).cfg.memory_saving
    x = torch.randn(8, 1, 8, 8, dtype=torch.float64)
    labels = torch.randint(0, 3, (8,))
    for model in (plain, saving):
        opt = torch.optim.SGD(model.parameters(), lr=0.1)
        for _ in range(3):
            opt.zero_grad()
            z, logdet = model(x)
            loss = (
                nn.functional.cross_entropy(z[:, :3], labels)
                + 1e-3 * (z.square() - logdet[:, None]).mean()
            )
            loss.backward()
            opt.step()
    for (name, a), b in zip(plain.state_dict().items(), saving.state_dict().values(), strict=True):
        assert torch.allclose(a, b, rtol=0, atol=1e-10), name
    with torch.no_grad():
        assert torch.allclose(plain(x)[0], saving(x)[0], rtol=0, atol=1e-10)


def test_blocks_that_cannot_be_recomputed_are_refused() -> None:
    with pytest.raises(ConfigError, match="IResBlock"):
        InvertibleSequential(ActNorm(5), IResBlock(dense_branch(5, 8)), memory_saving=True)
    dropout_subnet = AdditiveCoupling(
        4, subnet=lambda i, o: nn.Sequential(nn.Linear(i, o), nn.Dropout(0.1))
    )
    with pytest.raises(ConfigError, match="dropout"):
        InvertibleSequential(dropout_subnet, memory_saving=True)


def _chain(blocks: int, memory_saving: bool) -> InvertibleSequential:
    layers: list[InvertibleModule] = []
    for i in range(blocks):
        layers += [ActNorm(4), InvConv1x1(4), AffineCoupling(4, hidden=8, swap=i % 2 == 1)]
    return InvertibleSequential(layers, memory_saving=memory_saving)


def _peak_saved_bytes(blocks: int, memory_saving: bool) -> int:
    torch.manual_seed(0)
    chain = _chain(blocks, memory_saving).train()
    x = torch.randn(4, 4, 8, 8)
    with SavedTensorMeter(exclude=chain.parameters()) as meter:
        y, logdet = chain(x)
        (y.square().sum() - logdet.sum()).backward()
    assert meter.live == 0
    return meter.peak


def test_stored_bytes_do_not_grow_with_depth() -> None:
    saving = {k: _peak_saved_bytes(k, True) for k in (4, 32)}
    ordinary = {k: _peak_saved_bytes(k, False) for k in (4, 32)}
    assert saving[32] <= 2 * saving[4], saving
    assert ordinary[32] >= 6 * ordinary[4], ordinary  # the meter sees the linear growth
    assert saving[32] < ordinary[4]


def test_no_grad_forward_is_the_ordinary_one() -> None:
    torch.manual_seed(0)
    plain = _chain(3, False).eval()
    saving = _chain(3, True).eval()
    saving.load_state_dict(plain.state_dict())
    x = torch.randn(2, 4, 8, 8)
    with torch.no_grad():
        assert all(torch.equal(a, b) for a, b in zip(plain(x), saving(x), strict=True))
    y, _ = saving(x)  # grad enabled, parameters require grad: the memory-saving function
    assert y.grad_fn is not None and torch.equal(y.detach(), plain(x)[0].detach())
