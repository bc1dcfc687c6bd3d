r"""Estimators of :math:`\log\det(I + J_g(x))` for a contractive residual branch :math:`g`.

For :math:`\mathrm{Lip}(g) < 1` the determinant is positive (thesis lemma 5.4) and

.. math::

    \log\det(I + J_g) = \operatorname{tr}\log(I + J_g)
    = \sum_{k=1}^{\infty} \frac{(-1)^{k+1}}{k} \operatorname{tr}(J_g^k)

(thesis eq. 5.6). Every estimator here evaluates :math:`g` once on the batch, draws probes
:math:`v` with :math:`E[v v^\top] = I` and gets :math:`v^\top J_g^k v` from :math:`k` chained
vector-Jacobian products on that one graph (Hutchinson's estimator, thesis lemma 5.6 and
algorithm 2). They differ in how the series is cut and how its gradient is obtained:

* :func:`power_series_logdet` - fixed truncation after ``n_terms`` terms (biased, thesis
  algorithm 2; bias bounded by :func:`series_truncation_bound`, theorem 5.8); gradient by
  back-propagating through every term.
* :func:`roulette_logdet` - random truncation with reweighted terms (unbiased, Russian roulette
  of Residual Flows); gradient by back-propagation.
* :func:`neumann_logdet` - same value, but the gradient comes from a surrogate built with the
  Neumann series of :math:`(I + J_g)^{-1}`, so memory does not grow with the number of terms.
* :func:`exact_logdet` - dense Jacobian and ``slogdet`` (small inputs, tests, evaluation).

All take the branch as a callable on a batch, return ``(y, logdet)`` with
:math:`y = x + g(x)` and a per-sample ``logdet`` of shape ``(batch,)``, and propagate gradients
to the branch's parameters and to ``x`` whenever gradient mode is on (under
:func:`torch.no_grad` the results are detached, but the estimators still evaluate
vector-Jacobian products internally). The branch must treat samples independently (no batch
statistics) because ``n_probes > 1`` and :func:`exact_logdet` evaluate it on a repeated batch.

References:
    Behrmann (thesis), *Invertibility and Domain Knowledge*, sections 5.2.1-5.2.3 (eq. 5.6,
    lemma 5.6, algorithm 2, theorem 5.8) and section 5.6 (unbiased and memory-efficient
    estimators).
    Chen, Behrmann, Duvenaud, Jacobsen (2019), *Residual Flows for Invertible Generative
    Modeling*, section 3.1 (Russian-roulette estimator, eq. 6) and section 3.2 (Neumann gradient
    series, eq. 8).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Literal

import numpy as np
import torch
from torch import Tensor

from preimage.errors import ConfigError, ShapeError

__all__ = [
    "Branch",
    "Probe",
    "exact_logdet",
    "neumann_logdet",
    "power_series_logdet",
    "roulette_logdet",
    "roulette_survival",
    "sample_probe",
    "series_terms_needed",
    "series_truncation_bound",
]

Branch = Callable[[Tensor], Tensor]
"""A residual branch :math:`g`: a batch ``(B, ...)`` in, a batch of the same shape out."""

Probe = Literal["gaussian", "rademacher"]
"""Distribution of Hutchinson probes; both have :math:`E[v v^\\top] = I`."""


def sample_probe(
    like: Tensor, probe: Probe = "gaussian", generator: torch.Generator | None = None
) -> Tensor:
    r"""Draw a probe tensor shaped like ``like`` with :math:`E[v] = 0`, :math:`E[v v^\top] = I`.

    Args:
        like: tensor whose shape, dtype and device the probe takes.
        probe: ``"gaussian"`` (standard normal) or ``"rademacher"`` (uniform signs; lower variance
            of the trace estimate, Avron & Toledo 2011).
        generator: optional generator on ``like``'s device, for reproducible draws.

    Returns:
        The probe, a tensor like ``like``.

    References:
        Behrmann (thesis), *Invertibility and Domain Knowledge*, lemma 5.6 (Hutchinson).

    Example:
        >>> import torch
        >>> v = sample_probe(torch.zeros(2, 3), "rademacher")
        >>> bool(((v == 1) | (v == -1)).all())
        True
    """
    if probe == "gaussian":
        return torch.randn(like.shape, generator=generator, device=like.device, dtype=like.dtype)
    if probe == "rademacher":
        bits = torch.randint(0, 2, like.shape, generator=generator, device=like.device)
        return (2 * bits - 1).to(like.dtype)
    raise ConfigError(f"probe must be 'gaussian' or 'rademacher', got {probe!r}")


def roulette_survival(k: int, p: float, n_exact_terms: int) -> float:
    r"""Probability :math:`P(n \ge k)` that the Russian-roulette series keeps term ``k``.

    The number of terms is :math:`n = n_\text{exact} + N` with :math:`N \sim \text{Geometric}(p)`
    on :math:`\{1, 2, \dots\}`, so :math:`P(n \ge k) = 1` for :math:`k \le n_\text{exact} + 1`
    and :math:`(1 - p)^{k - n_\text{exact} - 1}` beyond.

    Args:
        k: term index, starting at 1.
        p: success probability of the geometric distribution, in :math:`(0, 1]`.
        n_exact_terms: number of leading terms that are always computed.

    Returns:
        :math:`P(n \ge k)`.

    References:
        Chen, Behrmann, Duvenaud, Jacobsen (2019), *Residual Flows*, section 3.1, eq. 6.

    Example:
        >>> [roulette_survival(k, 0.5, 2) for k in (1, 3, 4, 6)]
        [1.0, 1.0, 0.5, 0.125]
    """
    return float((1.0 - p) ** max(k - n_exact_terms - 1, 0))


def series_truncation_bound(lip: float, dim: int, n_terms: int) -> float:
    r"""Upper bound of thesis theorem 5.8 on the truncation error of the log-det power series.

    .. math::

        \Big|\sum_{k=1}^{n} \frac{(-1)^{k+1}}{k}\operatorname{tr}(J_g^k) - \log\det(I+J_g)\Big|
        \le -d\Big(\log(1-L) + \sum_{k=1}^{n} \frac{L^k}{k}\Big) = d \sum_{k>n} \frac{L^k}{k}.

    The tail form is summed directly (numerically stable when the bound is tiny) and, if it
    would need more than :math:`10^6` terms, closed by the geometric bound
    :math:`L^{m}/(m(1-L))` of what remains, so the result stays an upper bound.

    Args:
        lip: Lipschitz bound :math:`L` of :math:`g` (or :math:`\|J_g(x)\|_2` at one point),
            in :math:`[0, 1)`.
        dim: input dimension :math:`d`.
        n_terms: number of computed terms :math:`n \ge 0`.

    Returns:
        The bound on the absolute truncation error, in nats.

    References:
        Behrmann (thesis), *Invertibility and Domain Knowledge*, theorem 5.8.

    Example:
        >>> round(series_truncation_bound(0.5, 1, 0), 6) == round(-math.log(0.5), 6)
        True
        >>> series_truncation_bound(0.5, 10, 10) < series_truncation_bound(0.5, 10, 5)
        True
    """
    if not 0.0 <= lip < 1.0:
        raise ConfigError(f"the series needs a Lipschitz bound in [0, 1), got {lip}")
    if dim < 1 or n_terms < 0:
        raise ConfigError(f"need dim >= 1 and n_terms >= 0, got dim={dim}, n_terms={n_terms}")
    if lip == 0.0:
        return 0.0
    # Terms beyond L^m / m < 1e-18 of the first tail term cannot change a float64 sum.
    span = math.ceil(math.log(1e-18) / math.log(lip)) + 1
    span = min(max(span, 1), 1_000_000)
    k = np.arange(n_terms + 1, n_terms + 1 + span, dtype=np.float64)
    tail = float(np.sum(np.exp(k * math.log(lip)) / k))
    m = n_terms + 1 + span
    tail += math.exp(m * math.log(lip)) / (m * (1.0 - lip))
    return dim * tail


def series_terms_needed(lip: float, dim: int, tol: float, *, max_terms: int = 100_000) -> int:
    r"""Fewest power-series terms whose theorem-5.8 bound is at most ``tol``.

    This is how thesis appendix A.2 picks the number of terms at evaluation time (bias below a
    target, e.g. :math:`10^{-4}` bits/dim times :math:`d \ln 2`).

    Args:
        lip: Lipschitz bound :math:`L \in [0, 1)`.
        dim: input dimension :math:`d`.
        tol: admissible truncation error in nats, positive.
        max_terms: give up (raise :class:`~preimage.errors.ConfigError`) beyond this many terms.

    Returns:
        The smallest :math:`n` with ``series_truncation_bound(lip, dim, n) <= tol``.

    References:
        Behrmann (thesis), *Invertibility and Domain Knowledge*, theorem 5.8 and appendix A.2.

    Example:
        >>> n = series_terms_needed(0.5, 100, 1e-3)
        >>> series_truncation_bound(0.5, 100, n) <= 1e-3 < series_truncation_bound(0.5, 100, n - 1)
        True
    """
    if tol <= 0:
        raise ConfigError(f"tol must be positive, got {tol}")
    lo, hi = 0, 1
    while series_truncation_bound(lip, dim, hi) > tol:
        lo, hi = hi, 2 * hi
        if hi > 2 * max_terms:
            raise ConfigError(
                f"more than {max_terms} terms needed for a truncation error of {tol} at L={lip}"
            )
    if series_truncation_bound(lip, dim, lo) <= tol:
        return lo
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if series_truncation_bound(lip, dim, mid) <= tol:
            hi = mid
        else:
            lo = mid
    if hi > max_terms:
        raise ConfigError(
            f"more than {max_terms} terms needed for a truncation error of {tol} at L={lip}"
        )
    return hi


def _check(n_probes: int, n_terms: int | None = None) -> None:
    if n_probes < 1:
        raise ConfigError(f"n_probes must be >= 1, got {n_probes}")
    if n_terms is not None and n_terms < 1:
        raise ConfigError(f"n_terms must be >= 1, got {n_terms}")


def _branch_graph(g: Branch, x: Tensor, copies: int) -> tuple[Tensor, Tensor, Tensor]:
    """Evaluate ``g`` once on ``copies`` stacked copies of ``x`` with a graph to the inputs.

    Returns ``(x_in, xr, gx)``: the input tensor used for ``y``, the stacked input the
    vector-Jacobian products differentiate against, and ``g(xr)``.
    """
    if x.dim() < 2:
        raise ShapeError(f"log-det estimators expect a batch (B, ...), got shape {tuple(x.shape)}")
    with torch.enable_grad():
        x_in = x if x.requires_grad else x.detach().requires_grad_(True)
        xr = x_in if copies == 1 else x_in.repeat(copies, *([1] * (x.dim() - 1)))
        gx = g(xr)
    if gx.shape != xr.shape:
        raise ShapeError(
            "a residual branch must keep the shape: g mapped "
            f"{tuple(xr.shape)} to {tuple(gx.shape)}"
        )
    return x_in, xr, gx


def _vjp(gx: Tensor, xr: Tensor, w: Tensor, *, create_graph: bool) -> Tensor:
    r""":math:`w^\top J_g` for every sample, by one backward pass on the shared graph."""
    if not gx.requires_grad:
        return torch.zeros_like(w)
    (out,) = torch.autograd.grad(
        gx, xr, w, retain_graph=True, create_graph=create_graph, allow_unused=True
    )
    return torch.zeros_like(w) if out is None else out


def _per_sample(t: Tensor, copies: int, batch: int) -> Tensor:
    """Sum over each sample's entries, then average the probe copies."""
    return t.reshape(copies, batch, -1).sum(dim=2).mean(dim=0)


def _finish(x_in: Tensor, gx: Tensor, logdet: Tensor, track: bool) -> tuple[Tensor, Tensor]:
    y = x_in + gx[: x_in.shape[0]]
    if not track:
        return y.detach(), logdet.detach()
    return y, logdet


def _series(
    g: Branch,
    x: Tensor,
    coefficients: Callable[[int], float],
    n_terms: int,
    n_probes: int,
    probe: Probe,
    generator: torch.Generator | None,
) -> tuple[Tensor, Tensor]:
    track = torch.is_grad_enabled()
    x_in, xr, gx = _branch_graph(g, x, n_probes)
    v = sample_probe(xr, probe, generator)
    w = v
    terms = []
    with torch.enable_grad() if track else torch.no_grad():
        for k in range(1, n_terms + 1):
            w = _vjp(gx, xr, w, create_graph=track)
            terms.append(((-1) ** (k + 1) * coefficients(k) / k) * (w * v))
        logdet = _per_sample(torch.stack(terms).sum(dim=0), n_probes, x.shape[0])
    return _finish(x_in, gx, logdet, track)


def power_series_logdet(
    g: Branch,
    x: Tensor,
    *,
    n_terms: int = 10,
    n_probes: int = 1,
    probe: Probe = "gaussian",
    generator: torch.Generator | None = None,
) -> tuple[Tensor, Tensor]:
    r"""Truncated power series with Hutchinson's trace estimator (thesis algorithm 2).

    .. math::

        \log\det(I + J_g) \approx \frac{1}{P}\sum_{p=1}^{P}\sum_{k=1}^{n}
        \frac{(-1)^{k+1}}{k}\, v_p^\top J_g^k v_p,

    with :math:`v_p^\top J_g^k` from :math:`k` chained vector-Jacobian products. Unbiased for
    the truncated series; its bias w.r.t. the log-det is at most
    :func:`series_truncation_bound`. Gradients flow through every term (memory grows with
    ``n_terms``; see :func:`neumann_logdet` for the constant-memory variant).

    Args:
        g: residual branch with :math:`\mathrm{Lip}(g) < 1`.
        x: input batch ``(B, ...)``.
        n_terms: number of series terms :math:`n`.
        n_probes: number of probes :math:`P` per sample (evaluated as one stacked batch).
        probe: ``"gaussian"`` or ``"rademacher"``.
        generator: optional generator on ``x``'s device, for reproducible probes.

    Returns:
        ``(y, logdet)`` with :math:`y = x + g(x)` and ``logdet`` of shape ``(B,)``.

    References:
        Behrmann (thesis), *Invertibility and Domain Knowledge*, eq. 5.6, lemma 5.6,
        algorithm 2.

    Example:
        >>> import torch
        >>> a = 0.3 * torch.eye(3)
        >>> y, logdet = power_series_logdet(
        ...     lambda x: x @ a.T, torch.randn(2, 3), n_terms=30, probe="rademacher")
        >>> torch.allclose(logdet, torch.full((2,), 3 * math.log(1.3)), atol=1e-4)
        True
    """
    _check(n_probes, n_terms)
    return _series(g, x, lambda k: 1.0, n_terms, n_probes, probe, generator)


def _sample_n_terms(p: float, n_exact_terms: int, generator: torch.Generator | None) -> int:
    if not 0.0 < p <= 1.0:
        raise ConfigError(f"the geometric parameter p must be in (0, 1], got {p}")
    if n_exact_terms < 0:
        raise ConfigError(f"n_exact_terms must be >= 0, got {n_exact_terms}")
    if p == 1.0:
        return n_exact_terms + 1
    device = generator.device if generator is not None else None
    u = float(torch.rand((), generator=generator, device=device, dtype=torch.float64))
    u = max(u, 1e-300)
    return n_exact_terms + 1 + math.floor(math.log(u) / math.log1p(-p))


def roulette_logdet(
    g: Branch,
    x: Tensor,
    *,
    p: float = 0.5,
    n_exact_terms: int = 2,
    n_probes: int = 1,
    probe: Probe = "gaussian",
    generator: torch.Generator | None = None,
) -> tuple[Tensor, Tensor]:
    r"""Unbiased Russian-roulette estimate of :math:`\log\det(I + J_g)`.

    Draws the number of terms :math:`n = n_\text{exact} + N`, :math:`N \sim \text{Geometric}(p)`
    on :math:`\{1, 2, \dots\}` (one draw per call, shared by the batch as in Residual Flows) and
    reweights term :math:`k` by :math:`1 / P(n \ge k)` (:func:`roulette_survival`):

    .. math::

        \log\det(I + J_g) = E_{n, v}\Big[\sum_{k=1}^{n} \frac{(-1)^{k+1}}{k}
        \frac{v^\top J_g^k v}{P(n \ge k)}\Big].

    ``p = 0.5`` and ``n_exact_terms = 2`` are the training defaults of Residual Flows
    (on average 4 vector-Jacobian products). The estimate is unbiased whenever the series
    converges absolutely (:math:`\mathrm{Lip}(g) < 1`); a sufficient condition for finite
    variance is :math:`\mathrm{Lip}(g)^2 < 1 - p`. Gradients flow through every term.

    Args:
        g: residual branch with :math:`\mathrm{Lip}(g) < 1`.
        x: input batch ``(B, ...)``.
        p: parameter of the geometric number of extra terms, in :math:`(0, 1]`.
        n_exact_terms: leading terms always computed (weight 1).
        n_probes: number of probes per sample.
        probe: ``"gaussian"`` or ``"rademacher"``.
        generator: optional generator for the probes and for :math:`N` (on ``x``'s device).

    Returns:
        ``(y, logdet)`` with ``logdet`` of shape ``(B,)``.

    References:
        Chen, Behrmann, Duvenaud, Jacobsen (2019), *Residual Flows for Invertible Generative
        Modeling*, section 3.1, eq. 6; Behrmann (thesis), section 5.6.

    Example:
        >>> import torch
        >>> a = 0.3 * torch.eye(3)
        >>> gen = torch.Generator().manual_seed(0)
        >>> draws = [roulette_logdet(lambda x: x @ a.T, torch.zeros(1, 3), probe="rademacher",
        ...                          generator=gen)[1] for _ in range(400)]
        >>> abs(float(torch.cat(draws).mean()) - 3 * math.log(1.3)) < 0.05
        True
    """
    _check(n_probes)
    n_terms = _sample_n_terms(p, n_exact_terms, generator)
    return _series(
        g,
        x,
        lambda k: 1.0 / roulette_survival(k, p, n_exact_terms),
        n_terms,
        n_probes,
        probe,
        generator,
    )


def neumann_logdet(
    g: Branch,
    x: Tensor,
    *,
    n_terms: int | None = None,
    p: float = 0.5,
    n_exact_terms: int = 2,
    n_probes: int = 1,
    probe: Probe = "gaussian",
    generator: torch.Generator | None = None,
) -> tuple[Tensor, Tensor]:
    r"""Log-det estimate whose gradient comes from the Neumann series (constant memory).

    The value is the Russian-roulette estimate of :func:`roulette_logdet` (``n_terms=None``) or
    the truncated series of :func:`power_series_logdet` (``n_terms`` given), computed from
    vector-Jacobian products that build no graph. The gradient uses

    .. math::

        \frac{\partial}{\partial\theta}\log\det(I + J_g)
        = \operatorname{tr}\Big((I + J_g)^{-1}\frac{\partial J_g}{\partial\theta}\Big)
        = E_{n,v}\Big[\Big(\sum_{k=0}^{n-1}\frac{(-1)^k}{P(n \ge k+1)} v^\top J_g^k\Big)
        \frac{\partial J_g}{\partial\theta} v\Big]

    (thesis eq. 5.17, Residual Flows eq. 8): the bracket :math:`w^\top` is accumulated from the
    same products, and the returned tensor is ``value + s - s.detach()`` with the surrogate
    :math:`s = w^\top J_g v` from one differentiable vector-Jacobian product. Gradients w.r.t.
    parameters and ``x`` thus equal, in expectation over :math:`v`, the gradient of the
    estimated series, while the graph holds one product instead of ``n``. Term :math:`J^k` of
    the Neumann series is weighted like term :math:`k+1` of the log-det series (whose
    derivative it is); Residual Flows' code weights it by :math:`1/P(n \ge k)` and sums to
    :math:`k = n`, which is also unbiased but costs one more product.

    Args:
        g: residual branch with :math:`\mathrm{Lip}(g) < 1`.
        x: input batch ``(B, ...)``.
        n_terms: fixed number of terms, or ``None`` for the unbiased random truncation.
        p: geometric parameter of the random truncation.
        n_exact_terms: always-computed leading terms of the random truncation.
        n_probes: number of probes per sample.
        probe: ``"gaussian"`` or ``"rademacher"``.
        generator: optional generator for probes and truncation.

    Returns:
        ``(y, logdet)`` with ``logdet`` of shape ``(B,)``.

    References:
        Chen, Behrmann, Duvenaud, Jacobsen (2019), *Residual Flows for Invertible Generative
        Modeling*, section 3.2, eq. 8 and the memory-efficient backward pass;
        Behrmann (thesis), *Invertibility and Domain Knowledge*, eq. 5.17 and section 5.6.

    Example:
        >>> import torch
        >>> lin = torch.nn.Linear(1, 1, bias=False)
        >>> with torch.no_grad():
        ...     _ = lin.weight.fill_(0.3)
        >>> y, logdet = neumann_logdet(lin, torch.randn(2, 1), n_terms=30, probe="rademacher")
        >>> logdet.sum().backward()  # d/dw of 2 log(1 + w) at w = 0.3
        >>> abs(float(lin.weight.grad) - 2 / 1.3) < 1e-6
        True
    """
    _check(n_probes, n_terms)
    if n_terms is None:
        count = _sample_n_terms(p, n_exact_terms, generator)

        def coefficient(k: int) -> float:
            return 1.0 / roulette_survival(k, p, n_exact_terms)

    else:
        count = n_terms

        def coefficient(k: int) -> float:
            return 1.0

    track = torch.is_grad_enabled()
    x_in, xr, gx = _branch_graph(g, x, n_probes)
    v = sample_probe(xr, probe, generator)
    with torch.no_grad():
        w = v
        neumann = v.clone()
        value = torch.zeros_like(v)
        for k in range(1, count + 1):
            w = _vjp(gx, xr, w, create_graph=False)
            value += ((-1) ** (k + 1) * coefficient(k) / k) * (w * v)
            if k < count:
                neumann += ((-1) ** k * coefficient(k + 1)) * w
        logdet = _per_sample(value, n_probes, x.shape[0])
    if not track:
        return _finish(x_in, gx, logdet, track)
    with torch.enable_grad():
        surrogate = _per_sample(_vjp(gx, xr, neumann, create_graph=True) * v, n_probes, x.shape[0])
        logdet = logdet + (surrogate - surrogate.detach())
    return _finish(x_in, gx, logdet, track)


def exact_logdet(g: Branch, x: Tensor) -> tuple[Tensor, Tensor]:
    r"""Exact :math:`\log|\det(I + J_g(x))|` per sample from the dense Jacobian.

    The branch runs once on a batch of :math:`d` stacked copies of ``x`` and one backward pass
    with the identity as cotangents gives every row of every sample's Jacobian, so the cost is
    :math:`d` times a forward pass in memory and :math:`O(B d^3)` for ``slogdet``: meant for
    small inputs, tests and checks. Differentiable (through ``slogdet``).

    Args:
        g: residual branch (any, not only contractive ones).
        x: input batch ``(B, ...)``.

    Returns:
        ``(y, logdet)`` with :math:`y = x + g(x)`, ``logdet`` of shape ``(B,)``.

    Example:
        >>> import torch
        >>> a = torch.tensor([[0.5, 0.2], [0.0, -0.4]])
        >>> _, logdet = exact_logdet(lambda x: x @ a.T, torch.randn(3, 2))
        >>> torch.allclose(logdet, torch.full((3,), math.log(1.5 * 0.6)))
        True
    """
    track = torch.is_grad_enabled()
    batch = x.shape[0]
    dim = math.prod(x.shape[1:])
    x_in, xr, gx = _branch_graph(g, x, dim)
    eye = torch.eye(dim, device=x.device, dtype=x.dtype)
    cotangents = eye.unsqueeze(1).expand(dim, batch, dim).reshape(xr.shape)
    with torch.enable_grad() if track else torch.no_grad():
        rows = _vjp(gx, xr, cotangents, create_graph=track)
        jac = rows.reshape(dim, batch, dim).transpose(0, 1)
        logdet = torch.linalg.slogdet(eye + jac)[1]
    return _finish(x_in, gx, logdet, track)
