"""Tests of preimage.train.augment against NumPy references and distributional checks."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import stats

from preimage.errors import ConfigError, DataError, ShapeError
from preimage.train.augment import dequantize, random_shift, translate


def numpy_translate(x: np.ndarray, dy: int, dx: int) -> np.ndarray:
    """Reference: out[..., i, j] = x[..., i - dy, j - dx] inside the image, 0 outside."""
    out = np.zeros_like(x)
    h, w = x.shape[-2:]
    for i in range(h):
        for j in range(w):
            si, sj = i - dy, j - dx
            if 0 <= si < h and 0 <= sj < w:
                out[..., i, j] = x[..., si, sj]
    return out


def test_translate_matches_numpy_reference() -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(7, 2, 5, 6, generator=g, dtype=torch.float64)
    shifts = torch.tensor([[0, 0], [1, -2], [-3, 4], [4, 0], [5, 6], [-7, -1], [2, 2]])
    out = translate(x, shifts)
    assert out.dtype == x.dtype and out.shape == x.shape
    for b, (dy, dx) in enumerate(shifts.tolist()):
        np.testing.assert_array_equal(out[b].numpy(), numpy_translate(x[b].numpy(), dy, dx))


def test_translate_rejects_bad_shapes() -> None:
    with pytest.raises(ShapeError, match="translate expects a"):
        translate(torch.zeros(2, 5, 5), torch.zeros(2, 2, dtype=torch.long))
    with pytest.raises(ShapeError, match=r"shifts of shape \(2, 2\)"):
        translate(torch.zeros(2, 1, 5, 5), torch.zeros(3, 2, dtype=torch.long))


def test_random_shift_applies_uniform_offsets_in_range() -> None:
    m, n = 2, 1500
    g = torch.Generator().manual_seed(1)
    x = torch.rand(n, 1, 6, 7, generator=g, dtype=torch.float64) + 0.5
    y = random_shift(x, m, torch.Generator().manual_seed(2))
    offsets = [(dy, dx) for dy in range(-m, m + 1) for dx in range(-m, m + 1)]
    matches = torch.stack(
        [
            (translate(x, torch.tensor([o]).expand(n, 2)) == y).flatten(1).all(dim=1)
            for o in offsets
        ],
        dim=1,
    )
    # Every output is exactly one translate of its input by an offset within [-m, m]^2 ...
    assert bool((matches.sum(dim=1) == 1).all())
    counts = matches.sum(dim=0).numpy()
    # ... and the offsets are uniform over the (2m + 1)^2 possibilities.
    assert stats.chisquare(counts).pvalue > 1e-3


def test_random_shift_is_reproducible_and_seed_dependent() -> None:
    x = torch.rand(16, 3, 9, 9)
    before = x.clone()
    a = random_shift(x, 3, torch.Generator().manual_seed(5))
    b = random_shift(x, 3, torch.Generator().manual_seed(5))
    c = random_shift(x, 3, torch.Generator().manual_seed(6))
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert torch.equal(x, before)  # the input is untouched


def test_random_shift_no_ops_and_errors() -> None:
    g = torch.Generator().manual_seed(0)
    flat = torch.rand(4, 10)
    assert random_shift(flat, 3, g) is flat
    img = torch.rand(4, 1, 5, 5)
    assert random_shift(img, 0, g) is img
    with pytest.raises(ConfigError, match="max_shift"):
        random_shift(img, -1, g)
    with pytest.raises(ShapeError, match="random_shift expects"):
        random_shift(torch.rand(4, 5, 5), 1, g)


def test_dequantize_stays_in_the_bin_of_each_level() -> None:
    levels = 256
    k = torch.randint(0, levels, (50_000,), generator=torch.Generator().manual_seed(0))
    x = k.double() / (levels - 1)
    y = dequantize(x, torch.Generator().manual_seed(1), levels=levels)
    assert y.dtype == torch.float64 and y.shape == x.shape
    np.testing.assert_array_equal(torch.floor(y * levels).long().numpy(), k.numpy())
    u = (y * levels - k.double()).numpy()
    assert u.min() >= 0.0 and u.max() < 1.0
    assert stats.kstest(u, "uniform").pvalue > 1e-3


def test_dequantize_other_levels_shapes_and_reproducibility() -> None:
    x = torch.randint(0, 4, (3, 2, 5)).float() / 3
    y1 = dequantize(x, torch.Generator().manual_seed(3), levels=4)
    y2 = dequantize(x, torch.Generator().manual_seed(3), levels=4)
    assert torch.equal(y1, y2) and y1.shape == x.shape and y1.dtype == torch.float32
    assert torch.equal(torch.floor(y1 * 4), torch.round(x * 3))


def test_dequantize_errors() -> None:
    g = torch.Generator()
    with pytest.raises(DataError, match="floating-point"):
        dequantize(torch.zeros(3, dtype=torch.uint8), g)
    with pytest.raises(ConfigError, match="at least 2 levels"):
        dequantize(torch.zeros(3), g, levels=1)
