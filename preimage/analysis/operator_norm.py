r"""Exact operator norms of linear layers and Lipschitz certificates of i-ResNet blocks.

Spectral normalisation only estimates :math:`\|A\|_2` from below, so an i-ResNet must be
checked after training (thesis remark 4.9). :func:`operator_norm` computes the norm of the
operator a layer applies on a given input shape:

* ``"fft"`` - for circular convolutions with stride 1 that keep the size, the operator is
  block-circulant: its singular values are those of the :math:`C_\text{out} \times C_\text{in}`
  matrices :math:`\hat K(f)` of the 2-D DFT of the kernel at each frequency (Sedghi, Gupta,
  Long 2019, theorem 6);
* ``"dense"`` - the SVD of the full operator matrix, built from the layer's impulse responses
  (small inputs);
* ``"power"`` / ``"lanczos"`` - power iteration or implicitly restarted Lanczos (ARPACK,
  through :func:`scipy.sparse.linalg.eigsh`) on :math:`A^\top A`, run to a relative
  tolerance (converged lower bounds, for large inputs).

:func:`lipschitz_certificate` multiplies these norms with the activations' Lipschitz constants
for every :class:`~preimage.nn.iresblock.IResBlock` of a model (thesis eq. 4.6).

References:
    Behrmann (thesis), *Invertibility and Domain Knowledge*, eq. 4.6 and remark 4.9.
    Sedghi, Gupta, Long (2019), *The Singular Values of Convolutional Layers*, section 2,
    theorem 6.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from scipy.sparse.linalg import ArpackNoConvergence, LinearOperator, eigsh
from torch import Tensor, nn

from preimage.errors import ConfigError, ConvergenceError, ShapeError
from preimage.nn.base import Shape
from preimage.nn.iresblock import IResBlock, activation_lipschitz, chain_modules
from preimage.nn.spectral import SpectralConv2d, SpectralLinear, spectral_layers, track_spectral
from preimage.train.loop import Callback

if TYPE_CHECKING:
    from preimage.train.loop import Trainer

__all__ = [
    "BlockCertificate",
    "LayerBound",
    "Method",
    "NormCheck",
    "SpectralNormMonitor",
    "format_certificates",
    "lipschitz_certificate",
    "operator_norm",
    "realign_exact",
    "spectral_norm_ratios",
]

Method = Literal["auto", "fft", "dense", "power", "lanczos"]

_LINEAR_LAYERS = (nn.Linear, nn.Conv2d, SpectralLinear, SpectralConv2d)


@dataclass(frozen=True)
class _Operator:
    """The linear part of a layer in float64: ``apply`` maps a batch of inputs to outputs."""

    apply: Callable[[Tensor], Tensor]
    in_shape: Shape
    weight: Tensor
    circulant: bool


def _conv_pads(layer: nn.Conv2d) -> tuple[int, int, int, int]:
    k_h, k_w = layer.kernel_size
    d_h, d_w = layer.dilation
    if layer.padding == "valid":
        return (0, 0, 0, 0)
    if layer.padding == "same":
        t_h, t_w = d_h * (k_h - 1), d_w * (k_w - 1)
        return (t_w // 2, t_w - t_w // 2, t_h // 2, t_h - t_h // 2)
    p_h, p_w = layer.padding  # type: ignore[misc]
    return (p_w, p_w, p_h, p_h)


def _operator(layer: nn.Module, input_shape: Shape | None) -> _Operator:
    if isinstance(layer, nn.Linear | SpectralLinear):
        weight = layer.normalized_weight() if isinstance(layer, SpectralLinear) else layer.weight
        weight = weight.detach().to(torch.float64)
        shape = (weight.shape[1],)
        if input_shape is not None and tuple(input_shape) != shape:
            raise ShapeError(f"{type(layer).__name__} takes inputs {shape}, got {input_shape}")
        return _Operator(lambda v: F.linear(v, weight), shape, weight, circulant=False)
    if isinstance(layer, SpectralConv2d):
        if input_shape is None:
            if layer.input_size is None:
                raise ShapeError("SpectralConv2d has no input size yet: pass input_shape")
            input_shape = (layer.in_channels, *layer.input_size)
        weight = layer.normalized_weight().detach().to(torch.float64)
        stride, pad, mode = layer.stride, layer.padding, layer.padding_mode
        pads = (pad,) * 4
        padding_mode = "circular" if mode == "circular" else "zeros"
        groups, dilation = 1, (1, 1)
        strides = (stride, stride)
    elif isinstance(layer, nn.Conv2d):
        if input_shape is None:
            raise ShapeError("a convolution's operator norm needs input_shape=(C, H, W)")
        weight = layer.weight.detach().to(torch.float64)
        pads = _conv_pads(layer)
        padding_mode = layer.padding_mode
        groups, dilation = layer.groups, tuple(layer.dilation)
        strides = tuple(layer.stride)
    else:
        raise ConfigError(
            f"operator_norm takes nn.Linear, nn.Conv2d, SpectralLinear or SpectralConv2d, got "
            f"{type(layer).__name__}"
        )
    shape = tuple(int(s) for s in input_shape)
    if len(shape) != 3 or shape[0] != weight.shape[1] * groups:
        raise ShapeError(f"{type(layer).__name__} needs input_shape (C, H, W), got {input_shape}")
    pad_mode = "constant" if padding_mode == "zeros" else padding_mode

    def apply(v: Tensor) -> Tensor:
        if any(pads):
            v = F.pad(v, pads, mode=pad_mode)
        return F.conv2d(v, weight, stride=strides, dilation=dilation, groups=groups)

    with torch.no_grad():
        out = apply(torch.zeros(1, *shape, dtype=torch.float64, device=weight.device))
    circulant = (
        padding_mode == "circular"
        and strides == (1, 1)
        and dilation == (1, 1)
        and groups == 1
        and tuple(out.shape[-2:]) == shape[-2:]
    )
    return _Operator(apply, shape, weight, circulant)


def _pointwise(layer: nn.Module) -> bool:
    if isinstance(layer, SpectralConv2d):
        return layer.kernel_size == 1 and layer.stride == 1 and layer.padding == 0
    if isinstance(layer, nn.Conv2d):
        return (
            tuple(layer.kernel_size) == (1, 1)
            and tuple(layer.stride) == (1, 1)
            and _conv_pads(layer) == (0, 0, 0, 0)
            and layer.groups == 1
        )
    return False


def _fft_norm(op: _Operator) -> float:
    _, h, w = op.in_shape
    c_out, c_in, k_h, k_w = op.weight.shape
    # Taps beyond the canvas alias onto it, exactly as the periodic padding wraps them.
    kernel = op.weight.new_zeros(c_out, c_in, h, w)
    for a in range(k_h):
        for b in range(k_w):
            kernel[:, :, a % h, b % w] += op.weight[:, :, a, b]
    spectrum = torch.fft.fft2(kernel).permute(2, 3, 0, 1)
    return float(torch.linalg.matrix_norm(spectrum, ord=2).max())


def _dense_norm(op: _Operator) -> float:
    if len(op.in_shape) == 1:
        return float(torch.linalg.matrix_norm(op.weight, ord=2))
    d = math.prod(op.in_shape)
    eye = torch.eye(d, dtype=torch.float64, device=op.weight.device).reshape(d, *op.in_shape)
    with torch.no_grad():
        columns = op.apply(eye).reshape(d, -1)
    return float(torch.linalg.matrix_norm(columns, ord=2))


def _gram(op: _Operator) -> Callable[[Tensor], Tensor]:
    r""":math:`v \mapsto A^\top A v` for flat ``v``; the adjoint by reverse-mode autodiff."""

    def apply(v: Tensor) -> Tensor:
        with torch.enable_grad():
            v_in = v.detach().reshape(1, *op.in_shape).requires_grad_(True)
            av = op.apply(v_in)
            (ata_v,) = torch.autograd.grad(av, v_in, av.detach())
        return ata_v.reshape(-1)

    return apply


def _start_vector(op: _Operator, generator: torch.Generator | None) -> Tensor:
    device = op.weight.device
    v = torch.randn(math.prod(op.in_shape), dtype=torch.float64, device=device, generator=generator)
    return v / v.norm()


_RATE_WINDOW = 5


def _power_norm(
    op: _Operator, rtol: float, max_iter: int, generator: torch.Generator | None
) -> float:
    gram = _gram(op)
    v = _start_vector(op, generator)
    lam = previous = 0.0
    deltas: list[float] = []
    for _ in range(max_iter):
        w = gram(v)
        lam = float(torch.dot(v, w))
        norm = float(w.norm())
        if norm == 0.0:
            return 0.0
        v = w / norm
        deltas.append(abs(lam - previous))
        previous = lam
        if len(deltas) <= _RATE_WINDOW:
            continue
        if deltas[-1] == 0.0:
            return math.sqrt(lam)
        # The Rayleigh quotient converges geometrically at an unknown rate r; a plain change
        # test underestimates the remaining error delta * r / (1 - r) when r is close to 1, so
        # use the slowest recent rate.
        recent = deltas[-_RATE_WINDOW - 1 :]
        rates = [b / a for a, b in itertools.pairwise(recent) if a > 0.0]
        rate = max(rates, default=1.0)
        if rate < 1.0 and deltas[-1] * rate / (1.0 - rate) <= rtol * lam:
            return math.sqrt(lam)
    raise ConvergenceError(
        f"power iteration did not reach rtol={rtol} in {max_iter} steps "
        f"(sigma ~ {math.sqrt(max(lam, 0.0)):.6g}); try method='lanczos'"
    )


def _lanczos(
    op: _Operator, rtol: float, max_iter: int, generator: torch.Generator | None, krylov: int
) -> tuple[float, Tensor]:
    """Implicitly restarted Lanczos on :math:`A^\top A` (ARPACK): the norm and its right
    singular vector (flat).

    ARPACK's ``dsaupd`` keeps ``krylov`` basis vectors and, at each restart, the whole wanted
    part of the space, where restarting from the one top Ritz vector (what this function did
    before) stalled for thousands of products on a cluster of near-equal top singular values,
    the common case of trained zero-padded convolutions (BENCHMARKS.md). It stops when the
    Ritz estimate of the residual is at most ``rtol`` times the Ritz value, the same test.
    """
    dim = math.prod(op.in_shape)
    start = _start_vector(op, generator)
    gram = _gram(op)
    if dim <= 2:
        # ARPACK needs a basis larger than the one wanted vector: the Gram matrix directly.
        eye = torch.eye(dim, dtype=start.dtype, device=start.device)
        columns = torch.stack([gram(e) for e in eye])
        evals, evecs = torch.linalg.eigh((columns + columns.T) / 2)
        return math.sqrt(max(float(evals[-1]), 0.0)), evecs[:, -1]
    matvecs = 0

    def apply(x: np.ndarray) -> np.ndarray:
        nonlocal matvecs
        matvecs += 1
        v = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float64).reshape(-1))
        return gram(v.to(start.device)).cpu().numpy()

    ncv = min(dim - 1, max(krylov, 3))
    operator = LinearOperator((dim, dim), matvec=apply, dtype=np.float64)
    try:
        evals, evecs = eigsh(
            operator,
            k=1,
            which="LA",
            tol=rtol,
            ncv=ncv,
            v0=start.cpu().numpy(),
            maxiter=max(1, max_iter // ncv),
        )
    except ArpackNoConvergence as err:
        best = float(err.eigenvalues[0]) if len(err.eigenvalues) else 0.0
        raise ConvergenceError(
            f"Lanczos iteration did not reach rtol={rtol} in {matvecs} products "
            f"(sigma ~ {math.sqrt(max(best, 0.0)):.6g})"
        ) from err
    theta = float(evals[0])
    vector = torch.from_numpy(np.ascontiguousarray(evecs[:, 0])).to(start.device)
    if theta <= 0.0:
        return 0.0, start
    return math.sqrt(theta), vector / vector.norm()


def _lanczos_norm(
    op: _Operator, rtol: float, max_iter: int, generator: torch.Generator | None, krylov: int
) -> float:
    return _lanczos(op, rtol, max_iter, generator, krylov)[0]


def operator_norm(
    layer: nn.Module,
    input_shape: Shape | None = None,
    *,
    method: Method = "auto",
    max_dense_dim: int = 1024,
    rtol: float = 1e-8,
    max_iter: int = 20_000,
    krylov: int = 64,
    generator: torch.Generator | None = None,
) -> float:
    r"""Spectral norm :math:`\|A\|_2` of the linear operator a layer applies (bias ignored).

    Spectral layers are measured with their effective weight
    :math:`W / \max(1, \tilde\sigma / c)` as applied in evaluation mode. All computations run
    in float64 on the layer's device; the adjoint :math:`A^\top` comes from reverse-mode
    autodiff, so any padding mode, stride, dilation and grouping is handled.

    ``"power"`` iterates :math:`v \leftarrow A^\top A v / \|A^\top A v\|` until the error of
    the Rayleigh quotient, extrapolated from the slowest of the last few convergence rates, is
    below ``rtol``. Zero-padded convolutions often have :math:`\sigma_2/\sigma_1` within
    :math:`10^{-3}` of 1, where that takes thousands of steps, so ``"auto"`` prefers
    ``"lanczos"``: ARPACK's implicitly restarted Lanczos on :math:`A^\top A`
    (:func:`scipy.sparse.linalg.eigsh`) with ``krylov`` basis vectors (its largest Ritz value
    converges far faster than ``krylov`` power steps, and the implicit restart keeps the whole
    wanted part of the space, so clusters of near-equal top values do not stall it), stopped
    when the Ritz estimate of the residual is at most ``rtol`` times the Ritz value. Both
    return lower bounds.

    Args:
        layer: ``nn.Linear``, ``nn.Conv2d``, :class:`~preimage.nn.spectral.SpectralLinear` or
            :class:`~preimage.nn.spectral.SpectralConv2d`.
        input_shape: shape of one input sample; ``(C, H, W)`` for convolutions (a
            ``SpectralConv2d`` defaults to its locked size), optional for linear layers.
        method: ``"fft"`` (circular, stride-1, size-preserving convolutions), ``"dense"``,
            ``"power"``, ``"lanczos"`` or ``"auto"`` (fft when it applies, else dense up to
            ``max_dense_dim`` input entries, else lanczos).
        max_dense_dim: largest input dimension ``"auto"`` hands to the dense SVD.
        rtol: relative accuracy on :math:`\sigma^2` of the iterative methods.
        max_iter: cap on the number of :math:`A^\top A` products of the iterative methods.
        krylov: Lanczos basis size per restart (memory: ``krylov`` input-sized vectors).
        generator: optional generator for the start vector of the iterative methods.

    Returns:
        The operator norm; exact up to float64 round-off for ``fft`` and ``dense``, a lower
        bound converged to ``rtol`` for ``power`` and ``lanczos``.

    Raises:
        ConfigError: for unsupported layers or ``method="fft"`` on a non-circulant operator.
        ConvergenceError: if an iterative method does not converge in ``max_iter`` products.

    References:
        Sedghi, Gupta, Long (2019), *The Singular Values of Convolutional Layers*, theorem 6;
        Behrmann (thesis), *Invertibility and Domain Knowledge*, remark 4.9; Golub & Van Loan,
        *Matrix Computations*, section 10.1 (Lanczos).

    Example:
        >>> import torch
        >>> from torch import nn
        >>> conv = nn.Conv2d(2, 3, 3, padding=1, padding_mode="circular")
        >>> a = operator_norm(conv, (2, 6, 6), method="fft")
        >>> b = operator_norm(conv, (2, 6, 6), method="dense")
        >>> c = operator_norm(conv, (2, 6, 6), method="lanczos", rtol=1e-12)
        >>> abs(a - b) < 1e-10, abs(a - c) < 1e-8
        (True, True)
    """
    return _measure(layer, input_shape, method, max_dense_dim, rtol, max_iter, krylov, generator)[0]


def _measure(
    layer: nn.Module,
    input_shape: Shape | None,
    method: Method,
    max_dense_dim: int = 1024,
    rtol: float = 1e-8,
    max_iter: int = 20_000,
    krylov: int = 64,
    generator: torch.Generator | None = None,
) -> tuple[float, Method]:
    """The operator norm and the method that computed it."""
    if method not in ("auto", "fft", "dense", "power", "lanczos"):
        raise ConfigError(f"method must be auto, fft, dense, power or lanczos, got {method!r}")
    if krylov < 2 or max_iter < 1 or rtol <= 0:
        raise ConfigError(
            f"need krylov >= 2, max_iter >= 1, rtol > 0; got {krylov}, {max_iter}, {rtol}"
        )
    op = _operator(layer, input_shape)
    if method == "fft" and not op.circulant:
        raise ConfigError(
            "method='fft' needs a circular convolution with stride 1, no dilation or groups, "
            "that keeps the spatial size"
        )
    if method == "auto" and _pointwise(layer):
        # A 1x1 convolution without padding, stride or groups is W (x) I: the norm of W.
        weight = op.weight.reshape(op.weight.shape[0], -1)
        return float(torch.linalg.matrix_norm(weight, ord=2)), "dense"
    if method == "auto":
        if op.circulant:
            method = "fft"
        elif math.prod(op.in_shape) <= max_dense_dim or len(op.in_shape) == 1:
            method = "dense"
        else:
            method = "lanczos"
    if method == "fft":
        return _fft_norm(op), method
    if method == "dense":
        return _dense_norm(op), method
    if method == "power":
        return _power_norm(op, rtol, max_iter, generator), method
    return _lanczos_norm(op, rtol, max_iter, generator, krylov), method


@dataclass(frozen=True)
class LayerBound:
    """Lipschitz constant of one layer of a residual branch.

    Attributes:
        name: the layer's name inside the block.
        kind: its class name.
        input_shape: shape of one input sample it saw (``()`` for activations).
        lipschitz: operator norm (linear layers) or Lipschitz constant (activations).
        method: how ``lipschitz`` was obtained (``fft``, ``dense``, ``power``, ``lanczos`` or
            ``activation``).
    """

    name: str
    kind: str
    input_shape: Shape
    lipschitz: float
    method: str


@dataclass(frozen=True)
class BlockCertificate:
    r"""Certified bound :math:`\mathrm{Lip}(g) \le \prod_i \|A_i\|_2 \prod_j \mathrm{Lip}(\phi_j)`.

    Attributes:
        block: the block's name in the model.
        layers: per-layer constants, in order.
        uncertified: parts of the branch without a known bound (unknown modules, non-chain
            containers); the bound is then infinite.

    Example:
        >>> cert = BlockCertificate("block", (LayerBound("0", "SpectralLinear", (3,), 0.9, "dense"),
        ...                                   LayerBound("1", "ELU", (), 1.0, "activation")))
        >>> cert.bound, cert.is_contractive
        (0.9, True)
    """

    block: str
    layers: tuple[LayerBound, ...]
    uncertified: tuple[str, ...] = ()

    @property
    def bound(self) -> float:
        """Product of the layers' constants (``inf`` when something is uncertified)."""
        if self.uncertified:
            return math.inf
        return math.prod(layer.lipschitz for layer in self.layers)

    @property
    def is_contractive(self) -> bool:
        """Whether :math:`\\mathrm{Lip}(g) < 1` is certified, i.e. the block is invertible."""
        return self.bound < 1.0

    def __str__(self) -> str:
        verdict = "contractive" if self.is_contractive else "NOT contractive"
        lines = [f"{self.block or '<model>'}: Lip(g) <= {self.bound:.6g} ({verdict})"]
        for layer in self.layers:
            shape = "x".join(str(s) for s in layer.input_shape) or "-"
            lines.append(
                f"  {layer.name:<16} {layer.kind:<16} {shape:<12} {layer.lipschitz:>10.6f}  "
                f"{layer.method}"
            )
        lines.extend(f"  {name:<16} uncertified" for name in self.uncertified)
        return "\n".join(lines)


def format_certificates(certificates: list[BlockCertificate]) -> str:
    """A table with one row per block: name, bound, verdict.

    References:
        Behrmann (thesis), *Invertibility and Domain Knowledge*, remark 4.9.

    Example:
        >>> print(format_certificates([BlockCertificate("b", (LayerBound("0", "ELU", (), 1.0,
        ...     "activation"),))]))
        block                               Lip(g) bound  contractive
        b                                       1.000000  no
    """
    lines = [f"{'block':<30} {'Lip(g) bound':>17}  contractive"]
    for cert in certificates:
        verdict = "yes" if cert.is_contractive else "no"
        lines.append(f"{cert.block or '<model>':<30} {cert.bound:>17.6f}  {verdict}")
    return "\n".join(lines)


def lipschitz_certificate(
    model: nn.Module, sample_input: Tensor, *, method: Method = "auto"
) -> list[BlockCertificate]:
    r"""Certify :math:`\mathrm{Lip}(g) < 1` for every :class:`IResBlock` in ``model``.

    Runs ``model(sample_input)`` once in evaluation mode (no power-iteration update) with
    forward hooks that record the input shape of every linear layer inside each block's
    branch, then computes each layer's exact :func:`operator_norm` on that shape. The product
    bound assumes each branch is a chain (``nn.Sequential``), which :func:`conv_branch` and
    :func:`dense_branch` are; layers that never ran are left out.

    Args:
        model: any module containing ``IResBlock`` instances (or one itself).
        sample_input: a batch the model accepts (one sample suffices).
        method: passed to :func:`operator_norm`.

    Returns:
        One :class:`BlockCertificate` per block, in module order.

    References:
        Behrmann (thesis), *Invertibility and Domain Knowledge*, eq. 4.6 and remark 4.9.

    Example:
        >>> import torch
        >>> from preimage.nn.iresblock import IResBlock, dense_branch
        >>> from preimage.nn.spectral import converge_spectral
        >>> block = IResBlock(dense_branch(3, 8, coeff=0.8), logdet="none")
        >>> _ = converge_spectral(block)  # converge the persistent power iterations first
        >>> [cert] = lipschitz_certificate(block, torch.randn(1, 3))
        >>> cert.is_contractive, cert.bound <= 0.8**3 * (1 + 1e-3)
        (True, True)
    """
    blocks = [(name, m) for name, m in model.named_modules() if isinstance(m, IResBlock)]
    shapes: dict[int, Shape] = {}

    def record(module: nn.Module, args: tuple[Tensor, ...]) -> None:
        shapes.setdefault(id(module), tuple(args[0].shape[1:]))

    handles = [
        layer.register_forward_pre_hook(record)
        for _, block in blocks
        for layer in block.g.modules()
        if isinstance(layer, _LINEAR_LAYERS)
    ]
    modes = {id(m): m.training for m in model.modules()}
    model.eval()
    try:
        with torch.no_grad():
            model(sample_input)
    finally:
        for handle in handles:
            handle.remove()
        for m in model.modules():
            m.training = modes[id(m)]

    certificates = []
    for block_name, block in blocks:
        leaves, problems = chain_modules(block.g)
        layers: list[LayerBound] = []
        uncertified = list(problems)
        for name, module in leaves:
            kind = type(module).__name__
            if isinstance(module, _LINEAR_LAYERS):
                if id(module) not in shapes:
                    continue
                shape = shapes[id(module)]
                norm, used = _measure(module, shape, method)
                layers.append(LayerBound(name, kind, shape, norm, used))
                continue
            factor = activation_lipschitz(module)
            if factor is None:
                uncertified.append(f"{name} ({kind})")
            else:
                layers.append(LayerBound(name, kind, (), factor, "activation"))
        certificates.append(BlockCertificate(block_name, tuple(layers), tuple(uncertified)))
    return certificates


def spectral_norm_ratios(
    model: nn.Module, *, method: Method = "auto", rtol: float = 1e-6
) -> dict[str, float]:
    r"""Exact :math:`\|\tilde A\|_2 / c` of every spectral layer of ``model``, as it stands.

    :math:`\tilde A` is the effective operator :math:`A / \max(1, \tilde\sigma / c)` with the
    stored power-iteration vectors and the current weight, i.e. what evaluation mode applies;
    nothing is iterated or changed. A ratio above 1 means the layer's Lipschitz constant exceeds
    its target :math:`c` (thesis remark 4.9). Convolutions not yet locked to an input size are
    left out.

    Args:
        model: any module with :class:`~preimage.nn.spectral.SpectralLinear` /
            :class:`~preimage.nn.spectral.SpectralConv2d` layers.
        method: passed to :func:`operator_norm`.
        rtol: the iterative methods' tolerance on :math:`\sigma^2` (the ratio is then exact to
            about ``rtol / 2``, far below the :math:`10^{-3}` that matters); a layer whose
            Lanczos iteration stalls on a cluster of near-equal top singular values is measured
            again at ``100 * rtol``.

    Returns:
        ``{layer name: ratio}`` in module order.

    References:
        Behrmann (thesis), *Invertibility and Domain Knowledge*, section 4.2.1 (eq. 4.9) and
        remark 4.9.

    Example:
        >>> import torch
        >>> layer = SpectralLinear(4, 4, coeff=0.5)
        >>> with torch.no_grad():
        ...     _ = layer.weight.mul_(10.0)  # the stored vectors now lag the weight
        >>> ratio = spectral_norm_ratios(torch.nn.Sequential(layer))["0"]
        >>> _ = layer.converge()
        >>> bool(ratio >= spectral_norm_ratios(torch.nn.Sequential(layer))["0"] - 1e-6)
        True
    """
    ratios = {}
    for name, layer in spectral_layers(model):
        if isinstance(layer, SpectralConv2d) and layer.input_size is None:
            continue
        try:
            norm = operator_norm(layer, method=method, rtol=rtol)
        except ConvergenceError:
            norm = operator_norm(layer, method=method, rtol=100 * rtol)
        ratios[name] = norm / layer.coeff
    return ratios


@torch.no_grad()
def realign_exact(
    layer: SpectralLinear | SpectralConv2d, *, generator: torch.Generator | None = None
) -> float:
    r"""Set a spectral layer's ``u``, ``v`` to an exact top singular pair of its operator.

    Restarted Lanczos from a random start (:func:`operator_norm`'s ``"lanczos"``, to
    :math:`10^{-10}`, or :math:`10^{-8}` when a cluster of top singular values stalls it) finds
    the largest singular value wherever it is, also along a direction the warm-started power
    iteration has lost (its component in ``v`` decays at every step while that direction is not
    the largest, and the optimiser can grow it unseen). Afterwards :math:`\tilde\sigma` equals
    :math:`\|A\|_2` up to the tolerance, so the effective norm is :math:`\min(\|A\|_2, c)`.

    Args:
        layer: the layer (a convolution must be locked to its input size).
        generator: for the random start.

    Returns:
        The raw operator norm :math:`\|A\|_2` found.

    References:
        Behrmann (thesis), *Invertibility and Domain Knowledge*, remark 4.9. Golub & Van Loan,
        *Matrix Computations*, section 10.1.

    Example:
        >>> layer = SpectralLinear(5, 3)
        >>> import torch
        >>> sigma = realign_exact(layer)
        >>> abs(sigma - float(torch.linalg.matrix_norm(layer.weight.detach(), 2))) < 1e-5
        True
    """
    raw_weight = layer.weight.detach()
    # The top pair of the raw operator; measure it, not the normalised one.
    if isinstance(layer, SpectralConv2d):
        if layer.input_size is None:
            raise ShapeError("SpectralConv2d has no input size yet: run one forward pass")
        shape: Shape = (layer.in_channels, *layer.input_size)
    else:
        shape = (layer.in_features,)
    weight64 = raw_weight.to(torch.float64)

    def apply(v: Tensor) -> Tensor:
        return layer._op(v, weight64)

    op = _Operator(apply, shape, weight64, circulant=False)
    try:
        sigma, vector = _lanczos(op, 1e-10, 20_000, generator, 64)
    except ConvergenceError:
        # A cluster of near-equal top singular values can stall the residual test at 1e-10
        # (seen once in a 6-epoch i-ResNet run, which it ended); 1e-8 on sigma^2 still puts
        # sigma~ within 1e-8 of ||A||, far inside the 1e-3 the correction is for.
        sigma, vector = _lanczos(op, 1e-8, 20_000, generator, 64)
    v = vector.reshape(1, *shape).to(raw_weight.dtype)
    layer.v.copy_(v)
    av = layer._op(v, raw_weight)
    layer.u.copy_(av / av.norm().clamp_min(torch.finfo(av.dtype).tiny ** 0.5))
    return sigma


@dataclass
class NormCheck:
    r"""What :class:`SpectralNormMonitor` measured during one epoch.

    Attributes:
        epoch: the epoch (from 1).
        max_ratio: largest exact :math:`\|\tilde A\|_2 / c` over layers and checks, measured
            before any correction.
        worst_layer: the layer where it occurred.
        checks: how many times the model was measured.
        corrections: layers re-aligned by :func:`realign_exact` because they exceeded the
            tolerance.
        end_ratios: every layer's ratio at the end of the epoch.
    """

    epoch: int
    max_ratio: float = 0.0
    worst_layer: str = ""
    checks: int = 0
    corrections: int = 0
    end_ratios: dict[str, float] = field(default_factory=dict)


class SpectralNormMonitor(Callback):
    r"""Measure the exact operator norms of a model's spectral layers as training leaves them.

    Every ``check_every`` optimisation steps and at the end of every epoch it first re-aligns
    the layers that track their weights (:func:`~preimage.nn.spectral.track_spectral`, what the
    next training forward pass would do first), then computes each layer's exact
    :math:`\|\tilde A\|_2 / c` (:func:`spectral_norm_ratios`): the ratio of the operator the
    next training step applies to its target. Per epoch the largest ratio goes into the
    trainer's history (``max_norm_ratio``, with ``norm_checks`` and ``norm_corrections``) and
    into :attr:`epochs`. With ``correct``, a layer above :math:`1 + \text{tolerance}` is
    re-aligned with :func:`realign_exact` after it was recorded, so the record shows how far the
    trained layers were, not how far they were after the fix.

    Args:
        check_every: steps between checks (``None``: only at the end of each epoch).
        tolerance: relative excess of the norm over :math:`c` that triggers a correction.
        correct: re-align the layers that exceed the tolerance.
        method: passed to :func:`operator_norm`.

    Attributes:
        epochs: one :class:`NormCheck` per finished epoch.

    References:
        Behrmann (thesis), *Invertibility and Domain Knowledge*, section 4.2.1 (eq. 4.9, and
        "either an appropriate number of iterations or an adaptive version with a given
        tolerance needs to be used") and remark 4.9 (checking the norms exactly).

    Example:
        >>> import torch
        >>> from preimage.models.residual import ResidualClassifier
        >>> from preimage.train import TrainConfig, Trainer
        >>> net = ResidualClassifier((1, 4, 4), n_blocks=1, hidden=4, coeff=0.9)
        >>> monitor = SpectralNormMonitor(check_every=2)
        >>> data = (torch.rand(16, 1, 4, 4), torch.randint(0, 10, (16,)))
        >>> _ = Trainer(net, data, None, TrainConfig(epochs=1, batch_size=4, device="cpu",
        ...             max_shift=0, dequantize=False), callbacks=[monitor], progress=False).fit()
        >>> check = monitor.epochs[0]
        >>> check.checks, len(check.end_ratios), check.max_ratio >= max(check.end_ratios.values())
        (2, 3, True)
    """

    def __init__(
        self,
        *,
        check_every: int | None = 50,
        tolerance: float = 1e-3,
        correct: bool = True,
        method: Method = "auto",
    ) -> None:
        if check_every is not None and check_every < 1:
            raise ConfigError(f"check_every must be >= 1 or None, got {check_every}")
        if tolerance < 0:
            raise ConfigError(f"tolerance must be non-negative, got {tolerance}")
        self.check_every = check_every
        self.tolerance = float(tolerance)
        self.correct = correct
        self.method: Method = method
        self.epochs: list[NormCheck] = []
        self._current = NormCheck(epoch=1)
        self._last: tuple[int, dict[str, float]] | None = None

    def check(self, model: nn.Module) -> dict[str, float]:
        """Measure ``model`` now (and correct it); returns the ratios before correction."""
        track_spectral(model)
        ratios = spectral_norm_ratios(model, method=self.method)
        current = self._current
        current.checks += 1
        for name, ratio in ratios.items():
            if ratio > current.max_ratio:
                current.max_ratio, current.worst_layer = ratio, name
        if self.correct:
            layers = dict(spectral_layers(model))
            for name, ratio in ratios.items():
                if ratio > 1.0 + self.tolerance:
                    realign_exact(layers[name])
                    current.corrections += 1
        return ratios

    def on_train_start(self, trainer: Trainer) -> None:
        self.epochs, self._last = [], None

    def on_epoch_start(self, trainer: Trainer, epoch: int) -> None:
        self._current = NormCheck(epoch=epoch)

    def on_batch_end(self, trainer: Trainer, step: int, metrics: dict[str, float]) -> None:
        if self.check_every is not None and step % self.check_every == 0:
            self._last = (step, self.check(trainer.model))

    def on_epoch_end(self, trainer: Trainer, epoch: int, metrics: dict[str, Any]) -> None:
        current = self._current
        if self._last is not None and self._last[0] == trainer.global_step:
            current.end_ratios = self._last[1]  # the last step was just checked
        else:
            current.end_ratios = self.check(trainer.model)
        self.epochs.append(current)
        if trainer.history:
            trainer.history[-1].update(
                max_norm_ratio=current.max_ratio,
                norm_checks=current.checks,
                norm_corrections=current.corrections,
            )
