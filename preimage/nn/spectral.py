r"""Spectral normalisation of the operator a layer applies, not of its reshaped weight.

A linear layer :math:`A` is rescaled to :math:`\tilde A = A / \max(1, \tilde\sigma / c)`
(thesis eq. 4.9), where :math:`\tilde\sigma \le \|A\|_2` is a power-iteration estimate of the
spectral norm of the *operator* and :math:`c < 1` the target coefficient. For a convolution the
operator acts on whole feature maps, so the power iteration runs on the convolution itself
(with the layer's stride and padding) and on its adjoint (a transposed convolution with the
matching ``output_padding``, Gouk et al. 2018). Bounding the reshaped
:math:`C_\text{out} \times C_\text{in} k^2` weight instead, as ``torch.nn.utils.spectral_norm``
does, misses the :math:`\sqrt{n}` factor of Tsuzuku et al. (2018) (thesis eq. 4.8) and does not
make the layer contractive.

**Tracking the moving weights.** The thesis takes one power step per training step with the
vectors kept between steps, which is enough when the weights move slowly. With Adam at the
learning rates of the MNIST classifier a single step changes a layer's top singular direction
so much that the estimate lags: the exact norms of the trained layers sat percents above c
(BENCHMARKS.md, ``iresnet-mnist-classify``). The thesis asks for "either an appropriate number
of iterations or an adaptive version with a given tolerance" (section 4.2.1); plain power
steps, or an adaptive rule that stops on a small change, do not get there (the change is
small exactly when the new top direction has a small component in the stored vector).
Optionally (``krylov > 0``) every
training forward pass therefore first re-aligns the stored vectors by a few Lanczos steps
(:meth:`SpectralLinear.track`), which separate near-equal singular values at the Chebyshev
rate instead of the power rate, then takes the usual power step(s). The normalisation itself,
eq. 4.9 with an estimate from below and its gradient (Miyato et al.), is unchanged; the
default ``krylov=0`` is the thesis' method. The exact norms during training are measured by
:class:`~preimage.analysis.operator_norm.SpectralNormMonitor`.

References:
    Behrmann (thesis), *Invertibility and Domain Knowledge*, section 4.2.1, equations 4.6-4.9 and
    remark 4.9.
    Gouk, Frank, Pfahringer, Cree (2018), *Regularisation of Neural Networks by Enforcing
    Lipschitz Continuity* (power iteration on the convolution operator and its transpose).
    Miyato, Kataoka, Koyama, Yoshida (2018), *Spectral Normalization for GANs*, algorithm 1.
    Golub & Van Loan, *Matrix Computations*, section 10.1 (Lanczos, its convergence).
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from typing import Any, Literal, NamedTuple, TypedDict

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from typing_extensions import Unpack

from preimage.errors import ConfigError, ShapeError

__all__ = [
    "PaddingMode",
    "PowerIterationOptions",
    "SpectralConv2d",
    "SpectralLinear",
    "conv2d_adjoint",
    "conv2d_operator",
    "converge_spectral",
    "spectral_layers",
    "track_spectral",
]

PaddingMode = Literal["zeros", "circular"]


class PowerIterationOptions(TypedDict, total=False):
    """The keyword options that :class:`SpectralLinear` and :class:`SpectralConv2d` pass on to
    their shared power iteration, which holds the defaults and checks the values once
    (``coeff=0.9``, ``n_power_iterations=1``, no ``atol``/``rtol``,
    ``max_power_iterations=100``, ``krylov=0``; their meaning: :class:`SpectralLinear`)."""

    coeff: float
    n_power_iterations: int
    atol: float | None
    rtol: float | None
    max_power_iterations: int
    krylov: int


_WARMUP_ITERATIONS = 15
_WARMUP_RTOL = 1e-4


def conv2d_operator(
    x: Tensor,
    weight: Tensor,
    bias: Tensor | None = None,
    *,
    stride: int,
    padding: int,
    padding_mode: PaddingMode,
) -> Tensor:
    r"""Apply a 2-D convolution: its linear part :math:`A x`, plus ``bias`` if given.

    Args:
        x: batch ``(B, C_in, H, W)``.
        weight: kernel ``(C_out, C_in, k, k)``.
        bias: optional per-channel bias ``(C_out,)``.
        stride: the convolution stride.
        padding: symmetric padding on every side.
        padding_mode: ``"zeros"`` or ``"circular"`` (periodic boundary).

    Returns:
        The feature maps ``(B, C_out, H', W')``.

    References:
        Behrmann (thesis), *Invertibility and Domain Knowledge*, section 2.2.2 and 4.2.1.

    Example:
        >>> import torch
        >>> w = torch.randn(2, 3, 3, 3)
        >>> conv2d_operator(torch.randn(1, 3, 5, 5), w, stride=2, padding=1,
        ...                 padding_mode="zeros").shape
        torch.Size([1, 2, 3, 3])
    """
    if padding_mode == "circular":
        if padding > 0:
            x = F.pad(x, (padding,) * 4, mode="circular")
        return F.conv2d(x, weight, bias, stride=stride)
    return F.conv2d(x, weight, bias, stride=stride, padding=padding)


def conv2d_adjoint(
    y: Tensor,
    weight: Tensor,
    *,
    stride: int,
    padding: int,
    padding_mode: PaddingMode,
    input_size: tuple[int, int],
) -> Tensor:
    r"""Apply the adjoint :math:`A^\top y` of :func:`conv2d_operator` on inputs of ``input_size``.

    A strided convolution maps several input sizes to the same output size, so the transposed
    convolution needs ``output_padding`` to land on the right one. For circular padding the
    transposed convolution lands on the padded canvas and the wrapped borders are folded back
    (the adjoint of periodic padding adds them to the opposite side). With stride 1 and zero
    padding :math:`p < k` the adjoint is also the convolution with the spatially flipped,
    channel-swapped kernel and padding :math:`k - 1 - p`, which is what runs then: the same
    map, but on a CPU torch sends single-image transposed convolutions (each power or Lanczos
    step) through a slower path (BENCHMARKS.md, ``iresnet-mnist-classify`` timing).

    Args:
        y: batch ``(B, C_out, H', W')`` in the output space.
        weight: kernel ``(C_out, C_in, k, k)``.
        stride: the convolution stride.
        padding: symmetric padding on every side.
        padding_mode: ``"zeros"`` or ``"circular"``.
        input_size: spatial size ``(H, W)`` of the operator's input.

    Returns:
        The batch ``(B, C_in, H, W)`` with
        :math:`\langle A x, y\rangle = \langle x, A^\top y\rangle`.

    References:
        Gouk et al. (2018), *Regularisation of Neural Networks by Enforcing Lipschitz
        Continuity*, section 3.

    Example:
        >>> import torch
        >>> w, x = torch.randn(2, 3, 3, 3, dtype=torch.float64), torch.randn(1, 3, 6, 6).double()
        >>> kw = dict(stride=2, padding=1, padding_mode="circular")
        >>> y = torch.randn_like(conv2d_operator(x, w, **kw))
        >>> lhs = (conv2d_operator(x, w, **kw) * y).sum()
        >>> rhs = (x * conv2d_adjoint(y, w, input_size=(6, 6), **kw)).sum()
        >>> bool(torch.isclose(lhs, rhs))
        True
    """
    h, w = input_size
    k_h, k_w = weight.shape[-2:]
    if padding_mode == "circular":
        canvas = (h + 2 * padding, w + 2 * padding)
        out_pad = (
            canvas[0] - ((y.shape[-2] - 1) * stride + k_h),
            canvas[1] - ((y.shape[-1] - 1) * stride + k_w),
        )
        z = F.conv_transpose2d(y, weight, stride=stride, output_padding=out_pad)
        return _fold_circular(z, padding, h, w) if padding > 0 else z
    out_pad = (
        h - ((y.shape[-2] - 1) * stride - 2 * padding + k_h),
        w - ((y.shape[-1] - 1) * stride - 2 * padding + k_w),
    )
    as_convolution = _adjoint_kernel(weight, stride=stride, padding=padding)
    if as_convolution is not None:
        return F.conv2d(y, as_convolution[0], padding=as_convolution[1])
    return F.conv_transpose2d(y, weight, stride=stride, padding=padding, output_padding=out_pad)


def _adjoint_kernel(
    weight: Tensor, *, stride: int, padding: int
) -> tuple[Tensor, tuple[int, int]] | None:
    """Kernel and padding of the zero-padded adjoint as a convolution, where it is one."""
    k_h, k_w = weight.shape[-2:]
    if stride != 1 or padding >= min(k_h, k_w):
        return None
    # The same map as a convolution with the flipped, channel-swapped kernel: on a CPU torch
    # runs single-image transposed convolutions through a slow im2col path, several times
    # slower than the convolution (the power and Lanczos steps are single images).
    return weight.flip(-2, -1).transpose(0, 1), (k_h - 1 - padding, k_w - 1 - padding)


def _fold_circular(z: Tensor, p: int, h: int, w: int) -> Tensor:
    """Adjoint of ``F.pad(x, (p, p, p, p), mode="circular")``: add the halo to the far side."""
    z = z.clone()
    z[..., p : 2 * p, :] += z[..., h + p :, :]
    z[..., h : h + p, :] += z[..., :p, :]
    z = z[..., p : h + p, :]
    z[..., p : 2 * p] += z[..., w + p :]
    z[..., w : w + p] += z[..., :p]
    return z[..., p : w + p].contiguous()


def _normalize(t: Tensor) -> Tensor:
    return t / t.norm().clamp_min(torch.finfo(t.dtype).tiny ** 0.5)


def _normalize_rows(t: Tensor) -> Tensor:
    return t / t.norm(dim=-1, keepdim=True).clamp_min(torch.finfo(t.dtype).tiny ** 0.5)


def _top_ritz_vectors(gram: Callable[[Tensor], Tensor], starts: Tensor, steps: int) -> Tensor:
    r"""Unit top Ritz vectors of ``G`` positive semi-definite maps, one Lanczos run each.

    ``gram`` maps a ``(G, n)`` batch (row :math:`i` for map :math:`M_i`) to its images; row
    :math:`i` of the result is the top Ritz vector of :math:`M_i` on
    :math:`\mathcal K_k(M_i, s_i)`, :math:`k` = ``steps``, :math:`s_i` = row :math:`i` of
    ``starts``. The basis is re-orthogonalised twice per step, and the projected matrix
    :math:`Q^\top M Q` is formed from the products themselves, so a loss of orthogonality
    cannot inflate it.
    """
    g, n = starts.shape
    # One preallocated basis: stacking a growing list would copy it at every step.
    basis = starts.new_empty(g, steps, n)
    products = torch.empty_like(basis)
    basis[:, 0] = _normalize_rows(starts)
    for j in range(steps):
        z = gram(basis[:, j])
        products[:, j] = z
        if j == steps - 1:
            break
        # Matrix-vector products per run: batched products on these slices are several times
        # slower on a CPU.
        for i in range(g):
            q, y = basis[i, : j + 1], z[i]
            for _ in range(2):
                y = y - q.T @ (q @ y)
            basis[i, j + 1] = _normalize(y)
    projected = (basis @ products.mT).double()
    _, vectors = torch.linalg.eigh((projected + projected.mT) / 2)
    top = vectors[..., -1:].mT.to(basis.dtype)
    return _normalize_rows((top @ basis)[:, 0])


class _ConvGram(NamedTuple):
    """The Gram map of a re-alignment as two convolutions, to batch same-shaped layers.

    ``first`` then ``second`` (kernels with their paddings) is :math:`A^\top A` on the input
    side or, with ``on_output``, :math:`A A^\top` on the (smaller) output side.
    """

    first: Tensor
    first_padding: tuple[int, int]
    second: Tensor
    second_padding: tuple[int, int]
    on_output: bool

    def key(self, start: Tensor) -> tuple[Any, ...]:
        """Layers with equal keys can share one grouped convolution per Lanczos step."""
        return (
            tuple(self.first.shape),
            self.first_padding,
            tuple(self.second.shape),
            self.second_padding,
            tuple(start.shape),
            start.dtype,
            start.device,
        )


def _track_convolutions(items: Sequence[tuple[SpectralConv2d, _ConvGram]], steps: int) -> None:
    """:meth:`SpectralConv2d.track` of same-keyed layers, their products as grouped convolutions.

    A grouped convolution of ``G`` single images costs far less than ``G`` separate ones on a
    CPU (BENCHMARKS.md, ``iresnet-mnist-classify`` timing), and the Lanczos runs stay
    independent: group :math:`i` sees only layer :math:`i`'s kernels.
    """
    plan = items[0][1]
    groups = len(items)
    starts = torch.cat([layer._gram_start(p) for layer, p in items], dim=1)
    first = torch.cat([p.first for _, p in items])
    second = torch.cat([p.second for _, p in items])

    def gram(x: Tensor) -> Tensor:
        y = F.conv2d(x.reshape(starts.shape), first, padding=plan.first_padding, groups=groups)
        y = F.conv2d(y, second, padding=plan.second_padding, groups=groups)
        return y.reshape(groups, -1)

    ritz = _top_ritz_vectors(gram, starts.reshape(groups, -1), steps)
    for (layer, p), vector in zip(items, ritz, strict=True):
        layer._finish_track(vector.reshape(layer._gram_start(p).shape), p.on_output)


class _SpectralBase(nn.Module, ABC):
    """Power iteration on ``_op``/``_op_adjoint`` and the soft rescaling of eq. 4.9."""

    weight: nn.Parameter
    u: Tensor
    v: Tensor

    def __init__(
        self,
        *,
        coeff: float = 0.9,
        n_power_iterations: int = 1,
        atol: float | None = None,
        rtol: float | None = None,
        max_power_iterations: int = 100,
        krylov: int = 0,
    ) -> None:
        super().__init__()
        if not coeff > 0:
            raise ConfigError(f"coeff must be positive, got {coeff}")
        if n_power_iterations < 1:
            raise ConfigError(f"n_power_iterations must be >= 1, got {n_power_iterations}")
        if max_power_iterations < n_power_iterations:
            raise ConfigError(
                f"max_power_iterations ({max_power_iterations}) must be >= "
                f"n_power_iterations ({n_power_iterations})"
            )
        for name, tol in (("atol", atol), ("rtol", rtol)):
            if tol is not None and tol < 0:
                raise ConfigError(f"{name} must be non-negative, got {tol}")
        if krylov < 0:
            raise ConfigError(f"krylov must be >= 0, got {krylov}")
        self.coeff = float(coeff)
        self.krylov = int(krylov)
        self.n_power_iterations = int(n_power_iterations)
        self.atol = atol
        self.rtol = rtol
        self.max_power_iterations = int(max_power_iterations)
        # The weight version the stored pair was last re-aligned to (see ``track``).
        self._tracked_at: tuple[int, int] | None = None

    @abstractmethod
    def _op(self, v: Tensor, weight: Tensor) -> Tensor:
        """The linear operator the layer applies (without bias)."""

    @abstractmethod
    def _op_adjoint(self, u: Tensor, weight: Tensor) -> Tensor:
        """Its adjoint, for the power iteration."""

    def _initialised(self) -> bool:
        return self.v.numel() > 0

    def _top_right_vector(self, weight: Tensor) -> Tensor | None:
        """An exact top right singular vector of the operator where one is cheap, else None."""
        return None

    def _init_vectors(self, in_shape: tuple[int, ...]) -> None:
        """Draw random unit ``u``, ``v`` and converge them once, so training starts calibrated."""
        # Buffers born under inference mode could never be updated in training afterwards.
        with torch.inference_mode(False), torch.no_grad():
            w = self.weight
            v = _normalize(torch.randn(1, *in_shape, device=w.device, dtype=w.dtype))
            self.v = v
            self.u = _normalize(self._op(v, w))
            self.converge(_WARMUP_ITERATIONS, rtol=_WARMUP_RTOL)

    @torch.no_grad()
    def converge(self, max_iterations: int = 500, *, rtol: float = 1e-7) -> Tensor:
        r"""Power-iterate until :math:`|\sigma_k - \sigma_{k-1}| \le \text{rtol}\,\sigma_k`.

        Updates ``u`` and ``v`` whatever the training mode: use it after loading or editing
        weights, or before checking a trained model.

        Args:
            max_iterations: upper limit on the number of iterations.
            rtol: relative tolerance on the change of :math:`\sigma`.

        Returns:
            The converged estimate :math:`\tilde\sigma` of the raw operator norm.
        """
        u, v, _ = self._iterate(self.u, self.v, self.weight, max_iterations, 1, 0.0, rtol)
        self.u.copy_(u)
        self.v.copy_(v)
        return self.sigma

    @torch.no_grad()
    def track(self, steps: int) -> Tensor:
        r"""Re-align ``u``, ``v`` with the current weight by ``steps`` Lanczos steps.

        Builds the Krylov space of the smaller Gram matrix, :math:`\mathcal K_k(A^\top A, v)`
        or, when the output is smaller than the input, :math:`\mathcal K_k(A A^\top, u)`
        (:math:`k` = ``steps``), with the stored vector as start, and moves ``v`` to the top
        Ritz vector (or :math:`A^\top` of it, normalised) and ``u`` to :math:`A v / \|A v\|`.
        The basis is re-orthogonalised twice per step and the projected matrix
        :math:`Q^\top M Q` is formed from the products themselves, so a loss of orthogonality
        cannot inflate it (one pass lost up to :math:`4 \cdot 10^{-4}` of the norm in float32,
        BENCHMARKS.md). The smaller side makes the same Krylov space for :math:`u = A v /
        \|A v\|` (:math:`\mathcal K_k(A A^\top, A v) = A\,\mathcal K_k(A^\top A, v)`) with
        shorter vectors, and its Ritz value is never smaller. The Ritz value is a lower bound on
        :math:`\|A\|_2^2`, like the power iteration's, but it converges far faster when the
        weights moved: after one optimiser step the new top direction is a mixture of several
        near-top singular vectors, which :math:`k` power steps separate at the rate
        :math:`(\sigma_2/\sigma_1)^{2k}` and :math:`k` Lanczos steps at the Chebyshev rate
        (Golub & Van Loan, section 10.1). Updates the buffers in any mode; costs ``steps``
        products with the Gram matrix. A training forward pass re-aligns only if the weight
        changed since the last re-alignment (its storage or version counter differs), so
        :func:`track_spectral` can do all layers at once first. A 1x1 convolution without
        padding or stride is :math:`W \otimes I`, whose top singular pair comes exactly from
        the SVD of the :math:`C_\text{out} \times C_\text{in}` matrix instead.

        Args:
            steps: Krylov dimension (products with the Gram matrix), at least 1.

        Returns:
            The new estimate :math:`\tilde\sigma = u^\top A v` of the raw operator norm.

        References:
            Golub & Van Loan, *Matrix Computations*, sections 10.1 (Lanczos) and 8.1
            (Rayleigh-Ritz). Behrmann (thesis), section 4.2.1 (the estimate from below that
            eq. 4.9 divides by).
        """
        self._require_initialised()
        if steps < 1:
            raise ConfigError(f"track needs steps >= 1, got {steps}")
        w = self.weight.detach()
        exact = self._top_right_vector(w)
        if exact is not None:
            self._finish_track(exact, on_output=False)
            return self.sigma
        plan = self._conv_gram(w)
        if plan is not None:
            _track_convolutions([(self, plan)], steps)  # type: ignore[list-item]
            return self.sigma
        on_output = self.u.numel() < self.v.numel()
        if on_output:
            start, shape = self.u, self.u.shape

            def gram(y: Tensor) -> Tensor:
                return self._op(self._op_adjoint(y.reshape(shape), w), w).reshape(1, -1)
        else:
            start, shape = self.v, self.v.shape

            def gram(y: Tensor) -> Tensor:
                return self._op_adjoint(self._op(y.reshape(shape), w), w).reshape(1, -1)

        ritz = _top_ritz_vectors(gram, start.reshape(1, -1), steps)
        self._finish_track(ritz.reshape(shape), on_output)
        return self.sigma

    def _conv_gram(self, weight: Tensor) -> _ConvGram | None:
        """The Gram map as two convolutions where it is one (see :class:`_ConvGram`)."""
        return None

    def _gram_start(self, plan: _ConvGram) -> Tensor:
        return self.u if plan.on_output else self.v

    def _finish_track(self, ritz: Tensor, on_output: bool) -> None:
        """Store the re-aligned pair from the top Ritz vector of the tracked side."""
        w = self.weight.detach()
        v = _normalize(self._op_adjoint(ritz, w)) if on_output else ritz
        self.v.copy_(v)
        self.u.copy_(_normalize(self._op(v, w)))
        self._tracked_at = self._weight_version()

    def _weight_version(self) -> tuple[int, int]:
        # In-place updates (optimiser steps, load_state_dict) bump the version counter; a new
        # tensor has a new storage.
        return (self.weight.data_ptr(), self.weight._version)

    def _tracked_current(self) -> bool:
        """Whether the stored pair was re-aligned to the weight as it is now."""
        return self._tracked_at == self._weight_version()

    def _iterate(
        self,
        u: Tensor,
        v: Tensor,
        weight: Tensor,
        max_iterations: int,
        min_iterations: int,
        atol: float | None,
        rtol: float | None,
    ) -> tuple[Tensor, Tensor, Tensor]:
        """Power iteration; returns the new ``u``, ``v`` and :math:`\\sigma = u^\\top A v`.

        :math:`\\sigma` keeps its graph to ``weight`` (one extra product, on a single vector)
        when gradient mode is on. With both tolerances ``None`` exactly ``min_iterations`` steps
        run; otherwise it stops at the first step ``k >= min_iterations`` with
        ``|s_k - s_{k-1}| <= atol + rtol * s_k``.
        """
        adaptive = atol is not None or rtol is not None
        a_tol, r_tol = atol or 0.0, rtol or 0.0
        steps = max(1, max_iterations if adaptive else min_iterations)
        previous = None
        with torch.no_grad():
            w_const = weight.detach()
            for step in range(1, steps + 1):
                v = _normalize(self._op_adjoint(u, w_const))
                av = self._op(v, w_const)
                u = _normalize(av)
                if not adaptive:
                    continue
                sigma = float(av.norm())
                if (
                    step >= min_iterations
                    and previous is not None
                    and abs(sigma - previous) <= a_tol + r_tol * sigma
                ):
                    break
                previous = sigma
        if torch.is_grad_enabled() and weight.requires_grad:
            av = self._op(v, weight)
        return u, v, (u * av).sum()

    def normalized_weight(self) -> Tensor:
        r"""The effective weight :math:`W / \max(1, \tilde\sigma / c)`; leaves ``u``, ``v`` alone.

        :math:`\tilde\sigma = u^\top A v` uses the stored vectors and the current weight, which
        is what evaluation mode applies. Differentiable w.r.t. the weight.
        """
        self._require_initialised()
        sigma = (self.u.clone() * self._op(self.v.clone(), self.weight)).sum()
        return self.weight / torch.clamp(sigma / self.coeff, min=1.0)

    def _effective_weight(self) -> Tensor:
        if not self.training:
            return self.normalized_weight()
        if self.krylov > 0 and not self._tracked_current():
            self.track(self.krylov)
        u, v, sigma = self._iterate(
            self.u,
            self.v,
            self.weight,
            self.max_power_iterations,
            self.n_power_iterations,
            self.atol,
            self.rtol,
        )
        with torch.no_grad():
            self.u.copy_(u)
            self.v.copy_(v)
        return self.weight / torch.clamp(sigma / self.coeff, min=1.0)

    def _require_initialised(self) -> None:
        if not self._initialised():
            raise ShapeError(
                f"{type(self).__name__} has no input size yet: run one forward pass or pass "
                "input_shape= to the constructor"
            )

    @property
    def sigma(self) -> Tensor:
        r"""Current estimate :math:`\tilde\sigma = u^\top A v \le \|A\|_2` of the raw norm."""
        self._require_initialised()
        with torch.no_grad():
            return (self.u * self._op(self.v, self.weight)).sum()

    @property
    def lipschitz(self) -> float:
        r"""Target bound :math:`c` on the operator norm of the effective weight.

        :math:`\tilde\sigma` only approaches :math:`\|A\|_2` from below, so the effective norm
        :math:`\|A\|_2 / \max(1, \tilde\sigma / c)` is at most :math:`c` once the power iteration
        has converged; :func:`preimage.analysis.operator_norm.operator_norm` checks it exactly.
        """
        return self.coeff

    def _load_from_state_dict(
        self,
        state_dict: dict[str, Any],
        prefix: str,
        local_metadata: dict[str, Any],
        strict: bool,
        missing_keys: list[str],
        unexpected_keys: list[str],
        error_msgs: list[str],
    ) -> None:
        # A layer that locks its input size lazily must accept vectors of the saved size.
        for name in ("u", "v"):
            saved = state_dict.get(prefix + name)
            if isinstance(saved, Tensor) and saved.shape != getattr(self, name).shape:
                setattr(
                    self,
                    name,
                    torch.zeros(saved.shape, device=self.weight.device, dtype=self.weight.dtype),
                )
        super()._load_from_state_dict(
            state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs
        )


class SpectralLinear(_SpectralBase):
    r"""Fully connected layer whose effective weight has spectral norm at most ``coeff``.

    :math:`y = \tilde W x + b` with :math:`\tilde W = W / \max(1, \tilde\sigma / c)` (thesis
    eq. 4.9, the "soft" normalisation that leaves already-small weights alone) and
    :math:`\tilde\sigma = u^\top W v` from a power iteration on :math:`W` and :math:`W^\top`.

    In training mode every forward pass runs ``n_power_iterations`` steps, updates the persistent
    ``u``/``v`` buffers and back-propagates through :math:`\tilde\sigma` (Miyato et al. 2018). If
    ``atol`` or ``rtol`` is set it instead keeps iterating (at least ``n_power_iterations``, at
    most ``max_power_iterations`` steps) until
    :math:`|\tilde\sigma_k - \tilde\sigma_{k-1}| \le \mathrm{atol} + \mathrm{rtol}\,\tilde\sigma_k`,
    i.e. ``rtol`` is relative to :math:`\tilde\sigma` and ``atol`` is absolute, as in
    :func:`torch.isclose`. With ``krylov > 0`` the buffers are first re-aligned with the current
    weight by that many Lanczos steps (:meth:`track`, no gradient). In evaluation mode the
    buffers are never changed, so the output is a deterministic function of the weights and
    buffers. The buffers are converged once at construction (15 steps, as torch does).

    Args:
        in_features: input size.
        out_features: output size.
        coeff: target spectral norm :math:`c`.
        n_power_iterations: power-iteration steps per training forward pass.
        atol: absolute tolerance on :math:`\tilde\sigma` (enables the adaptive mode).
        rtol: relative tolerance on :math:`\tilde\sigma` (enables the adaptive mode).
        bias: learn an additive bias.
        max_power_iterations: cap of the adaptive mode.
        krylov: if positive, every training forward pass first re-aligns ``u``, ``v`` with
            :meth:`track` (that many Lanczos steps), then runs the power iteration.

    References:
        Behrmann (thesis), *Invertibility and Domain Knowledge*, section 4.2.1, eq. 4.9.

    Example:
        >>> import torch
        >>> layer = SpectralLinear(6, 4, coeff=0.5)
        >>> with torch.no_grad():
        ...     _ = layer.weight.mul_(10.0)
        ...     _ = layer.converge()
        >>> float(torch.linalg.matrix_norm(layer.normalized_weight().detach(), 2)) <= 0.5 + 1e-5
        True
        >>> layer(torch.randn(3, 6)).shape
        torch.Size([3, 4])
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        *,
        bias: bool = True,
        **power: Unpack[PowerIterationOptions],
    ) -> None:
        super().__init__(**power)
        if in_features < 1 or out_features < 1:
            raise ConfigError(
                f"SpectralLinear needs positive sizes, got ({in_features}, {out_features})"
            )
        self.in_features = int(in_features)
        self.out_features = int(out_features)
        self.weight = nn.Parameter(torch.empty(out_features, in_features))
        self.bias = nn.Parameter(torch.empty(out_features)) if bias else None
        self.register_buffer("u", torch.empty(0))
        self.register_buffer("v", torch.empty(0))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Initialise like :class:`torch.nn.Linear`, then converge the power iteration."""
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        if self.bias is not None:
            bound = 1.0 / math.sqrt(self.in_features)
            nn.init.uniform_(self.bias, -bound, bound)
        self._init_vectors((self.in_features,))

    def _op(self, v: Tensor, weight: Tensor) -> Tensor:
        return F.linear(v, weight)

    def _op_adjoint(self, u: Tensor, weight: Tensor) -> Tensor:
        return u @ weight

    def forward(self, x: Tensor) -> Tensor:
        if x.shape[-1] != self.in_features:
            raise ShapeError(
                f"SpectralLinear({self.in_features}, {self.out_features}) got inputs of shape "
                f"{tuple(x.shape)}"
            )
        return F.linear(x, self._effective_weight(), self.bias)

    def extra_repr(self) -> str:
        return (
            f"{self.in_features}, {self.out_features}, coeff={self.coeff}, "
            f"n_power_iterations={self.n_power_iterations}, bias={self.bias is not None}"
        )


class SpectralConv2d(_SpectralBase):
    r"""2-D convolution whose *operator* norm is at most ``coeff`` on its input size.

    The convolution is a linear operator :math:`A` on :math:`\mathbb{R}^{C_\text{in} H W}`; its
    norm depends on the kernel, stride, padding and the input size :math:`H \times W`. The
    power iteration therefore runs on :func:`conv2d_operator` and :func:`conv2d_adjoint` with
    the layer's own stride and padding, and ``v`` has the input's shape ``(1, C_in, H, W)``.
    The input size is locked by ``input_shape`` or by the first forward pass (which then also
    warms the buffers up with 15 steps); a later input of another size raises
    :class:`~preimage.errors.ShapeError`, because the bound was computed for the locked size.
    A ``state_dict`` of a locked layer loads into a fresh one and locks it to the saved size.

    Normalisation, update rule and tolerances are those of :class:`SpectralLinear`:
    :math:`\tilde W = W / \max(1, \tilde\sigma / c)`, ``u``/``v`` change only in training mode.

    Args:
        in_channels: input channels.
        out_channels: output channels.
        kernel_size: square kernel size.
        stride: convolution stride.
        padding: symmetric padding, or ``"same"`` (stride 1, odd kernel) to keep the size.
        padding_mode: ``"zeros"`` or ``"circular"``.
        coeff: target operator norm :math:`c`.
        n_power_iterations: power-iteration steps per training forward pass.
        atol: absolute tolerance on :math:`\tilde\sigma` (enables the adaptive mode).
        rtol: relative tolerance on :math:`\tilde\sigma` (enables the adaptive mode).
        bias: learn a per-channel bias.
        input_shape: ``(H, W)`` or ``(C_in, H, W)`` to lock the input size at construction.
        max_power_iterations: cap of the adaptive mode.
        krylov: if positive, every training forward pass first re-aligns ``u``, ``v`` with
            :meth:`track` (that many Lanczos steps), then runs the power iteration.

    References:
        Behrmann (thesis), *Invertibility and Domain Knowledge*, section 4.2.1, eqs. 4.8-4.9.
        Gouk et al. (2018), *Regularisation of Neural Networks by Enforcing Lipschitz
        Continuity*, section 3 (power iteration with the transposed convolution).

    Example:
        >>> import torch
        >>> conv = SpectralConv2d(2, 3, 3, padding=1, coeff=0.7, input_shape=(5, 5))
        >>> with torch.no_grad():
        ...     _ = conv.weight.mul_(10.0)
        ...     sigma = conv.converge()
        >>> conv(torch.randn(4, 2, 5, 5)).shape
        torch.Size([4, 3, 5, 5])
        >>> bool(sigma > 0.7)
        True
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        *,
        stride: int = 1,
        padding: int | Literal["same"] = 0,
        padding_mode: PaddingMode = "zeros",
        bias: bool = True,
        input_shape: tuple[int, ...] | None = None,
        **power: Unpack[PowerIterationOptions],
    ) -> None:
        super().__init__(**power)
        if min(in_channels, out_channels, kernel_size, stride) < 1:
            raise ConfigError(
                "SpectralConv2d needs positive channels, kernel size and stride, got "
                f"({in_channels}, {out_channels}, {kernel_size}, stride={stride})"
            )
        if padding_mode not in ("zeros", "circular"):
            raise ConfigError(f"padding_mode must be 'zeros' or 'circular', got {padding_mode!r}")
        if padding == "same":
            if stride != 1 or kernel_size % 2 == 0:
                raise ConfigError(
                    "padding='same' needs stride 1 and an odd kernel size, got "
                    f"stride={stride}, kernel_size={kernel_size}"
                )
            padding = kernel_size // 2
        if not isinstance(padding, int) or padding < 0:
            raise ConfigError(f"padding must be a non-negative int or 'same', got {padding!r}")
        self.in_channels = int(in_channels)
        self.out_channels = int(out_channels)
        self.kernel_size = int(kernel_size)
        self.stride = int(stride)
        self.padding = int(padding)
        self.padding_mode: PaddingMode = padding_mode
        self.weight = nn.Parameter(torch.empty(out_channels, in_channels, kernel_size, kernel_size))
        self.bias = nn.Parameter(torch.empty(out_channels)) if bias else None
        self.register_buffer("u", torch.empty(0))
        self.register_buffer("v", torch.empty(0))
        self._reset_weights()
        if input_shape is not None:
            self._init_vectors((self.in_channels, *self._spatial(input_shape)))

    def _spatial(self, input_shape: tuple[int, ...]) -> tuple[int, int]:
        shape = tuple(int(s) for s in input_shape)
        if len(shape) == 3 and shape[0] == self.in_channels:
            shape = shape[1:]
        if len(shape) != 2 or min(shape) < 1:
            raise ShapeError(
                f"input_shape must be (H, W) or ({self.in_channels}, H, W), got {input_shape}"
            )
        h, w = shape
        if h + 2 * self.padding < self.kernel_size or w + 2 * self.padding < self.kernel_size:
            raise ShapeError(f"input size {shape} is smaller than the padded kernel")
        if self.padding_mode == "circular" and self.padding > min(h, w):
            raise ShapeError(f"circular padding {self.padding} exceeds the input size {shape}")
        return (h, w)

    def _reset_weights(self) -> None:
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        if self.bias is not None:
            bound = 1.0 / math.sqrt(self.in_channels * self.kernel_size**2)
            nn.init.uniform_(self.bias, -bound, bound)

    def reset_parameters(self) -> None:
        """Initialise like :class:`torch.nn.Conv2d`; re-converge the buffers if size is locked."""
        self._reset_weights()
        if self._initialised():
            self._init_vectors(tuple(self.v.shape[1:]))

    @property
    def input_size(self) -> tuple[int, int] | None:
        """The locked spatial input size ``(H, W)``, or ``None`` before the first forward pass."""
        return (int(self.v.shape[-2]), int(self.v.shape[-1])) if self._initialised() else None

    def _op(self, v: Tensor, weight: Tensor) -> Tensor:
        return conv2d_operator(
            v, weight, stride=self.stride, padding=self.padding, padding_mode=self.padding_mode
        )

    def _pointwise(self) -> bool:
        return self.kernel_size == 1 and self.stride == 1 and self.padding == 0

    def _top_right_vector(self, weight: Tensor) -> Tensor | None:
        # A 1x1 convolution without padding or stride is W (x) I: its top right singular
        # vectors are v_W (x) s for any spatial profile s; keep the profile v already has.
        if not self._pointwise():
            return None
        v_w = torch.linalg.svd(weight[:, :, 0, 0].double())[2][0].to(weight.dtype)
        profile = torch.einsum("c,bchw->bhw", v_w, self.v)
        # A tensor-valued choice, not a Python branch: no device sync per training step.
        lost = profile.norm() <= torch.finfo(weight.dtype).eps
        profile = torch.where(lost, torch.ones_like(profile), profile)
        return _normalize(v_w[None, :, None, None] * profile[:, None])

    def _conv_gram(self, weight: Tensor) -> _ConvGram | None:
        adjoint = None
        # A pointwise layer takes its exact pair from an SVD instead (``_top_right_vector``).
        if self.padding_mode == "zeros" and not self._pointwise():
            adjoint = _adjoint_kernel(weight, stride=self.stride, padding=self.padding)
        if adjoint is None:
            return None
        # Lanczos on the smaller Gram matrix: its re-orthogonalisation is the cheaper one.
        forward = (weight, (self.padding, self.padding))
        if self.u.numel() < self.v.numel():
            return _ConvGram(*adjoint, *forward, on_output=True)
        return _ConvGram(*forward, *adjoint, on_output=False)

    def _op_adjoint(self, u: Tensor, weight: Tensor) -> Tensor:
        return conv2d_adjoint(
            u,
            weight,
            stride=self.stride,
            padding=self.padding,
            padding_mode=self.padding_mode,
            input_size=(int(self.v.shape[-2]), int(self.v.shape[-1])),
        )

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() != 4 or x.shape[1] != self.in_channels:
            raise ShapeError(
                f"SpectralConv2d expects (B, {self.in_channels}, H, W), got {tuple(x.shape)}"
            )
        size = (int(x.shape[-2]), int(x.shape[-1]))
        if not self._initialised():
            self._init_vectors((self.in_channels, *self._spatial(size)))
        elif size != self.input_size:
            raise ShapeError(
                f"SpectralConv2d is locked to input size {self.input_size} (its operator norm "
                f"depends on it), got {size}"
            )
        return conv2d_operator(
            x,
            self._effective_weight(),
            self.bias,
            stride=self.stride,
            padding=self.padding,
            padding_mode=self.padding_mode,
        )

    def extra_repr(self) -> str:
        return (
            f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
            f"stride={self.stride}, padding={self.padding}, padding_mode={self.padding_mode}, "
            f"coeff={self.coeff}, input_size={self.input_size}"
        )


@torch.no_grad()
def converge_spectral(model: nn.Module, max_iterations: int = 2000, *, rtol: float = 1e-10) -> int:
    r"""Run every spectral layer's power iteration in ``model`` to convergence.

    Training takes a few power steps per forward pass, so :math:`\tilde\sigma` lags the moving
    weights and a layer's effective norm can exceed ``coeff`` (thesis remark 4.9); converging
    before evaluation or certification makes the normalisation hold up to the iteration's
    tolerance. Each layer stops as soon as its estimate changes by at most ``rtol`` (relative),
    so the generous defaults cost little on layers that are already converged.

    Args:
        model: any module; every :class:`SpectralLinear` and :class:`SpectralConv2d` inside is
            converged.
        max_iterations: upper limit per layer.
        rtol: relative tolerance on the change of the singular-value estimate.

    Returns:
        The number of spectral layers converged.

    References:
        Behrmann (thesis), *Invertibility and Domain Knowledge*, section 4.2, remark 4.9.

    Example:
        >>> net = nn.Sequential(SpectralLinear(3, 3), nn.ELU(), SpectralLinear(3, 3))
        >>> converge_spectral(net)
        2
    """
    count = 0
    for layer in model.modules():
        if isinstance(layer, _SpectralBase):
            layer.converge(max_iterations, rtol=rtol)
            count += 1
    return count


def spectral_layers(model: nn.Module) -> list[tuple[str, SpectralLinear | SpectralConv2d]]:
    """``(name, layer)`` of every :class:`SpectralLinear` and :class:`SpectralConv2d` in ``model``.

    Example:
        >>> net = nn.Sequential(SpectralLinear(3, 3), nn.ELU(), SpectralLinear(3, 3))
        >>> [name for name, _ in spectral_layers(net)]
        ['0', '2']
    """
    return [
        (name, m)
        for name, m in model.named_modules()
        if isinstance(m, SpectralLinear | SpectralConv2d)
    ]


@torch.no_grad()
def track_spectral(model: nn.Module, steps: int | None = None, *, stale_only: bool = False) -> int:
    r"""Re-align every spectral layer's ``u``, ``v`` with its current weight (:meth:`track`).

    What a training forward pass of a layer with ``krylov > 0`` does first, done for all of
    them at once: after the last optimiser step it makes the stored model the one the next
    step would apply, without the thousands of iterations of :func:`converge_spectral`.
    Layers that are not locked to an input size yet are skipped. Convolutions whose Lanczos
    runs have the same shapes share one grouped convolution per step (the same Lanczos runs,
    cheaper on a CPU), and a layer re-aligned here skips its own re-alignment in the next
    training forward pass unless its weight changed in between: models call this before a
    training forward pass for that reason.

    Args:
        model: any module.
        steps: Lanczos steps per layer; ``None`` uses each layer's ``krylov`` and skips the
            layers where it is 0.
        stale_only: skip the layers whose weight did not change since their last
            re-alignment (what the training forward pass skips).

    Returns:
        The number of layers re-aligned.

    References:
        Behrmann (thesis), *Invertibility and Domain Knowledge*, section 4.2.1 and remark 4.9.

    Example:
        >>> net = nn.Sequential(SpectralLinear(3, 3, krylov=3), nn.ELU(), SpectralLinear(3, 3))
        >>> track_spectral(net), track_spectral(net, 2)
        (1, 2)
    """
    count = 0
    groups: dict[tuple[Any, ...], list[tuple[SpectralConv2d, _ConvGram]]] = {}
    for _, layer in spectral_layers(model):
        k = layer.krylov if steps is None else steps
        if k < 1 or not layer._initialised():
            continue
        if stale_only and layer._tracked_current():
            continue
        count += 1
        plan = layer._conv_gram(layer.weight.detach())
        if plan is None:
            layer.track(k)
        else:
            groups.setdefault((k, *plan.key(layer._gram_start(plan))), []).append((layer, plan))
    for (k, *_), items in groups.items():
        _track_convolutions(items, k)
    return count
