"""One property test over every invertible block and model.

For each case: round trip (float32 <= 1e-5, float64 <= 1e-10, float64 both converted and built
under ``torch.set_default_dtype(torch.float64)``), log-det against the dense autograd Jacobian +
slogdet in float64 (<= 1e-6), every parameter gets a gradient and a save/load round trip
reproduces the outputs (float32 and float64). Shapes are drawn by hypothesis. The cases are
checked against every ``InvertibleModule`` subclass and every model class of preimage (found by
``__subclasses__``), so a new block or model without a case fails
``test_every_block_and_model_has_a_case``. The stochastic log-det estimators are compared with
the exact value within their standard error in ``test_estimators_agree_with_the_exact_logdet``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import pytest
import torch
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from safetensors.torch import load, save
from torch import nn

import preimage.models
from preimage.models import (
    CNN,
    MLP,
    SVHNCNN,
    FiRevNet,
    FlowFeatureClassifier,
    GlowFlow,
    InvNet,
    IResNet,
    IResNetFlow,
    IResNetLinear,
    IsotopeNet,
    PlainNet,
    PreActResNet,
    ResidualClassifier,
    ResidualNet1D,
)
from preimage.models.iresnet import IResNetBase
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
    conv_branch,
    dense_branch,
)

Factory = Callable[[tuple[int, ...]], InvertibleModule]


def _images(draw: st.DrawFn, *, even: bool = False, min_c: int = 2) -> tuple[int, ...]:
    step = 2 if even else 1
    c = draw(st.integers(min_c, 6))
    h = draw(st.integers(1, 4)) * step + (0 if even else 1)
    w = draw(st.integers(1, 4)) * step + (0 if even else 1)
    return (c, h, w)


@st.composite
def image_shape(draw: st.DrawFn) -> tuple[int, ...]:
    return _images(draw)


@st.composite
def even_image_shape(draw: st.DrawFn) -> tuple[int, ...]:
    return _images(draw, even=True, min_c=1)


@st.composite
def flat_shape(draw: st.DrawFn) -> tuple[int, ...]:
    return (draw(st.integers(2, 12)),)


# A two-scale i-ResNet with exact log-dets and exact inverses, for every i-ResNet case.
SMALL_IRESNET: dict[str, Any] = {
    "stages": 2,
    "blocks_per_stage": 1,
    "hidden": 4,
    "logdet": "exact",
    "inverse_atol": 0.0,
    "inverse_rtol": 0.0,
}


CASES: dict[str, tuple[Factory, st.SearchStrategy[tuple[int, ...]]]] = {
    "actnorm": (lambda s: ActNorm(s[0]), st.one_of(image_shape(), flat_shape())),
    "conv1x1": (lambda s: InvConv1x1(s[0]), st.one_of(image_shape(), flat_shape())),
    "additive-conv": (
        lambda s: AdditiveCoupling(s[0], hidden=6, batch_norm=True),
        image_shape(),
    ),
    "additive-mlp-swap": (
        lambda s: AdditiveCoupling(s[0], subnet="mlp", hidden=6, swap=True),
        flat_shape(),
    ),
    "affine-conv": (lambda s: AffineCoupling(s[0], hidden=6, swap=True), image_shape()),
    "affine-mlp-bn": (
        lambda s: AffineCoupling(s[0], subnet="mlp", hidden=6, batch_norm=True),
        flat_shape(),
    ),
    "squeeze": (lambda s: Squeeze(), even_image_shape()),
    "flatten": (lambda s: Flatten(s), image_shape()),
    "dct2d": (lambda s: DCT2d(), image_shape()),
    "dct-readout": (lambda s: DCTReadout(s), image_shape()),
    "center-readout": (lambda s: CenterReadout(s, 2), image_shape()),
    "split": (
        lambda s: Split(
            s, InvertibleSequential(ActNorm(s[0] - s[0] // 2), Flatten((s[0] - s[0] // 2, *s[1:])))
        ),
        image_shape(),
    ),
    "sequential": (
        lambda s: InvertibleSequential(
            ActNorm(s[0]), InvConv1x1(s[0]), AffineCoupling(s[0], hidden=4)
        ),
        image_shape(),
    ),
    "iresblock-dense": (
        lambda s: IResBlock(
            dense_branch(s[0], 8), logdet="exact", inverse_atol=0.0, inverse_rtol=0.0
        ),
        flat_shape(),
    ),
    "iresblock-conv": (
        lambda s: IResBlock(
            conv_branch(s[0], 4), logdet="exact", inverse_atol=0.0, inverse_rtol=0.0
        ),
        image_shape(),
    ),
    "firevnet-first": (
        lambda s: FiRevNet(s, 2, stages=2, blocks_per_stage=2, hidden=6),
        even_image_shape(),
    ),
    "firevnet-dct-additive-nosplit": (
        lambda s: FiRevNet(
            s,
            2,
            stages=2,
            blocks_per_stage=1,
            hidden=6,
            readout="dct",
            split=False,
            coupling="additive",
        ),
        even_image_shape(),
    ),
    # logit_norm is outside the bijection, so it has no case here: its parameters get no
    # gradient from (z, logdet); tests/models/test_firevnet.py checks it through classify.
    "firevnet-center-stageblocks": (
        lambda s: FiRevNet(
            s,
            2,
            stages=2,
            stage_blocks=(2, 1),
            hidden=6,
            readout="center",
            coupling="additive",
        ),
        even_image_shape(),
    ),
    "iresnet-first": (
        lambda s: IResNet(s, 2, readout="first", **SMALL_IRESNET),
        even_image_shape(),
    ),
    "iresnet-flow": (lambda s: IResNetFlow(s, **SMALL_IRESNET), even_image_shape()),
    "injective-pad": (lambda s: InjectivePad(2), image_shape()),
    "logit": (lambda s: LogitTransform(0.05), st.one_of(image_shape(), flat_shape())),
    "glow-flow": (
        lambda s: GlowFlow(s, stages=2, blocks_per_stage=2, hidden=4),
        even_image_shape(),
    ),
    "glow-flow-additive-logit": (
        lambda s: GlowFlow(
            s, stages=2, blocks_per_stage=1, hidden=4, coupling="additive", logit_alpha=0.05
        ),
        even_image_shape(),
    ),
    "iresnet-flow-logit": (
        lambda s: IResNetFlow(s, logit_alpha=0.05, **SMALL_IRESNET),
        even_image_shape(),
    ),
    "iresnet-dct-split": (
        lambda s: IResNet(s, 2, readout="dct", split=True, **SMALL_IRESNET),
        even_image_shape(),
    ),
    "iresnet-linear-body": (
        lambda s: (
            IResNetLinear(
                s, 2, stages=1, blocks_per_stage=1, hidden=4, pad_channels=s[0] + 2, logdet="exact"
            ).net
        ),
        even_image_shape(),
    ),
    "residual-classifier-body": (
        lambda s: ResidualClassifier(s, n_blocks=1, hidden=4, coeff=0.9, pad_channels=2).body,
        even_image_shape(),
    ),
    "firevnet-dense": (
        lambda s: FiRevNet(s, 2, stages=1, blocks_per_stage=2, hidden=6, batch_norm=False),
        flat_shape(),
    ),
}


# Defined on [0, 1] data only (the logit pre-transform): their inputs are drawn there.
UNIT_INTERVAL_INPUTS = {"logit", "iresnet-flow-logit", "glow-flow-additive-logit"}


def _inputs(name: str | None, n: int, shape: tuple[int, ...], dtype: torch.dtype) -> torch.Tensor:
    """``n`` inputs of ``shape``: standard normal, or uniform in (0, 1) where the case needs it."""
    if name in UNIT_INTERVAL_INPUTS:
        return 0.02 + 0.96 * torch.rand(n, *shape, dtype=dtype)
    return torch.randn(n, *shape, dtype=dtype)


# Injective, not bijective: their summed log-det terms are no volume change of the whole map
# (thesis appendix A.1's padded body), so only round trip, gradients and save/load apply.
NOT_VOLUME_PRESERVING_LOGDET = {"iresnet-linear-body", "residual-classifier-body"}


def _build(factory: Factory, shape: tuple[int, ...], dtype: torch.dtype, native: bool) -> nn.Module:
    """``factory(shape)`` converted to ``dtype``, or built with ``dtype`` as the default dtype."""
    if not native:
        return factory(shape).to(dtype)
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        return factory(shape)
    finally:
        torch.set_default_dtype(previous)


def _prepare(
    factory: Factory,
    shape: tuple[int, ...],
    dtype: torch.dtype,
    *,
    native: bool = False,
    name: str | None = None,
) -> InvertibleModule:
    """Build, perturb the zero-initialised layers, run the data-dependent init, switch to eval."""
    torch.manual_seed(0)
    module = _build(factory, shape, dtype, native)
    dtypes = {t.dtype for t in (*module.parameters(), *module.buffers()) if t.is_floating_point()}
    assert dtypes <= {dtype}, f"built with {dtypes}, expected {dtype}"
    with torch.no_grad():
        for p in module.parameters():
            p.add_(0.05 * torch.randn_like(p))
        module.train()
        module(_inputs(name, 8, shape, dtype))
    return module.eval()


def _jacobian_logdet(module: InvertibleModule, x: torch.Tensor) -> torch.Tensor:
    def f(v: torch.Tensor) -> torch.Tensor:
        return module(v.reshape(1, *x.shape))[0].reshape(-1)

    jac = torch.autograd.functional.jacobian(f, x.reshape(-1))
    if jac.shape[0] != jac.shape[1]:  # an injective map: volume change sqrt(det J^T J)
        return 0.5 * torch.linalg.slogdet(jac.T @ jac)[1]
    return torch.linalg.slogdet(jac)[1]


def _skip_if_unsupported(factory: Factory, shape: tuple[int, ...]) -> None:
    try:
        factory(shape)
    except ValueError:  # shapes a block refuses with a clear error are not cases
        assume(False)


@pytest.mark.parametrize("name", sorted(CASES))
@settings(max_examples=6, deadline=None)
@given(data=st.data())
def test_round_trip(name: str, data: st.DataObject) -> None:
    factory, shapes = CASES[name]
    shape = data.draw(shapes)
    _skip_if_unsupported(factory, shape)
    variants = (
        (torch.float32, 1e-5, False),
        (torch.float64, 1e-10, False),
        (torch.float64, 1e-10, True),
    )
    for dtype, tol, native in variants:
        module = _prepare(factory, shape, dtype, native=native, name=name)
        x = _inputs(name, 5, shape, dtype)
        with torch.no_grad():
            y, logdet = module(x)
            x_rec = module.inverse(y)
        assert logdet.shape == (5,)
        assert tuple(y.shape[1:]) == module.output_shape(shape)
        scale = max(1.0, float(x.abs().max()))
        assert float((x_rec - x).abs().max()) <= tol * scale, name


@pytest.mark.parametrize("name", sorted(set(CASES) - NOT_VOLUME_PRESERVING_LOGDET))
@settings(max_examples=4, deadline=None)
@given(data=st.data())
def test_logdet_matches_autograd_jacobian(name: str, data: st.DataObject) -> None:
    factory, shapes = CASES[name]
    shape = data.draw(shapes)
    _skip_if_unsupported(factory, shape)
    module = _prepare(factory, shape, torch.float64, name=name)
    x = _inputs(name, 3, shape, torch.float64)
    with torch.no_grad():
        _, logdet = module(x)
    for i in range(3):
        expected = _jacobian_logdet(module, x[i])
        assert abs(float(logdet[i] - expected)) <= 1e-6, (name, float(logdet[i]), float(expected))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("name", sorted(CASES))
def test_every_parameter_gets_a_gradient(name: str, dtype: torch.dtype) -> None:
    factory, _ = CASES[name]
    shape = _default_shape(name)
    module = _prepare(factory, shape, dtype, native=dtype == torch.float64, name=name).train()
    x = _inputs(name, 6, shape, dtype).requires_grad_(True)
    y, logdet = module(x)
    (y.pow(2).sum() + logdet.sum()).backward()
    for pname, p in module.named_parameters():
        assert p.grad is not None, f"{name}: {pname} got no gradient"
        assert torch.isfinite(p.grad).all()
        assert float(p.grad.abs().sum()) > 0, f"{name}: {pname} got a zero gradient"


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("name", sorted(CASES))
def test_save_load_round_trip(name: str, dtype: torch.dtype) -> None:
    factory, _ = CASES[name]
    shape = _default_shape(name)
    module = _prepare(factory, shape, dtype, name=name)
    blob = save({k: v.contiguous() for k, v in module.state_dict().items()})
    torch.manual_seed(123)
    fresh = _build(factory, shape, dtype, native=True)
    fresh.load_state_dict(load(blob))
    fresh.eval()
    x = _inputs(name, 4, shape, dtype)
    with torch.no_grad():
        assert torch.equal(module(x)[0], fresh(x)[0])
        assert torch.equal(module(x)[1], fresh(x)[1])


def _default_shape(name: str) -> tuple[int, ...]:
    if name in ("additive-mlp-swap", "affine-mlp-bn", "firevnet-dense", "iresblock-dense"):
        return (5,)
    if name in ("actnorm", "conv1x1"):
        return (3, 3, 4)
    if name.startswith(("firevnet", "glow")) or name in ("squeeze", "iresnet-flow-logit"):
        return (1, 4, 4)
    if name in ("iresnet-dct-split", "iresnet-linear-body", "residual-classifier-body"):
        return (2, 4, 4)
    return (3, 3, 5)


def test_injective_pad_is_an_isometric_embedding() -> None:
    from preimage.nn import InjectivePad

    pad = InjectivePad(2).double()
    x = torch.randn(3, 1, 2, 2, dtype=torch.float64)
    y, logdet = pad(x)
    assert torch.equal(pad.inverse(y), x)
    jac = torch.autograd.functional.jacobian(
        lambda v: pad(v.view(1, 1, 2, 2))[0].reshape(-1), x[0].reshape(-1)
    )
    gram = jac.T @ jac
    assert torch.allclose(gram, torch.eye(4, dtype=torch.float64))
    assert float(logdet.abs().max()) == 0.0 == 0.5 * float(torch.linalg.slogdet(gram)[1])


def test_models_are_modules() -> None:
    assert all(isinstance(f(_default_shape(n)), nn.Module) for n, (f, _) in CASES.items())


def _subclasses(cls: type) -> set[type]:
    found = set()
    for sub in cls.__subclasses__():
        found |= {sub, *_subclasses(sub)}
    return found


# Models that are no InvertibleModule: their invertible part has a case, or they are plain nets.
NON_INVERTIBLE_MODELS = {
    CNN: "baseline CNN, no inverse",
    MLP: "plain MLP of the rate-distortion studies, no inverse",
    SVHNCNN: "SVHN CNN of the rate-distortion paper (table 3), no inverse",
    IsotopeNet: "1-D mass-spectrum classifier (thesis table 7.2), no inverse",
    ResidualNet1D: "1-D mass-spectrum ResNet (thesis table A.1), no inverse",
    FlowFeatureClassifier: "linear head on an invertible body; the body (FiRevNet) has its case",
    InvNet: "LeNet encoder with a learned decoder (information regularisation), no exact inverse",
    PreActResNet: "pre-activation ResNet-32 of the information-regularisation paper, no inverse",
    PlainNet: "PreActResNet without shortcuts, no inverse",
    IResNetLinear: "case iresnet-linear-body (its head is a plain linear classifier)",
    ResidualClassifier: "case residual-classifier-body (its head is a plain linear layer)",
}


# Shared machinery that is never built on its own (its subclasses have cases).
ABSTRACT: set[type] = {FlatCodeModel, IResNetBase}


def test_every_block_and_model_has_a_case() -> None:
    covered: set[type] = set()
    for name, (factory, _) in CASES.items():
        module = factory(_default_shape(name))
        covered |= {type(m) for m in module.modules()}
    blocks = {c for c in _subclasses(InvertibleModule) if c.__module__.startswith("preimage.")}
    blocks = {c for c in blocks if not c.__name__.startswith("_")}
    missing = sorted(
        c.__qualname__ for c in blocks - covered - ABSTRACT - set(NON_INVERTIBLE_MODELS)
    )
    assert not missing, f"invertible modules without a property-test case: {missing}"
    models = {
        obj
        for obj in vars(preimage.models).values()
        if isinstance(obj, type) and issubclass(obj, nn.Module)
    }
    missing_models = sorted(c.__name__ for c in models - covered if c not in NON_INVERTIBLE_MODELS)
    assert not missing_models, f"models without a property-test case: {missing_models}"


@pytest.mark.parametrize("estimator", ["series", "roulette", "neumann"])
def test_estimators_agree_with_the_exact_logdet(estimator: str) -> None:
    """IResBlock and IResNetFlow on each estimator path, against the exact log-det."""
    torch.manual_seed(0)
    shape = (2, 2, 2)
    flow = IResNetFlow(
        shape, stages=1, blocks_per_stage=2, hidden=4, logdet=estimator, n_terms=30, n_probes=64
    )
    flow = _prepare(lambda s: flow, shape, torch.float64)
    x = torch.randn(1, *shape, dtype=torch.float64).expand(200, *shape)
    with torch.no_grad():
        _, estimates = flow(x)
    exact = float(_jacobian_logdet(flow, x[0]))
    mean = float(estimates.mean())
    se = float(estimates.std()) / math.sqrt(estimates.numel())
    # series: 30 terms at L <= 0.73 leave a truncation bias far below the standard error.
    assert abs(mean - exact) <= 4 * se + 1e-9, (estimator, mean, exact, se)
