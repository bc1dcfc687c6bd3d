from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from preimage.errors import ConfigError, ShapeError
from preimage.information.binning import AdaptiveBinner, binned_information


def test_quantile_bins_hold_equal_mass() -> None:
    rng = np.random.default_rng(0)
    t = rng.exponential(size=(3000, 1))
    codes = AdaptiveBinner(n_bins=30).fit_transform(t)
    counts = np.bincount(codes.ravel(), minlength=30)
    assert counts.size == 30
    assert counts.min() == counts.max() == 100


def test_uniform_bins_have_equal_width() -> None:
    t = np.array([[0.0], [0.24], [0.26], [0.74], [0.76], [1.0]])
    codes = AdaptiveBinner(n_bins=4, strategy="uniform").fit_transform(t)
    assert codes.ravel().tolist() == [0, 0, 1, 2, 3, 3]


def test_unit_scope_is_invariant_under_monotone_transforms() -> None:
    rng = np.random.default_rng(1)
    t = rng.standard_normal((2000, 3))
    y = (t[:, 0] + 0.5 * rng.standard_normal(2000) > 0).astype(int)
    ids = np.arange(2000)
    warped = np.column_stack([np.exp(t[:, 0]), t[:, 1] ** 3, 5.0 * t[:, 2] - 2.0])
    binner = AdaptiveBinner(n_bins=10, scope="unit")
    before = binned_information(t, ids, y, binner=binner)
    after = binned_information(warped, ids, y, binner=binner)
    assert after == pytest.approx(before, rel=1e-12)
    # Layer scope pools the units, so warping one unit changes its share of the bins.
    layer = AdaptiveBinner(n_bins=10, scope="layer")
    assert binned_information(warped, ids, y, binner=layer)[0] != pytest.approx(
        binned_information(t, ids, y, binner=layer)[0]
    )


def test_information_plane_coordinates() -> None:
    # A code that keeps the label and nothing else: I(X;T) = I(T;Y) = H(Y) = 1 bit.
    y = np.repeat([0, 1], 500)
    t = torch.tensor(y, dtype=torch.float32)[:, None] * 10.0
    ixt, ity = binned_information(t, np.arange(1000), y, binner=AdaptiveBinner(), unit="bits")
    assert (ixt, ity) == pytest.approx((1.0, 1.0))
    # An injective code of 1000 distinct inputs into 30 equal-mass bins: I(X;T) = log 30.
    rng = np.random.default_rng(2)
    t = rng.standard_normal((1000, 1))
    ixt, ity = binned_information(t, np.arange(1000), rng.integers(0, 2, 1000))
    assert ixt == pytest.approx(math.log(30), abs=0.01)
    assert ity < 0.05


def test_relu_zeros_share_a_bin() -> None:
    t = np.maximum(np.random.default_rng(3).standard_normal((1000, 4)), 0.0)
    codes = AdaptiveBinner(n_bins=30).fit_transform(t)
    assert np.unique(codes[t == 0]).tolist() == [0]
    assert (codes[t > 0] > 0).all()


def test_errors() -> None:
    with pytest.raises(ConfigError):
        AdaptiveBinner(n_bins=1)
    with pytest.raises(ConfigError):
        AdaptiveBinner(scope="neuron")  # type: ignore[arg-type]
    with pytest.raises(ConfigError):
        AdaptiveBinner().transform(np.zeros((2, 2)))
    binner = AdaptiveBinner(scope="unit").fit(np.zeros((5, 2)))
    with pytest.raises(ShapeError):
        binner.transform(np.zeros((5, 3)))
