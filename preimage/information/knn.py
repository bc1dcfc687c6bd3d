r"""k-nearest-neighbour estimators of mutual information for continuous variables.

* :func:`ksg_mutual_information`: Kraskov, Stögbauer & Grassberger's estimator 1 for two
  continuous variables,

  .. math:: \hat I(X;Y) = \psi(k) + \psi(N) - \langle \psi(n_x + 1) + \psi(n_y + 1) \rangle,

  with :math:`\epsilon_i` the max-norm distance from sample :math:`i` to its :math:`k`-th
  neighbour in the joint space and :math:`n_x` (:math:`n_y`) the number of other samples
  strictly closer than :math:`\epsilon_i` in the :math:`x` (:math:`y`) space.
* :func:`mixed_mutual_information`: Ross's estimator for a continuous :math:`X` and a discrete
  label :math:`Y`,

  .. math::

      \hat I(X;Y) = \psi(N) - \langle \psi(N_{y_i}) \rangle + \psi(k) - \langle \psi(m_i) \rangle,

  with :math:`d_i` the distance to the :math:`k`-th neighbour among the samples of the same
  label (:math:`N_{y_i}` of them) and :math:`m_i` the number of other samples of any label
  within :math:`d_i`.

Neighbour searches use :class:`scipy.spatial.cKDTree` with the max-norm. Both estimators assume
continuous distributions: repeated points (quantised data) make distances 0; add noise far
below the data's resolution first, as Kraskov et al. recommend.

References:
    Kraskov, Stögbauer, Grassberger (2004), *Estimating mutual information*, Phys. Rev. E 69,
    066138, equation (8). Ross (2014), *Mutual Information between Discrete and Continuous Data
    Sets*, PLoS ONE 9(2), equation (2). Used by Galloway et al. (2018), section 4.4, for
    :math:`I(T;Y)` of a continuous code and the labels.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy.spatial import cKDTree
from scipy.special import digamma
from torch import Tensor

from preimage.errors import ConfigError, DataError, ShapeError
from preimage.information.units import Unit, unit_divisor

__all__ = ["ksg_mutual_information", "mixed_mutual_information"]


def _samples(v: Any, name: str) -> np.ndarray:
    if isinstance(v, Tensor):
        v = v.detach().cpu().numpy()
    arr = np.asarray(v, dtype=np.float64)
    if arr.ndim == 1:
        arr = arr[:, None]
    if arr.ndim != 2:
        raise ShapeError(f"{name} must be (n,) or (n, d), got shape {arr.shape}")
    if not np.isfinite(arr).all():
        raise DataError(f"{name} holds NaN or infinite values")
    return arr


def _count_within(points: np.ndarray, radius: np.ndarray, workers: int) -> np.ndarray:
    """Number of *other* points strictly closer than ``radius[i]`` to point ``i`` (max-norm)."""
    tree = cKDTree(points)
    # query_ball_point counts distance <= r; the next float below r makes it strict.
    strict = np.nextafter(radius, 0.0)
    counts = tree.query_ball_point(points, strict, p=np.inf, return_length=True, workers=workers)
    return np.asarray(counts) - 1


def ksg_mutual_information(
    x: Any, y: Any, k: int = 3, *, unit: Unit = "nats", workers: int = 1
) -> float:
    r"""Kraskov-Stögbauer-Grassberger estimator 1 of :math:`I(X;Y)` for continuous samples.

    Args:
        x: ``(n,)`` or ``(n, d_x)`` samples.
        y: ``(n,)`` or ``(n, d_y)`` samples paired with ``x``.
        k: neighbours (3 is Kraskov's recommendation: low bias, moderate variance).
        unit: ``"nats"`` or ``"bits"``.
        workers: threads for the neighbour queries (scipy's ``workers``).

    Returns:
        The estimate, which can be slightly negative for independent variables.

    Raises:
        ConfigError: ``k`` is not in ``1..n-1``.
        ShapeError: ``x`` and ``y`` do not pair up.

    References:
        Kraskov et al. (2004), equation (8).

    Example:
        >>> rng = np.random.default_rng(0)
        >>> x = rng.standard_normal(2000)
        >>> y = 0.9 * x + np.sqrt(1 - 0.81) * rng.standard_normal(2000)
        >>> abs(ksg_mutual_information(x, y) - 0.830366) < 0.05  # -log(1 - 0.81) / 2
        True
    """
    xs, ys = _samples(x, "x"), _samples(y, "y")
    n = xs.shape[0]
    if ys.shape[0] != n:
        raise ShapeError(f"x and y must pair up: {n} vs {ys.shape[0]} samples")
    if not 1 <= k < n:
        raise ConfigError(f"k must be in 1..{n - 1}, got {k}")
    joint = np.hstack([xs, ys])
    # k + 1 because every point is its own nearest neighbour.
    dist, _ = cKDTree(joint).query(joint, k=[k + 1], p=np.inf, workers=workers)
    eps = dist[:, 0]
    n_x = _count_within(xs, eps, workers)
    n_y = _count_within(ys, eps, workers)
    mi = digamma(k) + digamma(n) - np.mean(digamma(n_x + 1) + digamma(n_y + 1))
    return float(mi) / unit_divisor(unit)


def mixed_mutual_information(
    x: Any, labels: Any, k: int = 3, *, unit: Unit = "nats", workers: int = 1
) -> float:
    r"""Ross's estimator of :math:`I(X;Y)` for continuous ``x`` and discrete ``labels``.

    Args:
        x: ``(n,)`` or ``(n, d)`` continuous samples (a layer's code, say).
        labels: ``(n,)`` discrete labels.
        k: neighbours within each label.
        unit: ``"nats"`` or ``"bits"``.
        workers: threads for the neighbour queries.

    Raises:
        DataError: a label occurs ``k`` times or fewer (its neighbours are undefined).
        ShapeError: ``x`` and ``labels`` do not pair up.

    References:
        Ross (2014), equation (2).

    Example:
        >>> rng = np.random.default_rng(0)
        >>> labels = rng.integers(0, 2, 4000)
        >>> x = 10.0 * labels + rng.standard_normal(4000)  # well separated: I = ln 2
        >>> bool(abs(mixed_mutual_information(x, labels) - np.log(2)) < 0.02)
        True
    """
    xs = _samples(x, "x")
    if isinstance(labels, Tensor):
        labels = labels.detach().cpu().numpy()
    lab = np.asarray(labels).reshape(-1)
    n = xs.shape[0]
    if lab.shape[0] != n:
        raise ShapeError(f"x and labels must pair up: {n} vs {lab.shape[0]} samples")
    if k < 1:
        raise ConfigError(f"k must be >= 1, got {k}")
    radius = np.empty(n)
    class_size = np.empty(n)
    for value in np.unique(lab):
        members = np.flatnonzero(lab == value)
        if members.size <= k:
            raise DataError(f"label {value!r} occurs {members.size} times; need more than k={k}")
        pts = xs[members]
        dist, _ = cKDTree(pts).query(pts, k=[k + 1], p=np.inf, workers=workers)
        radius[members] = dist[:, 0]
        class_size[members] = members.size
    # m_i counts the k-th neighbour itself (distance <= d_i), excluding point i.
    tree = cKDTree(xs)
    m = np.asarray(tree.query_ball_point(xs, radius, p=np.inf, return_length=True, workers=workers))
    m = m - 1
    mi = digamma(n) - np.mean(digamma(class_size)) + digamma(k) - np.mean(digamma(m))
    return float(mi) / unit_divisor(unit)
