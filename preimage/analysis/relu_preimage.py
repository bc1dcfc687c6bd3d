r"""Pre-images of ReLU layers: a single point, a compact polytope, unbounded or empty.

For a layer :math:`y = \mathrm{ReLU}(Ax + b)` with :math:`A \in \mathbb R^{m \times n}` and a
given output :math:`y \ge 0`, split the rows into the active set :math:`P = \{i : y_i > 0\}` and
the inactive set :math:`Z = \{i : y_i = 0\}`. The pre-image is the polyhedron (thesis eqs.
3.1-3.2, whose signs the text extraction lost, re-derived here)

.. math::

    S = \{x :\; A_P x + b_P = y_P,\;\; A_Z x + b_Z \le 0,\;\; G x \le h\},

where :math:`G x \le h` holds optional priors on the input (remark 3.2): :math:`x \ge \ell` as
rows :math:`-x \le -\ell` and :math:`x \le u` as rows :math:`x \le u` (``x >= 0`` for the input of
a layer that follows a ReLU). Let :math:`O \in \mathbb R^{k \times n}` be an orthonormal basis of
:math:`N(A_P)` (:math:`k = \dim N(A_P)`) and :math:`x_0` a solution of the equalities (the
point ``x_ref`` projected onto them, or else the minimum-norm one, :math:`x_0 =
P_{N(A_P)^\perp} x`, as in the thesis). Every solution is :math:`x = x_0 + O^\top z`, and with
the *reduced* rows :math:`\bar A = G' O^\top` and offsets :math:`c = h' - G' x_0`
(:math:`G' = [A_Z; G]`, :math:`h' = [-b_Z; h]`; :math:`\bar b = -c` is the thesis'
:math:`\bar b`)

.. math::

    S = x_0 + O^\top Q, \qquad Q = \{z \in \mathbb R^k : \bar A z \le c\}.

The classification (theorem 3.3) then needs at most three small linear programs:

1. **Equalities.** If :math:`A_P x = y_P - b_P` has no solution (or some :math:`y_i < 0`) the
   pre-image is *empty*. If :math:`k = 0` the pre-image is :math:`\{x_0\}` when
   :math:`G' x_0 \le h'` (a *singleton*, theorem 3.3 i) and empty otherwise: no LP.
2. **A point of Q** (skipped when :math:`z = 0` is feasible, e.g. for ``x_ref``): the LP
   :math:`\max_{z, s} s` s.t. :math:`\bar A z + s \mathbf 1 \le c`, :math:`s \le 1` (rows
   scaled to unit norm in :math:`x`). It is always feasible; :math:`Q \neq \emptyset` iff
   :math:`s^* \ge 0`, and :math:`s^* > 0` says :math:`Q` has an interior.
3. **Bounded?** The recession cone of :math:`Q` is :math:`\{d : \bar A d \le 0\}`; it is
   :math:`\{0\}` iff :math:`\bar A` is *omnidirectional* (definition 3.1: every :math:`d \ne 0`
   has a row with :math:`\langle \bar a_i, d\rangle > 0`), so :math:`Q` is compact iff
   :math:`\bar A` is omnidirectional (theorem 3.3 iii). :func:`is_omnidirectional` decides it
   with one LP: the rows' conic hull is :math:`\mathbb R^k` iff they span :math:`\mathbb R^k`
   and some strictly positive combination vanishes, i.e. iff the LP
   :math:`\{\lambda : \bar A^\top \lambda = 0,\ \lambda \ge \mathbf 1\}` is feasible
   (if :math:`\sum_i \lambda_i a_i = 0` with :math:`\lambda > 0`, each :math:`-a_j` is a
   positive combination of the others; conversely, summing the combinations of every
   :math:`-a_j` gives one). Fewer than :math:`k + 1` rows, or rank below :math:`k`, is never
   omnidirectional: no LP. Before the LP, a few alternating projections between
   :math:`N(\bar A^\top)` and :math:`\{\lambda \ge 1\}` look for such a :math:`\lambda`; one
   that checks out (with a margin that covers rounding) answers "yes" without the LP, which
   for the large reduced matrices of trained layers is much the costlier step.
4. **Single point?** A bounded :math:`Q` with a point :math:`p` is :math:`\{p\}` iff no
   direction is feasible at :math:`p`, i.e. iff the rows tight at :math:`p`,
   :math:`T = \{i : \bar a_i p = c_i\}`, are omnidirectional: then :math:`(\bar A_T, \bar b_T)`
   is omnidirectional for :math:`p` (definition 3.1 ii, theorem 3.3 ii) and the pre-image is a
   *singleton*; otherwise it is a *compact* polytope. One more LP (none when step 2 found an
   interior).

For compact pre-images, ``box=True`` adds the bounding box
:math:`\min / \max\ x_j` over :math:`S` by :math:`2n` LPs. All LPs are solved by HiGHS
(:func:`scipy.optimize.linprog` with ``method="highs"``) in float64.

:func:`layer_preimages` applies this to every ``Linear``/``Conv2d`` + ``ReLU`` pair of a
trained :class:`~torch.nn.Sequential`, with convolutions written as explicit matrices
(:func:`layer_matrix`, thesis section 2.2.2: a convolution is a linear map, here any padding and
stride, whose matrix is read off its impulse responses).

References:
    Behrmann (thesis), *Invertibility and Domain Knowledge*, section 3.3: definition 3.1,
    remark 3.2, theorem 3.3 (its proof and LP are in Behrmann et al. 2018, *Analysis of
    invariance and robustness via invertibility of ReLU-networks*); section 2.2.2
    (convolutions as matrices).

Example:
    >>> import torch
    >>> a = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, -1.0]])
    >>> r = classify_preimage(a, torch.tensor([0.0, 0.0, -1.0]), torch.zeros(3))
    >>> r.kind, r.null_dim, r.box[0].tolist(), r.box[1].tolist()
    ('compact', 2, [-1.0, -1.0], [0.0, 0.0])
    >>> r = classify_preimage(a, torch.tensor([0.0, 0.0, 1.0]), torch.tensor([0.0, 0.0, 1.0]))
    >>> r.kind, r.null_dim, r.point.tolist()
    ('singleton', 1, [0.0, 0.0])
    >>> classify_preimage(a[:2], torch.zeros(2), torch.zeros(2)).kind
    'unbounded'
    >>> is_omnidirectional(omnidirectional_stack(torch.eye(3)))
    True
"""

from __future__ import annotations

import copy
import itertools
import math
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import torch
from scipy.optimize import linprog
from torch import Tensor, nn

from preimage.errors import ConfigError, ShapeError

__all__ = [
    "KINDS",
    "LayerPreimages",
    "PreimageKind",
    "PreimageResult",
    "classify_preimage",
    "is_omnidirectional",
    "layer_matrix",
    "layer_preimages",
    "omnidirectional_stack",
]

PreimageKind = Literal["singleton", "compact", "unbounded", "empty"]
KINDS: tuple[PreimageKind, ...] = ("singleton", "compact", "unbounded", "empty")
"""The four kinds of pre-image, in the order reports list them."""

ArrayLike = Tensor | np.ndarray | Sequence[float]


@dataclass(frozen=True)
class PreimageResult:
    """The pre-image of one output of one ReLU layer.

    Attributes:
        kind: ``"singleton"``, ``"compact"``, ``"unbounded"`` or ``"empty"``.
        null_dim: :math:`k = \\dim N(A_P)` of the active rows (``-1`` when the equalities have
            no solution).
        point: a point of the pre-image (``None`` when empty), in the weight's dtype and device.
        box: ``(lower, upper)`` bounding box of a compact or singleton pre-image (``None``
            otherwise, or when not asked for).
        n_active: number of active rows :math:`|P|`.
        n_lps: linear programs solved for this query.
    """

    kind: PreimageKind
    null_dim: int
    point: Tensor | None
    box: tuple[Tensor, Tensor] | None
    n_active: int
    n_lps: int


def _numpy(value: ArrayLike, name: str) -> np.ndarray:
    if isinstance(value, Tensor):
        return value.detach().to("cpu", torch.float64).numpy()
    try:
        return np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise ConfigError(f"{name} must be numeric, got {type(value).__name__}") from None


def _default_tol(weight: ArrayLike) -> float:
    dtype = weight.dtype if isinstance(weight, Tensor) else torch.float64
    if not dtype.is_floating_point:
        dtype = torch.float64
    return math.sqrt(torch.finfo(dtype).eps)


def _linprog(cost: np.ndarray, **kwargs: object) -> object:
    return linprog(cost, method="highs", **kwargs)  # type: ignore[call-overload]


def is_omnidirectional(matrix: ArrayLike, *, tol: float = 1e-9) -> bool:
    r"""Whether every open half-space through the origin contains a row (definition 3.1 i).

    Decided by rank, a certificate search and at most one LP (module docstring, step 3): the
    rows, scaled to unit norm, are omnidirectional iff they span :math:`\mathbb R^k` and some
    :math:`\lambda \ge \mathbf 1` has :math:`A^\top\lambda = 0`. The empty space
    :math:`\mathbb R^0` counts as omnidirectional (no direction escapes).

    Args:
        matrix: an ``(m, k)`` matrix.
        tol: relative tolerance of the rank and of zero rows.

    Returns:
        ``True`` when omnidirectional.

    References:
        Behrmann (thesis), *Invertibility and Domain Knowledge*, definition 3.1.

    Example:
        >>> import torch
        >>> is_omnidirectional(torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, -1.0]]))
        True
        >>> is_omnidirectional(torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]]))
        False
    """
    a = _numpy(matrix, "matrix")
    if a.ndim != 2:
        raise ShapeError(f"is_omnidirectional needs a matrix, got shape {a.shape}")
    return _omnidirectional(a, tol)[0]


def _omnidirectional(a: np.ndarray, tol: float) -> tuple[bool, int]:
    """``(omnidirectional, LPs used)`` for a float64 matrix."""
    m, k = a.shape
    if k == 0:
        return True, 0
    norms = np.linalg.norm(a, axis=1)
    a = a[norms > tol * max(1.0, float(norms.max(initial=0.0)))]
    m = a.shape[0]
    if m <= k:
        return False, 0
    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    singular = np.linalg.svd(a, compute_uv=False)
    if int((singular > tol * max(1.0, math.sqrt(m))).sum()) < k:
        return False, 0
    # The complement of R(A) is needed only for the null-space LP below.
    q, _ = np.linalg.qr(a, mode="complete" if m - k <= k else "reduced")
    if _positive_combination(a, q[:, :k], float(singular[-1]), tol):
        return True, 0
    if m - k <= k:
        # Few rows beyond the dimension: lambda = N mu over an orthonormal basis N of
        # N(A^T) solves the equalities exactly, leaving m - k unknowns and N mu >= 1, the same
        # feasibility problem with far fewer unknowns (seconds instead of minutes at the
        # second layer of a 2048-unit MLP). Anything but a clean answer falls back below.
        # The interior-point solver: dual simplex reported numerical trouble on some of
        # these dense problems (probe on trained MNIST layers), the IPM answered all of them.
        res = linprog(
            np.zeros(m - k), A_ub=-q[:, k:], b_ub=-np.ones(m), bounds=[(None, None)] * (m - k),
            method="highs-ipm",
        )  # fmt: skip
        if res.status in (0, 2):
            return bool(res.status == 0), 1
    # Feasibility of A^T lambda = 0 with lambda >= 1 (positive combinations scale freely);
    # fewer constraints than maximising a margin, several times faster for large layers.
    res = _linprog(np.zeros(m), A_eq=a.T, b_eq=np.zeros(k), bounds=[(1.0, None)] * m)
    return bool(res.status == 0), 1


def _positive_combination(
    a: np.ndarray, basis: np.ndarray, sigma_min: float, tol: float, iterations: int = 200
) -> bool:
    r"""Look for a certificate of omnidirectionality without an LP: :math:`\lambda > 0` with
    :math:`A^\top \lambda = 0`, by alternating projections between :math:`N(A^\top)` and
    :math:`\{\lambda \ge 1\}`, started from the projection of :math:`\mathbf 1`.

    ``True`` only with a verified certificate: if :math:`A^\top\lambda = r`, then
    :math:`\lambda - A (A^\top A)^{-1} r` solves the equalities exactly and differs from
    :math:`\lambda` by at most :math:`\|r\|_2 / \sigma_{\min}(A)` in every entry, so
    :math:`\min_i \lambda_i` above that (twice, for rounding) proves an exact positive
    solution. The residual itself is computed with rounding, so the minimum must also clear
    ``tol`` times :math:`\|\lambda\|_\infty`: an entry that is zero in exact arithmetic (a row
    that no positive combination can use) comes out of the projection as a few ulps, with a
    residual that rounds to zero. ``False`` proves nothing (the caller then solves the LP); the
    search costs two products with ``basis``, an orthonormal basis of :math:`R(A)`, per step,
    far less than HiGHS on the equality-constrained LP when the answer is yes (trained layers'
    bounded pre-images).
    """
    lam = np.ones(a.shape[0])
    for _ in range(iterations):
        lam = lam - basis @ (basis.T @ lam)
        low = float(lam.min())
        if low > tol * float(lam.max()):
            residual = float(np.linalg.norm(a.T @ lam))
            return low > 2.0 * residual / sigma_min
        lam = np.maximum(lam, 1.0)
    return False


def omnidirectional_stack(spanning_set: Tensor) -> Tensor:
    r"""The constructive omnidirectional matrix: a spanning set stacked with its negation.

    If the rows of :math:`F` span :math:`\mathbb R^n`, every :math:`x \ne 0` has a row with
    :math:`\langle f_i, x\rangle \ne 0`, so :math:`f_i` or :math:`-f_i` lies in the open
    half-space of :math:`x`: :math:`[F; -F]` is omnidirectional (thesis, after definition
    3.1; the idea of cReLU).

    Example:
        >>> omnidirectional_stack(torch.eye(2)).tolist()
        [[1.0, 0.0], [0.0, 1.0], [-1.0, -0.0], [-0.0, -1.0]]
    """
    if spanning_set.ndim != 2:
        raise ShapeError(f"spanning_set must be a matrix, got shape {tuple(spanning_set.shape)}")
    return torch.cat([spanning_set, -spanning_set])


def _prior_rows(
    n: int, lower: ArrayLike | float | None, upper: ArrayLike | float | None
) -> tuple[np.ndarray, np.ndarray]:
    rows, offsets = [np.zeros((0, n))], [np.zeros(0)]
    for bound, sign in ((lower, -1.0), (upper, 1.0)):
        if bound is None:
            continue
        values = np.broadcast_to(_numpy(bound, "prior bound"), (n,)).astype(np.float64)
        keep = np.isfinite(values)
        rows.append(sign * np.eye(n)[keep])
        offsets.append(sign * values[keep])
    return np.vstack(rows), np.concatenate(offsets)


def classify_preimage(
    weight: ArrayLike,
    bias: ArrayLike,
    y: ArrayLike,
    *,
    x_ref: ArrayLike | None = None,
    tol: float | None = None,
    lower: ArrayLike | float | None = None,
    upper: ArrayLike | float | None = None,
    box: bool = True,
) -> PreimageResult:
    r"""Classify the pre-image :math:`\{x : \mathrm{ReLU}(Ax + b) = y\}` (theorem 3.3).

    The method and its linear programs are derived in the module docstring; at most three LPs
    decide the kind (plus :math:`2n` for ``box``).

    Args:
        weight: :math:`A`, shape ``(m, n)``.
        bias: :math:`b`, shape ``(m,)``.
        y: the output, shape ``(m,)``; entries :math:`> 0` are the active rows.
        x_ref: an input believed to map to ``y`` (e.g. the one that produced it): used as the
            particular solution, which saves the feasibility LP when it checks out.
        tol: numerical tolerance (rank, residuals, slacks), relative to the data's scale;
            default :math:`\sqrt{\varepsilon}` of ``weight``'s dtype, because ``y`` is usually
            computed in that dtype.
        lower: prior :math:`x \ge` ``lower`` (scalar or ``(n,)``; remark 3.2), e.g. ``0`` for
            the input of a layer that follows a ReLU.
        upper: prior :math:`x \le` ``upper`` (scalar or ``(n,)``).
        box: compute the bounding box of compact pre-images (:math:`2n` LPs).

    Returns:
        The kind, :math:`k`, a point of the pre-image, the box and the number of LPs.

    Raises:
        ShapeError: for inconsistent shapes.

    References:
        Behrmann (thesis), *Invertibility and Domain Knowledge*, eqs. 3.1-3.2, remark 3.2,
        theorem 3.3.

    Example:
        >>> import torch
        >>> a, b = torch.tensor([[1.0, 1.0], [1.0, -1.0]]), torch.zeros(2)
        >>> classify_preimage(a, b, torch.tensor([1.0, 0.0])).kind
        'unbounded'
        >>> classify_preimage(a, b, torch.tensor([1.0, 0.0]), lower=0.0).kind
        'compact'
    """
    a = _numpy(weight, "weight")
    b = _numpy(bias, "bias")
    out = _numpy(y, "y")
    if a.ndim != 2 or b.shape != (a.shape[0],) or out.shape != (a.shape[0],):
        raise ShapeError(
            f"weight (m, n), bias (m,) and y (m,) expected, got {a.shape}, {b.shape}, {out.shape}"
        )
    n = a.shape[1]
    eps = _default_tol(weight) if tol is None else float(tol)
    like = torch.zeros((), dtype=torch.float64)
    if isinstance(weight, Tensor) and weight.dtype.is_floating_point:
        like = weight

    def to_torch(v: np.ndarray) -> Tensor:
        return torch.as_tensor(v).to(like.device, like.dtype)

    def result(
        kind: PreimageKind,
        k: int,
        x: np.ndarray | None,
        lps: int,
        bx: tuple[np.ndarray, np.ndarray] | None = None,
    ) -> PreimageResult:
        point = None if x is None else to_torch(x)
        bounds = None if bx is None else (to_torch(bx[0]), to_torch(bx[1]))
        return PreimageResult(kind, k, point, bounds, int(active.sum()), lps)

    active = out > 0
    if np.any(out < 0):
        return result("empty", -1, None, 0)
    x_start = np.zeros(n) if x_ref is None else _numpy(x_ref, "x_ref").reshape(-1)
    if x_start.shape != (n,):
        raise ShapeError(f"x_ref must have {n} entries, got {x_start.size}")
    scale = 1.0 + float(np.abs(out).max(initial=0.0) + np.abs(b).max(initial=0.0))
    scale += float(np.abs(a).max(initial=0.0) * np.abs(x_start).sum())
    # Equalities A_P x = y_P - b_P: particular solution x0 (the nearest one to x_ref) and
    # orthonormal basis O of N(A_P).
    a_p, e = a[active], out[active] - b[active]
    if a_p.shape[0]:
        # The full V is needed for the null space only when there are fewer rows than inputs.
        u, s, vt = np.linalg.svd(a_p, full_matrices=a_p.shape[0] < n)
        rank = int((s > eps * max(1.0, float(s[0]))).sum())
        u = u[:, :rank]
        x0 = x_start + vt[:rank].T @ ((u.T @ (e - a_p @ x_start)) / s[:rank])
        basis = vt[rank:]
        if np.abs(a_p @ x0 - e).max() > eps * scale:
            return result("empty", -1, None, 0)
    else:
        x0, basis = x_start, np.eye(n)
    k = basis.shape[0]
    # Inequalities G' x <= h' (inactive rows, priors), scaled to unit rows in x.
    g_prior, h_prior = _prior_rows(n, lower, upper)
    g = np.vstack([a[~active], g_prior])
    h = np.concatenate([-b[~active], h_prior])
    norms = np.linalg.norm(g, axis=1)
    nonzero = norms > 0
    if np.any(h[~nonzero] < -eps * scale):
        return result("empty", k, None, 0)
    g, h = g[nonzero] / norms[nonzero, None], h[nonzero] / norms[nonzero]
    slack0 = h - g @ x0
    reduced = g @ basis.T
    if k == 0:
        if slack0.size and slack0.min() < -eps * scale:
            return result("empty", 0, None, 0)
        return result("singleton", 0, x0, 0, (x0, x0))
    # Rows that do not depend on z are either always met or make the pre-image empty.
    moving = np.linalg.norm(reduced, axis=1) > eps
    if np.any(slack0[~moving] < -eps * scale):
        return result("empty", k, None, 0)
    reduced, c = reduced[moving], slack0[moving]
    lps = 0
    interior = False
    z = np.zeros(k)
    if c.size and c.min() < -eps * scale:
        lps += 1
        cost = np.zeros(k + 1)
        cost[-1] = -1.0
        res = _linprog(
            cost,
            A_ub=np.hstack([reduced, np.ones((len(c), 1))]),
            b_ub=c,
            bounds=[(None, None)] * k + [(None, 1.0)],
        )
        if res.status != 0 or -res.fun < -eps * scale:
            return result("empty", k, None, lps)
        z, interior = res.x[:k], bool(-res.fun > eps * scale)
    point = x0 + basis.T @ z
    bounded, used = _omnidirectional(reduced, eps)
    lps += used
    if not bounded:
        return result("unbounded", k, point, lps)
    tight = (c - reduced @ z) <= eps * scale
    single = False
    if not interior:
        single, used = _omnidirectional(reduced[tight], eps)
        lps += used
    if single:
        return result("singleton", k, point, lps, (point, point))
    if not box:
        return result("compact", k, point, lps)
    # x_j = x0_j + basis[:, j] . z: minimise and maximise over Q, with the rows that rounding
    # leaves violated at z relaxed just enough to keep z feasible.
    c_lp = np.maximum(c, reduced @ z)
    lo, hi = np.empty(n), np.empty(n)
    for j in range(n):
        for sign, target in ((1.0, lo), (-1.0, hi)):
            res = _linprog(sign * basis[:, j], A_ub=reduced, b_ub=c_lp, bounds=[(None, None)] * k)
            lps += 1
            target[j] = x0[j] + sign * res.fun if res.status == 0 else point[j]
    return result("compact", k, point, lps, (np.minimum(lo, point), np.maximum(hi, point)))


def layer_matrix(layer: nn.Module, in_shape: Sequence[int]) -> tuple[Tensor, Tensor]:
    r"""The explicit matrix and bias of an affine layer on inputs of shape ``in_shape``.

    ``nn.Linear`` gives its weight; any other affine layer (``nn.Conv2d`` with any stride,
    padding or groups) is written as the matrix of its impulse responses, column
    :math:`j` = ``layer(e_j) - layer(0)`` (thesis section 2.2.2: a convolution is a matrix-vector
    product). Computed in the layer's dtype.

    Args:
        layer: the affine layer.
        in_shape: shape of one input, without the batch dimension.

    Returns:
        ``(weight, bias)`` of shapes ``(outputs, inputs)`` and ``(outputs,)``.

    References:
        Behrmann (thesis), *Invertibility and Domain Knowledge*, section 2.2.2 (lemma 2.22).

    Example:
        >>> conv = nn.Conv2d(1, 2, 3, stride=2, padding=1)
        >>> w, b = layer_matrix(conv, (1, 4, 4))
        >>> w.shape, torch.allclose(w @ torch.ones(16) + b, conv(torch.ones(1, 1, 4, 4)).flatten())
        (torch.Size([8, 16]), True)
    """
    if isinstance(layer, nn.Linear):
        bias = layer.bias if layer.bias is not None else layer.weight.new_zeros(layer.out_features)
        return layer.weight.detach().clone(), bias.detach().clone()
    param = next(layer.parameters(), None)
    dtype = param.dtype if param is not None else torch.get_default_dtype()
    device = param.device if param is not None else torch.device("cpu")
    n = math.prod(in_shape)
    with torch.no_grad():
        zero = layer(torch.zeros(1, *in_shape, dtype=dtype, device=device)).reshape(-1)
        eye = torch.eye(n, dtype=dtype, device=device).reshape(n, *in_shape)
        columns = torch.cat([layer(chunk).reshape(len(chunk), -1) for chunk in eye.split(256)])
    return (columns - zero).T.contiguous(), zero


@dataclass(frozen=True)
class LayerPreimages:
    """Pre-images of one ReLU layer of a network for a batch of inputs.

    Attributes:
        layer: name of the affine layer (``Linear``/``Conv2d``) in the ``Sequential``.
        kinds: the kind of every input's pre-image.
        null_dims: :math:`k` of every input.
        n_lps: LPs of every input.
        seconds: wall time of every query (classification only).
        nonnegative_prior: whether ``x >= 0`` was imposed (the layer follows a ReLU).
    """

    layer: str
    kinds: tuple[PreimageKind, ...]
    null_dims: tuple[int, ...]
    n_lps: tuple[int, ...]
    seconds: tuple[float, ...]
    nonnegative_prior: bool = field(default=False)

    def shares(self) -> dict[str, float]:
        """Fraction of inputs of each kind.

        Example:
            >>> LayerPreimages("0", ("singleton", "unbounded"), (0, 3), (0, 0), (0.1, 0.1)).shares()
            {'singleton': 0.5, 'compact': 0.0, 'unbounded': 0.5, 'empty': 0.0}
        """
        total = max(len(self.kinds), 1)
        return {kind: sum(k == kind for k in self.kinds) / total for kind in KINDS}


@contextmanager
def _progress(enabled: bool, total: int, description: str) -> Iterator[Callable[[], None]]:
    if not enabled:
        yield lambda: None
        return
    from rich.progress import Progress

    with Progress(transient=True) as bar:
        task = bar.add_task(description, total=total)
        yield lambda: bar.update(task, advance=1)


def layer_preimages(
    model: nn.Sequential,
    x: Tensor,
    *,
    layers: Sequence[str] | None = None,
    lower: float | Tensor | None = None,
    upper: float | Tensor | None = None,
    tol: float | None = None,
    box: bool = False,
    progress: bool = True,
    progress_min: int = 64,
) -> list[LayerPreimages]:
    r"""Classify, layer by layer, the pre-image of every input's activations.

    Every ``Linear`` or ``Conv2d`` child immediately followed by an ``nn.ReLU`` child is a ReLU
    layer :math:`h_{l} = \mathrm{ReLU}(A_l h_{l-1} + b_l)`; for each input the pre-image of
    :math:`h_l` under that layer alone (in the space of :math:`h_{l-1}`) is classified with
    :func:`classify_preimage`, with :math:`h_{l-1}` as ``x_ref``. Layers behind a ReLU get the
    prior :math:`h_{l-1} \ge 0` (the image of the previous layer, thesis section 3.3 and
    remark 3.2); ``lower``/``upper`` are priors on the network's input (first layer only).
    Other children (``Flatten``, ...) are applied as they are. The layer's matrix and the
    activations are computed in float64 from the model's weights.

    Args:
        model: a ``Sequential`` of ``Linear``/``Conv2d``, ``ReLU`` and shape-only children.
        x: a batch of inputs.
        layers: names of the affine children to analyse (default: every ReLU layer).
        lower: prior lower bound on the input of the first layer.
        upper: prior upper bound on the input of the first layer.
        tol: passed to :func:`classify_preimage` (default: float64's).
        box: compute bounding boxes of compact pre-images (:math:`2n` LPs each).
        progress: draw a rich progress bar when there are at least ``progress_min`` queries.
        progress_min: the number of queries from which the bar is drawn.

    Returns:
        One :class:`LayerPreimages` per analysed layer, in order.

    Raises:
        ConfigError: when ``model`` is not a ``Sequential`` or a named layer is not a ReLU layer.

    References:
        Behrmann (thesis), *Invertibility and Domain Knowledge*, section 3.3, theorem 3.3.

    Example:
        >>> torch.manual_seed(0)  # doctest: +ELLIPSIS
        <torch._C.Generator object at ...>
        >>> net = nn.Sequential(nn.Linear(2, 6), nn.ReLU(), nn.Linear(6, 2), nn.ReLU())
        >>> first, second = layer_preimages(net, torch.randn(5, 2), progress=False)
        >>> first.layer, len(first.kinds), second.nonnegative_prior
        ('0', 5, True)
    """
    if not isinstance(model, nn.Sequential):
        raise ConfigError(f"layer_preimages needs an nn.Sequential, got {type(model).__name__}")
    children = list(model.named_children())
    relu_layers = [
        name
        for (name, child), (_, following) in itertools.pairwise(children)
        if isinstance(child, nn.Linear | nn.Conv2d) and isinstance(following, nn.ReLU)
    ]
    wanted = relu_layers if layers is None else list(layers)
    unknown = [name for name in wanted if name not in relu_layers]
    if unknown:
        raise ConfigError(
            f"not ReLU layers of the model: {unknown}; ReLU layers: {relu_layers or 'none'}"
        )
    reports: list[LayerPreimages] = []
    h = x.detach().to(torch.float64)
    after_relu = False
    total = len(wanted) * len(x)
    with _progress(progress and total >= progress_min, total, "ReLU pre-images") as advance:
        for name, child in children:
            child64 = copy.deepcopy(child).to(torch.float64)
            if name in wanted:
                weight, bias = layer_matrix(child64, tuple(h.shape[1:]))
                priors = (0.0, None) if after_relu else (lower, upper)
                reports.append(
                    _classify_batch(
                        name, weight, bias, h.reshape(len(h), -1), priors, tol, box, advance
                    )
                )
            with torch.no_grad():
                h = child64(h)
            after_relu = after_relu or isinstance(child, nn.ReLU)
    return reports


def _classify_batch(
    name: str,
    weight: Tensor,
    bias: Tensor,
    inputs: Tensor,
    priors: tuple[float | Tensor | None, float | Tensor | None],
    tol: float | None,
    box: bool,
    advance: Callable[[], None],
) -> LayerPreimages:
    outputs = torch.relu(inputs @ weight.T + bias)
    kinds, dims, lps, seconds = [], [], [], []
    for h_in, h_out in zip(inputs, outputs, strict=True):
        start = time.perf_counter()
        res = classify_preimage(
            weight, bias, h_out, x_ref=h_in, tol=tol, lower=priors[0], upper=priors[1], box=box
        )
        seconds.append(time.perf_counter() - start)
        kinds.append(res.kind)
        dims.append(res.null_dim)
        lps.append(res.n_lps)
        advance()
    return LayerPreimages(
        name, tuple(kinds), tuple(dims), tuple(lps), tuple(seconds), priors[0] is not None
    )
