r"""Adaptive binning of layer activations, and the information plane's two coordinates.

The paper estimates :math:`I(X;T)` and :math:`I(T;Y)` for unbounded (ReLU) layers "with a
maximum entropy adaptive binning scheme that bins the CDF for each layer equally by recomputing
the bin ranges every epoch", with 30 bins on 2 000 training samples. :class:`AdaptiveBinner`
does that (``strategy="quantile"``: edges at the empirical quantiles, so every bin holds about
the same mass) and also offers fixed-width bins over the observed range (``"uniform"``, the
binning of Shwartz-Ziv & Tishby). ``scope="layer"`` pools all units of the layer into one set of
edges, as the paper does; ``scope="unit"`` gives each unit its own edges, which makes the
discretisation, and therefore both estimates, invariant under any strictly increasing
transform of each unit.

Because :math:`T` is a deterministic function of :math:`X`, the binned :math:`I(X;T)` on
distinct inputs equals the entropy of the binned code: a lower bound on the continuous
quantity by the data-processing inequality (section 4.2).

References:
    Galloway et al. (2018), *A Rate-Distortion Theory of Adversarial Examples*, section 4.2 and
    figure 3. Darbellay & Vajda (1999); Paninski (2003) (adaptive partitions).
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
from torch import Tensor

from preimage.errors import ConfigError, DataError, ShapeError
from preimage.information.discrete import Correction, mutual_information
from preimage.information.units import Unit

__all__ = ["AdaptiveBinner", "binned_information"]


def _as_matrix(t: Any) -> np.ndarray:
    if isinstance(t, Tensor):
        t = t.detach().cpu().numpy()
    arr = np.asarray(t, dtype=np.float64)
    if arr.ndim < 1 or arr.shape[0] == 0:
        raise DataError("need at least one sample of activations")
    arr = arr.reshape(arr.shape[0], -1)
    if not np.isfinite(arr).all():
        raise DataError("activations hold NaN or infinite values")
    return arr


class AdaptiveBinner:
    r"""Discretises activations ``(n, units)`` into ``n_bins`` bins per unit.

    Args:
        n_bins: bins per unit (the paper: 30).
        scope: ``"layer"`` (one set of edges from all of the layer's values, the paper's
            choice) or ``"unit"`` (edges per unit).
        strategy: ``"quantile"`` (equal-mass bins, maximum entropy) or ``"uniform"``
            (equal-width bins between the minimum and the maximum).

    :meth:`fit` computes the edges (call it every epoch, as the paper does);
    :meth:`transform` maps values to bin indices ``0..n_bins-1``. Quantile edges are sample
    values (not interpolations), which is what makes ``scope="unit"`` exactly invariant
    under strictly increasing transforms. Tied values (the zeros of a ReLU layer) share a
    bin, so fewer than ``n_bins`` bins may be occupied.

    References:
        Galloway et al. (2018), section 4.2.

    Example:
        >>> binner = AdaptiveBinner(n_bins=4).fit(np.arange(8.0)[:, None])
        >>> binner.transform(np.arange(8.0)[:, None]).ravel().tolist()
        [0, 0, 1, 1, 2, 2, 3, 3]
    """

    def __init__(
        self,
        n_bins: int = 30,
        scope: Literal["layer", "unit"] = "layer",
        strategy: Literal["quantile", "uniform"] = "quantile",
    ) -> None:
        if n_bins < 2:
            raise ConfigError(f"n_bins must be >= 2, got {n_bins}")
        if scope not in ("layer", "unit"):
            raise ConfigError(f"unknown scope {scope!r}; use 'layer' or 'unit'")
        if strategy not in ("quantile", "uniform"):
            raise ConfigError(f"unknown strategy {strategy!r}; use 'quantile' or 'uniform'")
        self.n_bins = n_bins
        self.scope = scope
        self.strategy = strategy
        self.edges: np.ndarray | None = None

    def _edges(self, values: np.ndarray) -> np.ndarray:
        """The ``n_bins - 1`` inner edges of each column of ``values``: ``(n_bins - 1, cols)``."""
        if self.strategy == "quantile":
            # The ceil(n k / n_bins)-th order statistics (the inverted-CDF quantiles), in integer
            # arithmetic so that n divisible by n_bins gives exactly n / n_bins values per bin.
            n = values.shape[0]
            k = np.arange(1, self.n_bins)
            rank = (n * k + self.n_bins - 1) // self.n_bins - 1
            return np.sort(values, axis=0)[rank]
        levels = np.arange(1, self.n_bins) / self.n_bins
        lo, hi = values.min(axis=0), values.max(axis=0)
        return lo[None, :] + levels[:, None] * (hi - lo)[None, :]

    def fit(self, t: Any) -> AdaptiveBinner:
        """Compute the edges from activations ``t`` of shape ``(n, ...)``; returns ``self``."""
        arr = _as_matrix(t)
        pooled = arr.reshape(-1, 1) if self.scope == "layer" else arr
        self.edges = self._edges(pooled)
        return self

    def transform(self, t: Any) -> np.ndarray:
        """Bin indices (int64, same shape as ``t`` flattened to ``(n, units)``).

        Raises:
            ConfigError: :meth:`fit` was not called.
            ShapeError: ``t`` has another number of units than the fitted activations.
        """
        if self.edges is None:
            raise ConfigError("AdaptiveBinner.transform called before fit")
        arr = _as_matrix(t)
        if self.scope == "layer":
            edges = self.edges[:, 0]
            return np.searchsorted(edges, arr, side="left").astype(np.int64)
        if arr.shape[1] != self.edges.shape[1]:
            raise ShapeError(
                f"binner was fitted on {self.edges.shape[1]} units, got {arr.shape[1]}"
            )
        codes = np.empty(arr.shape, dtype=np.int64)
        for j in range(arr.shape[1]):
            codes[:, j] = np.searchsorted(self.edges[:, j], arr[:, j], side="left")
        return codes

    def fit_transform(self, t: Any) -> np.ndarray:
        """:meth:`fit` then :meth:`transform` on the same activations."""
        return self.fit(t).transform(t)


def binned_information(
    t: Any,
    x_ids: Any,
    y: Any,
    *,
    binner: AdaptiveBinner | None = None,
    correction: Correction = "none",
    unit: Unit = "nats",
) -> tuple[float, float]:
    r"""The information plane's coordinates :math:`(I(X;T), I(T;Y))` of one layer, by binning.

    Each row of the binned activations is one symbol of :math:`T`.

    Args:
        t: activations ``(n, ...)`` of the layer on ``n`` probe inputs.
        x_ids: ``(n,)`` identity of each input (distinct ids: :math:`I(X;T) = H(T)`).
        y: ``(n,)`` labels (those the model is trained on: random ones for memorisation).
        binner: how to discretise; fitted here on ``t`` (default: ``AdaptiveBinner()``, the
            paper's 30 equal-mass bins per layer).
        correction: passed to :func:`~preimage.information.discrete.mutual_information`.
        unit: ``"nats"`` or ``"bits"``.

    Returns:
        ``(I(X;T), I(T;Y))``.

    References:
        Galloway et al. (2018), section 4.2, figure 3.

    Example:
        >>> t = np.array([[0.0], [0.1], [5.0], [5.1]])
        >>> ixt, ity = binned_information(t, np.arange(4), [0, 0, 1, 1],
        ...                               binner=AdaptiveBinner(n_bins=2), unit="bits")
        >>> round(ixt, 6), round(ity, 6)
        (1.0, 1.0)
    """
    binner = AdaptiveBinner() if binner is None else binner
    codes = binner.fit_transform(t)
    i_xt = mutual_information(x_ids, codes, correction, unit=unit)
    i_ty = mutual_information(codes, y, correction, unit=unit)
    return i_xt, i_ty
