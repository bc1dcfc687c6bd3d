r"""Invertible residual block :math:`y = x + g(x)` with a contractive branch :math:`g`.

With :math:`L = \mathrm{Lip}(g) < 1` the block is invertible (thesis theorem 4.1), the inverse
is the limit of the fixed-point iteration :math:`x^{[k+1]} = y - g(x^{[k]})`,
:math:`x^{[0]} = y` (algorithm 1), and after :math:`k` steps (lemma 4.5 and the same
geometric-series argument started at step :math:`k-1`)

.. math::

    \|x - x^{[k]}\| \le \min\Big(\frac{L^k}{1-L}\|x^{[1]} - x^{[0]}\|,\;
    \frac{L}{1-L}\|x^{[k]} - x^{[k-1]}\|\Big).

References:
    Behrmann (thesis), *Invertibility and Domain Knowledge*, section 4.2: theorem 4.1,
    algorithm 1, lemma 4.5, eqs. 4.5-4.7; chapter 5 for the log-determinant; appendix A.1-A.2
    for the branch architecture (3x3, 1x1, 3x3 convolutions with ELU).
    Behrmann, Grathwohl, Chen, Duvenaud, Jacobsen (2019), *Invertible Residual Networks*.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor, nn

from preimage.errors import ConfigError, ConvergenceError, ShapeError
from preimage.nn.base import InvertibleModule
from preimage.nn.logdet import (
    Probe,
    exact_logdet,
    neumann_logdet,
    power_series_logdet,
    roulette_logdet,
)
from preimage.nn.spectral import SpectralConv2d, SpectralLinear

__all__ = [
    "Activation",
    "FixedPointTrace",
    "IResBlock",
    "InverseDiagnostics",
    "LogdetMode",
    "SolverMethod",
    "activation_lipschitz",
    "branch_lipschitz",
    "chain_modules",
    "conv_branch",
    "default_tolerances",
    "dense_branch",
    "iterate_contraction",
    "make_activation",
]

LogdetMode = Literal["roulette", "series", "neumann", "exact", "none"]
SolverMethod = Literal["fixed_point", "anderson"]
Activation = Literal["elu", "relu", "leaky_relu", "softplus", "tanh"]

# Maximum of the derivative: x * sigmoid(x) peaks at 1.0998, the exact GELU at 1.1289.
_SILU_LIPSCHITZ = 1.09984
_GELU_LIPSCHITZ = 1.12900


@dataclass(frozen=True)
class FixedPointTrace:
    """Per-step record of a fixed-point solve (``iterate_contraction(..., trace=True)``).

    Attributes:
        iterates: the returned point after each step, shape ``(K, B, ...)``.
        steps: :math:`\\|T(z_k) - z_k\\|_2` of each step and sample, shape ``(K, B)``.
        bounds: the a-posteriori error bound of each step and sample, shape ``(K, B)``
            (``nan`` without a Lipschitz bound below 1).
    """

    iterates: Tensor
    steps: Tensor
    bounds: Tensor


@dataclass(frozen=True)
class InverseDiagnostics:
    """What the last fixed-point inverse did (worst sample of the batch).

    Attributes:
        iterations: evaluations of the map :math:`T` (fixed-point or Anderson steps).
        last_step: largest :math:`\\|T(z_k) - z_k\\|_2` of the last step.
        error_bound: largest guaranteed bound on the distance of the result to the fixed point
            (lemma 4.5), valid when ``lipschitz`` bounds :math:`\\mathrm{Lip}(T)`; ``nan``
            without such a bound.
        converged: whether every sample met the tolerance.
        lipschitz: the bound :math:`L` used (``nan`` if none).
        observed_lipschitz: the largest ratio :math:`\\|T(a) - T(b)\\| / \\|a - b\\|` seen
            between consecutive points (a lower bound on the true constant; above
            ``lipschitz`` means the declared bound is false and so is ``error_bound``).
        method: ``"fixed_point"`` or ``"anderson"``.
        trace: per-step record when asked for, else ``None``.
    """

    iterations: int
    last_step: float
    error_bound: float
    converged: bool
    lipschitz: float
    observed_lipschitz: float = 0.0
    method: str = "fixed_point"
    trace: FixedPointTrace | None = None


def default_tolerances(dtype: torch.dtype) -> tuple[float, float]:
    r"""Default ``(atol, rtol)`` of the fixed-point inverse for ``dtype``.

    :math:`\mathrm{rtol} = \varepsilon^{3/4}` and :math:`\mathrm{atol} = \mathrm{rtol} / 10`
    with :math:`\varepsilon` the machine epsilon: three quarters of the dtype's digits
    (float32: 6.6e-6 and 6.6e-7, close to the former fixed defaults 1e-5 and 1e-6; float64:
    1.8e-12 and 1.8e-13), reached at :math:`L = 0.9^3` in fewer than 100 plain steps.

    Example:
        >>> import torch
        >>> [f"{t:.1e}" for t in default_tolerances(torch.float64)]
        ['1.8e-13', '1.8e-12']
    """
    rtol = torch.finfo(dtype).eps ** 0.75
    return rtol / 10.0, rtol


def make_activation(name: Activation) -> nn.Module:
    """A fresh 1-Lipschitz activation module by name.

    References:
        Behrmann (thesis), *Invertibility and Domain Knowledge*, remark 4.8.

    Example:
        >>> make_activation("elu")
        ELU(alpha=1.0)
    """
    if name == "elu":
        return nn.ELU()
    if name == "relu":
        return nn.ReLU()
    if name == "leaky_relu":
        return nn.LeakyReLU()
    if name == "softplus":
        return nn.Softplus()
    if name == "tanh":
        return nn.Tanh()
    raise ConfigError(
        f"unknown activation {name!r}; choose elu, relu, leaky_relu, softplus or tanh"
    )


def activation_lipschitz(module: nn.Module) -> float | None:
    r"""Lipschitz constant of a parameter-free element-wise module, ``None`` if unknown.

    References:
        Behrmann (thesis), *Invertibility and Domain Knowledge*, eq. 4.6 and remark 4.8.

    Example:
        >>> from torch import nn
        >>> activation_lipschitz(nn.ELU()), activation_lipschitz(nn.LeakyReLU(2.0))
        (1.0, 2.0)
        >>> activation_lipschitz(nn.BatchNorm1d(3)) is None
        True
    """
    one = (
        nn.ReLU,
        nn.ReLU6,
        nn.Tanh,
        nn.Softsign,
        nn.Softplus,
        nn.Hardtanh,
        nn.CELU,
        nn.Identity,
        nn.Flatten,
        nn.Unflatten,
    )
    if isinstance(module, nn.ELU):
        return max(1.0, float(module.alpha))
    if isinstance(module, nn.LeakyReLU):
        return max(1.0, abs(float(module.negative_slope)))
    if isinstance(module, one):
        return 1.0
    if isinstance(module, nn.Sigmoid):
        return 0.25
    if isinstance(module, nn.SiLU):
        return _SILU_LIPSCHITZ
    if isinstance(module, nn.GELU):
        return _GELU_LIPSCHITZ
    return None


def chain_modules(g: nn.Module) -> tuple[list[tuple[str, nn.Module]], list[str]]:
    """The leaf modules of ``g`` in order, if ``g`` is a chain of ``nn.Sequential`` containers.

    A product of per-layer constants bounds :math:`\\mathrm{Lip}(g)` only when the layers are
    composed one after the other; any other container may add, concatenate or reuse them.

    Returns:
        ``(leaves, problems)``: ``(name, module)`` pairs, and the names of containers whose
        structure is not a chain (empty when the product bound applies).

    References:
        Behrmann (thesis), *Invertibility and Domain Knowledge*, eq. 4.6.

    Example:
        >>> from torch import nn
        >>> leaves, problems = chain_modules(nn.Sequential(nn.Linear(2, 2), nn.ELU()))
        >>> [name for name, _ in leaves], problems
        (['0', '1'], [])
    """
    leaves: list[tuple[str, nn.Module]] = []
    problems: list[str] = []
    for name, module in g.named_modules():
        if not any(True for _ in module.children()):
            leaves.append((name, module))
        elif not isinstance(module, nn.Sequential):
            problems.append(name or type(module).__name__)
    return leaves, problems


def branch_lipschitz(g: nn.Module) -> float:
    r"""Data-independent bound :math:`\prod_i c_i \prod_j \mathrm{Lip}(\phi_j) \ge \mathrm{Lip}(g)`.

    Spectral layers contribute their target coefficient ``coeff`` (the bound their power
    iteration enforces, thesis eq. 4.6) rather than :math:`\min(c, \tilde\sigma)`: the
    estimate :math:`\tilde\sigma` approaches the true norm from below, so using it could
    understate the bound. Activations contribute their Lipschitz constant. Anything else
    (an unconstrained linear layer, batch norm, a non-chain container) has no known bound.

    Raises:
        ConfigError: when some part of ``g`` has no known bound.

    References:
        Behrmann (thesis), *Invertibility and Domain Knowledge*, eqs. 4.6-4.7.

    Example:
        >>> round(branch_lipschitz(dense_branch(4, 8, coeff=0.9)), 6)
        0.729
    """
    leaves, problems = chain_modules(g)
    if problems:
        raise ConfigError(
            f"cannot bound Lip(g): {problems[0]!r} is not an nn.Sequential chain; pass lipschitz="
        )
    bound = 1.0
    for name, module in leaves:
        if isinstance(module, SpectralLinear | SpectralConv2d):
            bound *= module.lipschitz
            continue
        factor = activation_lipschitz(module)
        if factor is None:
            raise ConfigError(
                f"cannot bound Lip(g): submodule {name!r} ({type(module).__name__}) has no known "
                "Lipschitz constant; use SpectralLinear/SpectralConv2d or pass lipschitz="
            )
        bound *= factor
    return bound


def _first(*values: float | None) -> float:
    """The first value that is not ``None``, as a float."""
    return float(next(v for v in values if v is not None))


def _norms(t: Tensor) -> Tensor:
    return t.reshape(t.shape[0], -1).norm(dim=1)


def iterate_contraction(
    step: Callable[[Tensor], Tensor],
    start: Tensor,
    lip: float | None,
    atol: float,
    rtol: float,
    max_iter: int,
    *,
    method: SolverMethod = "fixed_point",
    memory: int = 5,
    stop: bool = True,
    trace: bool = False,
) -> tuple[Tensor, InverseDiagnostics]:
    r"""Solve :math:`z = T(z)` for a batched contraction :math:`T`, with an honest error bound.

    **Bound.** For any point :math:`z` and :math:`\mathrm{Lip}(T) \le L < 1`,
    :math:`\|T(z) - z^*\| \le \frac{L}{1-L}\|T(z) - z\|` (triangle inequality and
    :math:`z^* = T(z^*)`); for the plain iteration :math:`z_{k+1} = T(z_k)` from :math:`z_0` this
    is the second half of thesis lemma 4.5, whose first half adds the a-priori
    :math:`\frac{L^k}{1-L}\|z_1 - z_0\|`. Every returned point is an image :math:`T(z)`, so the
    bound holds whatever produced :math:`z`, also for the accelerated scheme.

    **Methods.** ``"fixed_point"`` is thesis algorithm 1. ``"anderson"`` is Anderson
    acceleration (type II, Walker & Ni 2011) with the last ``memory`` residuals
    :math:`f_k = T(z_k) - z_k`: :math:`z_{k+1} = T(z_k) - \Delta G_k \gamma_k` with
    :math:`\gamma_k = \arg\min_\gamma \|f_k - \Delta F_k \gamma\|` per sample (a small
    ridge-regularised least-squares problem, solved in float64). Its residuals need not fall
    monotonically, which does not matter for the bound above.

    **Stopping.** A sample is done when its bound or its step :math:`\|T(z_k) - z_k\|` is at most
    ``atol + rtol`` :math:`\|z\|`, or when its steps stop contracting at round-off level (below
    :math:`\sqrt{\varepsilon}\|z\|`), so ``atol = rtol = 0`` means "to machine precision".
    ``stop=False`` runs exactly ``max_iter`` steps (e.g. to trace an unconstrained map).

    **False constants.** Consecutive points give ratios
    :math:`\|T(a) - T(b)\| / \|a - b\|`, lower bounds on :math:`\mathrm{Lip}(T)`; their
    maximum is ``observed_lipschitz``. A ratio above 1 (above round-off level) proves that
    :math:`T` is no contraction: with ``stop=True`` a :class:`~preimage.errors.ConvergenceError`
    is raised instead of reporting a bound computed from a false ``lip``.

    Args:
        step: the map :math:`T`, applied to the whole batch.
        start: :math:`z_0`, a batch ``(B, ...)``.
        lip: the contraction constant :math:`L \in [0, 1)`; ``None`` (or :math:`\ge 1`) for
            no bound (only with ``stop=False``; the bounds are then ``nan``).
        atol: absolute tolerance.
        rtol: tolerance relative to :math:`\|z_k\|_2`.
        max_iter: maximum number of evaluations of :math:`T`.
        method: ``"fixed_point"`` or ``"anderson"``.
        memory: number of past residuals Anderson combines.
        stop: stop at the tolerance (``False``: run ``max_iter`` steps).
        trace: record every iterate, step and bound in ``diagnostics.trace``.

    Returns:
        ``(z, diagnostics)``; ``diagnostics.converged`` is ``False`` if ``max_iter`` ran out.

    Raises:
        ConvergenceError: a step grew although ``lip < 1`` was declared (``stop=True``).
        ConfigError: invalid tolerances, ``max_iter``, ``memory``, ``method`` or ``lip``.

    References:
        Behrmann (thesis), *Invertibility and Domain Knowledge*, algorithm 1 and lemma 4.5.
        Walker & Ni (2011), *Anderson acceleration for fixed-point iterations*, SIAM J. Numer.
        Anal. 49(4), section 2 (the type-II update used here).

    Example:
        >>> import torch
        >>> z, diag = iterate_contraction(lambda z: 0.5 * z + 1.0, torch.zeros(2, 3), 0.5, 0.0,
        ...                               0.0, 200)
        >>> bool(torch.allclose(z, torch.full((2, 3), 2.0))), diag.converged
        (True, True)
    """
    _check_solver(atol, rtol, max_iter, method, memory)
    bounded = lip is not None and 0.0 <= lip < 1.0
    if lip is not None and lip < 0:
        raise ConfigError(f"lip must be >= 0, got {lip}")
    if stop and not bounded:
        raise ConfigError(f"stopping at a tolerance needs a Lipschitz bound below 1, got {lip}")
    L = float(lip) if bounded else math.nan
    batch = start.shape[0]
    eps = torch.finfo(start.dtype).eps if start.is_floating_point() else 0.0
    floor = math.sqrt(eps)
    device = start.device
    done = torch.zeros(batch, dtype=torch.bool, device=device)
    step_norm = bound = torch.full((batch,), math.inf, device=device, dtype=torch.float64)
    first: Tensor | None = None
    previous: Tensor | None = None
    observed = torch.zeros(batch, dtype=torch.float64, device=device)
    x_hist: list[Tensor] = []
    g_hist: list[Tensor] = []
    records: tuple[list[Tensor], list[Tensor], list[Tensor]] = ([], [], [])
    z = start
    result = start
    iterations = 0
    for k in range(1, max_iter + 1):
        t_z = step(z)
        residual = t_z - z
        step_norm = _norms(residual).double()
        size = _norms(t_z).double()
        iterations = k
        if x_hist:
            dx = _norms(z - x_hist[-1]).double()
            dg = _norms(t_z - g_hist[-1]).double()
            informative = (dx > 0) & (dg > floor * size)
            ratio = torch.where(informative, dg / dx.clamp_min(1e-300), torch.zeros_like(dx))
            observed = torch.maximum(observed, ratio)
            if stop and bool(((ratio > 1.0) & ~done).any()):
                worst = float(ratio.max())
                raise ConvergenceError(
                    f"fixed-point map is not contractive: a step grew by {worst:.3g}x although "
                    f"Lip <= {L:.4g} was declared; the Lipschitz bound is false"
                )
        if bounded:
            bound = (L / (1.0 - L)) * step_norm
            if method == "fixed_point":
                first = step_norm if first is None else first
                bound = torch.minimum(bound, (L**k / (1.0 - L)) * first)
        else:
            bound = torch.full_like(step_norm, math.nan)
        result = t_z
        if trace:
            records[0].append(t_z)
            records[1].append(step_norm)
            records[2].append(bound)
        if stop:
            tol = atol + rtol * size
            done |= (bound <= tol) | (step_norm <= tol)
            if previous is not None:
                # Round-off plateau: no more progress (plain steps must shrink by L, Anderson's
                # residuals at least must not grow) while below sqrt(eps) of the solution.
                factor = L if method == "fixed_point" else 1.0
                done |= (step_norm > factor * previous) & (step_norm <= floor * size)
            previous = step_norm
            if bool(done.all()):
                break
        if method == "anderson":
            z = _anderson_step(z, t_z, x_hist, g_hist, memory)
        else:
            x_hist[:] = [z]
            g_hist[:] = [t_z]
            z = t_z
    diagnostics = InverseDiagnostics(
        iterations=iterations,
        last_step=float(step_norm.max()),
        error_bound=float(bound.max()),
        converged=bool(done.all()) if stop else False,
        lipschitz=L,
        observed_lipschitz=float(observed.max()),
        method=method,
        trace=(
            FixedPointTrace(
                torch.stack(records[0]), torch.stack(records[1]), torch.stack(records[2])
            )
            if trace
            else None
        ),
    )
    return result, diagnostics


def _check_solver(atol: float, rtol: float, max_iter: int, method: str, memory: int) -> None:
    if not (atol >= 0 and rtol >= 0):  # also refuses NaN
        raise ConfigError(f"inverse tolerances must be non-negative, got atol={atol}, rtol={rtol}")
    if isinstance(max_iter, bool) or not isinstance(max_iter, int) or max_iter < 1:
        raise ConfigError(f"max_iter must be an integer >= 1, got {max_iter!r}")
    if method not in ("fixed_point", "anderson"):
        raise ConfigError(f"method must be 'fixed_point' or 'anderson', got {method!r}")
    if isinstance(memory, bool) or not isinstance(memory, int) or memory < 1:
        raise ConfigError(f"memory must be an integer >= 1, got {memory!r}")


def _anderson_step(
    z: Tensor, t_z: Tensor, x_hist: list[Tensor], g_hist: list[Tensor], memory: int
) -> Tensor:
    """Next Anderson iterate; updates the histories of points and their images in place."""
    x_hist.append(z)
    g_hist.append(t_z)
    del x_hist[: -(memory + 1)], g_hist[: -(memory + 1)]
    if len(x_hist) < 2:
        return t_z
    batch = z.shape[0]
    xs = torch.stack([x.reshape(batch, -1) for x in x_hist], dim=2).double()
    gs = torch.stack([g.reshape(batch, -1) for g in g_hist], dim=2).double()
    fs = gs - xs
    d_f = fs[:, :, 1:] - fs[:, :, :-1]
    d_g = gs[:, :, 1:] - gs[:, :, :-1]
    f = fs[:, :, -1:]
    gram = d_f.transpose(1, 2) @ d_f
    # Ridge relative to the Gram matrix's scale keeps nearly collinear residuals solvable.
    scale = gram.diagonal(dim1=1, dim2=2).amax(dim=1).clamp_min(1e-300)
    eye = torch.eye(gram.shape[1], dtype=gram.dtype, device=gram.device)
    gamma = torch.linalg.solve(gram + 1e-10 * scale.view(-1, 1, 1) * eye, d_f.transpose(1, 2) @ f)
    # A degenerate history (e.g. zero residuals once converged) falls back to the plain step.
    gamma = torch.where(torch.isfinite(gamma).all(dim=1, keepdim=True), gamma, 0.0)
    z_next = (gs[:, :, -1:] - d_g @ gamma).squeeze(2)
    return z_next.to(z.dtype).reshape(z.shape)


class IResBlock(InvertibleModule):
    r"""Invertible residual block :math:`F(x) = x + g(x)` with :math:`\mathrm{Lip}(g) < 1`.

    ``forward`` returns ``(y, logdet)``, where ``logdet`` estimates
    :math:`\log\det(I + J_g(x))` with the estimator named by ``logdet`` (see
    :mod:`preimage.nn.logdet`), in training *and* evaluation mode:

    * ``"roulette"`` - unbiased Russian roulette (:func:`~preimage.nn.logdet.roulette_logdet`);
    * ``"neumann"`` - the same value with the constant-memory Neumann-series gradient, random
      truncation as in Residual Flows (:func:`~preimage.nn.logdet.neumann_logdet`);
    * ``"series"`` - truncated power series with ``n_terms`` terms (thesis algorithm 2);
    * ``"exact"`` - dense Jacobian and ``slogdet`` (small inputs only);
    * ``"none"`` - zeros, for classifiers that never need the density.

    The estimators are stochastic: evaluate with more ``n_probes`` (or ``"exact"``) when a
    precise likelihood is needed. ``inverse`` runs algorithm 1 and stops when, for every
    sample, the lemma-4.5 bound or the step :math:`\|x^{[k]} - x^{[k-1]}\|_2` is at most
    ``atol + rtol`` :math:`\|x^{[k]}\|_2`, or has reached round-off level (see
    :func:`iterate_contraction`; ``atol = rtol = 0`` iterates to machine precision); it records
    :class:`InverseDiagnostics` in ``last_inverse`` and raises
    :class:`~preimage.errors.ConvergenceError` if ``max_iter`` runs out first. The
    inverse runs ``g`` in evaluation mode, so it never advances the power iterations and undoes
    exactly the map of the last forward pass. With gradient mode on and ``y`` or ``g``
    requiring gradients, the result is differentiable by the implicit function theorem:
    the backward pass solves :math:`(I + J_g)^\top w = \bar x` with the contraction
    :math:`w \leftarrow \bar x - J_g^\top w` (wrap pure sampling in :func:`torch.no_grad`).

    Args:
        g: the residual branch, e.g. :func:`conv_branch` or :func:`dense_branch`; it must treat
            samples independently.
        logdet: the log-det estimator (see above).
        n_terms: number of terms of the ``"series"`` estimator.
        n_probes: Hutchinson probes per sample.
        probe: ``"gaussian"`` or ``"rademacher"`` probes.
        roulette_p: geometric parameter of the random truncation (Residual Flows: 0.5).
        n_exact_terms: always-computed terms of the random truncation (Residual Flows: 2).
        inverse_atol: default absolute tolerance of the inverse; ``None`` follows the dtype of
            the input (:func:`default_tolerances`).
        inverse_rtol: default relative tolerance of the inverse; ``None`` follows the dtype.
        max_iter: default maximum number of fixed-point steps.
        lipschitz: bound :math:`L < 1` on :math:`\mathrm{Lip}(g)`; by default
            :func:`branch_lipschitz` (product of the spectral layers' ``coeff``). A tighter
            value can come from :func:`preimage.analysis.operator_norm.lipschitz_certificate`.
        inverse_method: default solver of the inverse, ``"fixed_point"`` or ``"anderson"``.

    References:
        Behrmann (thesis), *Invertibility and Domain Knowledge*, theorem 4.1, algorithm 1,
        lemma 4.5, algorithm 2. Chen et al. (2019), *Residual Flows*, sections 3.1-3.2.

    Example:
        >>> import torch
        >>> block = IResBlock(dense_branch(4, 16), logdet="exact").eval()
        >>> x = torch.randn(3, 4)
        >>> y, logdet = block(x)
        >>> with torch.no_grad():
        ...     x_rec = block.inverse(y)
        >>> block.last_inverse.converged, bool((x_rec - x).norm(dim=1).max() < 1e-4)
        (True, True)
    """

    def __init__(
        self,
        g: nn.Module,
        *,
        logdet: LogdetMode = "roulette",
        n_terms: int = 10,
        n_probes: int = 1,
        probe: Probe = "gaussian",
        roulette_p: float = 0.5,
        n_exact_terms: int = 2,
        inverse_atol: float | None = None,
        inverse_rtol: float | None = None,
        max_iter: int = 100,
        lipschitz: float | None = None,
        inverse_method: SolverMethod = "fixed_point",
    ) -> None:
        super().__init__()
        if logdet not in ("roulette", "series", "neumann", "exact", "none"):
            raise ConfigError(
                f"logdet must be roulette, series, neumann, exact or none, got {logdet!r}"
            )
        if probe not in ("gaussian", "rademacher"):
            raise ConfigError(f"probe must be 'gaussian' or 'rademacher', got {probe!r}")
        _check_solver(inverse_atol or 0.0, inverse_rtol or 0.0, max_iter, inverse_method, 5)
        if n_terms < 1 or n_probes < 1 or n_exact_terms < 0:
            raise ConfigError(
                "need n_terms >= 1, n_probes >= 1 and n_exact_terms >= 0, got "
                f"{n_terms}, {n_probes}, {n_exact_terms}"
            )
        if not 0.0 < roulette_p <= 1.0:
            raise ConfigError(f"roulette_p must be in (0, 1], got {roulette_p}")
        if lipschitz is not None and not 0.0 <= lipschitz < 1.0:
            raise ConfigError(
                f"lipschitz must be in [0, 1) for an invertible block, got {lipschitz}"
            )
        self.g = g
        self.logdet: LogdetMode = logdet
        self.n_terms = int(n_terms)
        self.n_probes = int(n_probes)
        self.probe: Probe = probe
        self.roulette_p = float(roulette_p)
        self.n_exact_terms = int(n_exact_terms)
        self.inverse_atol = None if inverse_atol is None else float(inverse_atol)
        self.inverse_rtol = None if inverse_rtol is None else float(inverse_rtol)
        self.max_iter = int(max_iter)
        self.inverse_method: SolverMethod = inverse_method
        self._lipschitz = lipschitz
        self.last_inverse: InverseDiagnostics | None = None

    @property
    def lipschitz(self) -> float:
        """The bound :math:`L` on :math:`\\mathrm{Lip}(g)` used by the inverse."""
        if self._lipschitz is not None:
            return self._lipschitz
        bound = branch_lipschitz(self.g)
        if bound >= 1.0:
            raise ConfigError(f"the branch's Lipschitz bound {bound:.4g} is not below 1")
        return bound

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        if self.logdet == "none":
            return x + self.g(x), self._zero_logdet(x)
        if self.logdet == "exact":
            return exact_logdet(self.g, x)
        if self.logdet == "series":
            return power_series_logdet(
                self.g, x, n_terms=self.n_terms, n_probes=self.n_probes, probe=self.probe
            )
        estimator = roulette_logdet if self.logdet == "roulette" else neumann_logdet
        return estimator(
            self.g,
            x,
            p=self.roulette_p,
            n_exact_terms=self.n_exact_terms,
            n_probes=self.n_probes,
            probe=self.probe,
        )

    def inverse(
        self,
        y: Tensor,
        *,
        atol: float | None = None,
        rtol: float | None = None,
        max_iter: int | None = None,
        method: SolverMethod | None = None,
    ) -> Tensor:
        r"""Solve :math:`x + g(x) = y` by the fixed-point iteration of thesis algorithm 1.

        Args:
            y: output batch ``(B, ...)``.
            atol: absolute tolerance (default ``inverse_atol``, else from ``y``'s dtype, see
                :func:`default_tolerances`).
            rtol: tolerance relative to :math:`\|x^{[k]}\|_2` (default ``inverse_rtol``, else
                from ``y``'s dtype).
            max_iter: maximum number of steps (default ``max_iter``).
            method: ``"fixed_point"`` (algorithm 1) or ``"anderson"`` (Anderson acceleration,
                same bound; default ``inverse_method``), see :func:`iterate_contraction`.

        Returns:
            :math:`x` with :math:`\|x - F^{-1}(y)\|_2` at most ``last_inverse.error_bound``
            per sample.

        Raises:
            ConvergenceError: if some sample misses the tolerance after ``max_iter`` steps, or
                a step grows although the declared Lipschitz bound is below 1.
            ConfigError: negative tolerances, ``max_iter < 1`` or an unknown ``method``.
            ShapeError: ``y`` is not a non-empty batch.
        """
        if y.dim() < 2 or y.shape[0] == 0:
            raise ShapeError(
                f"IResBlock.inverse expects a non-empty batch (B, ...), got {tuple(y.shape)}"
            )
        default_atol, default_rtol = default_tolerances(y.dtype)
        atol = _first(atol, self.inverse_atol, default_atol)
        rtol = _first(rtol, self.inverse_rtol, default_rtol)
        max_iter = self.max_iter if max_iter is None else max_iter
        method = self.inverse_method if method is None else method
        _check_solver(atol, rtol, max_iter, method, 5)
        lip = self.lipschitz
        was_training = self.g.training
        self.g.train(False)
        try:
            with torch.no_grad():
                y_d = y.detach()
                x, diagnostics = iterate_contraction(
                    lambda v: y_d - self.g(v), y_d, lip, atol, rtol, max_iter, method=method
                )
            self.last_inverse = diagnostics
            if not diagnostics.converged:
                raise ConvergenceError(
                    f"IResBlock.inverse did not converge in {max_iter} steps: error bound "
                    f"{diagnostics.error_bound:.3g}, last step {diagnostics.last_step:.3g} "
                    f"(atol={atol}, rtol={rtol}, L={lip:.4g}); raise max_iter or lower coeff"
                )
            needs_grad = y.requires_grad or any(p.requires_grad for p in self.g.parameters())
            if torch.is_grad_enabled() and needs_grad:
                x = self._implicit(y, x, lip, atol, rtol, max_iter)
        finally:
            self.g.train(was_training)
        return x

    def _implicit(
        self, y: Tensor, x_star: Tensor, lip: float, atol: float, rtol: float, max_iter: int
    ) -> Tensor:
        """One differentiable step ``y - g(x*)`` whose incoming gradient is replaced by
        :math:`(I + J_g)^{-\\top}\\bar x` (implicit function theorem)."""
        x0 = x_star.detach().requires_grad_(True)
        with torch.enable_grad():
            g0 = self.g(x0)
            x = y - g0

        def solve(grad: Tensor) -> Tensor:
            # w = grad - J^T w is a contraction with the same constant L as the inverse.
            def step(w: Tensor) -> Tensor:
                return grad - torch.autograd.grad(g0, x0, w, retain_graph=True)[0]

            w, diagnostics = iterate_contraction(step, grad, lip, atol, rtol, max_iter)
            if not diagnostics.converged:
                raise ConvergenceError(
                    f"the implicit gradient of IResBlock.inverse did not converge in {max_iter} "
                    f"steps (error bound {diagnostics.error_bound:.3g})"
                )
            return w

        x.register_hook(solve)
        return x

    def extra_repr(self) -> str:
        return (
            f"logdet={self.logdet!r}, n_terms={self.n_terms}, n_probes={self.n_probes}, "
            f"probe={self.probe!r}, max_iter={self.max_iter}"
        )


def conv_branch(
    channels: int,
    hidden: int,
    *,
    coeff: float = 0.9,
    kernel_sizes: Sequence[int] = (3, 1, 3),
    activation: Activation = "elu",
    n_power_iterations: int = 1,
    input_shape: tuple[int, int] | None = None,
    krylov: int = 0,
) -> nn.Sequential:
    r"""Convolutional branch :math:`g(x) = A_3\phi(A_2\phi(A_1\phi(x)))` of thesis eq. 4.5.

    Pre-activation, spectrally normalised convolutions with ``"same"`` padding (odd kernels),
    so :math:`\mathrm{Lip}(g) \le c^{n}` with :math:`n` = ``len(kernel_sizes)``. Appendix A.1-A.2
    of the thesis use kernels 3, 1, 3 and ELU.

    Args:
        channels: input and output channels.
        hidden: channels of the hidden layers.
        coeff: target operator norm :math:`c` of each convolution.
        kernel_sizes: one odd kernel size per convolution.
        activation: 1-Lipschitz activation :math:`\phi`.
        n_power_iterations: power-iteration steps per training forward pass.
        input_shape: optional spatial size ``(H, W)`` to lock the operators at construction.
        krylov: Lanczos steps that re-align each layer's power-iteration vectors in every
            training forward pass (:meth:`~preimage.nn.spectral.SpectralConv2d.track`; 0: off).

    References:
        Behrmann (thesis), *Invertibility and Domain Knowledge*, eq. 4.5 and appendix A.1.

    Example:
        >>> import torch
        >>> g = conv_branch(2, 8)
        >>> g(torch.randn(1, 2, 6, 6)).shape
        torch.Size([1, 2, 6, 6])
    """
    if not kernel_sizes:
        raise ConfigError("conv_branch needs at least one kernel size")
    sizes = [channels, *([hidden] * (len(kernel_sizes) - 1)), channels]
    layers: list[nn.Module] = []
    for k, (c_in, c_out) in zip(kernel_sizes, itertools.pairwise(sizes), strict=True):
        layers.append(make_activation(activation))
        layers.append(
            SpectralConv2d(
                c_in,
                c_out,
                int(k),
                padding="same",
                coeff=coeff,
                n_power_iterations=n_power_iterations,
                input_shape=input_shape,
                krylov=krylov,
            )
        )
    return nn.Sequential(*layers)


def dense_branch(
    features: int,
    hidden: int,
    *,
    coeff: float = 0.9,
    depth: int = 3,
    activation: Activation = "elu",
    n_power_iterations: int = 1,
    krylov: int = 0,
) -> nn.Sequential:
    r"""Fully connected branch :math:`g = W_n \phi(\cdots \phi(W_1 x))` with spectral layers.

    Unlike :func:`conv_branch` it starts with a linear layer (no pre-activation), the usual
    multilayer perceptron of the i-ResNet toy densities; :math:`\mathrm{Lip}(g) \le c^{n}`.

    Args:
        features: input and output size.
        hidden: width of the hidden layers.
        coeff: target spectral norm :math:`c` of each layer.
        depth: number of linear layers :math:`n \ge 1`.
        activation: 1-Lipschitz activation :math:`\phi`.
        n_power_iterations: power-iteration steps per training forward pass.
        krylov: Lanczos steps that re-align each layer's power-iteration vectors in every
            training forward pass (:meth:`~preimage.nn.spectral.SpectralLinear.track`; 0: off).

    References:
        Behrmann (thesis), *Invertibility and Domain Knowledge*, eqs. 4.5-4.7.

    Example:
        >>> import torch
        >>> dense_branch(3, 10, depth=2)(torch.randn(5, 3)).shape
        torch.Size([5, 3])
    """
    if depth < 1:
        raise ConfigError(f"dense_branch needs depth >= 1, got {depth}")
    sizes = [features, *([hidden] * (depth - 1)), features]
    layers: list[nn.Module] = []
    for i, (f_in, f_out) in enumerate(itertools.pairwise(sizes)):
        if i > 0:
            layers.append(make_activation(activation))
        layers.append(
            SpectralLinear(
                f_in, f_out, coeff=coeff, n_power_iterations=n_power_iterations, krylov=krylov
            )
        )
    return nn.Sequential(*layers)
