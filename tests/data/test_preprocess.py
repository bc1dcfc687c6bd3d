from __future__ import annotations

import numpy as np
import pytest
import torch

from preimage.data.preprocess import ZCAWhitener, grayscale
from preimage.errors import ConfigError, ShapeError


def test_grayscale_ntsc() -> None:
    img = torch.zeros(1, 3, 1, 2)
    img[0, 0, 0, 0] = 1.0  # pure red
    img[0, 1, 0, 1] = 1.0  # pure green
    assert grayscale(img).flatten().tolist() == pytest.approx([0.299, 0.587])
    with pytest.raises(ShapeError):
        grayscale(torch.zeros(1, 1, 2, 2))


def test_zca_whitens_the_retained_subspace() -> None:
    rng = np.random.default_rng(0)
    mix = rng.standard_normal((16, 16))
    x = torch.from_numpy(rng.standard_normal((4000, 16)) @ mix).double().reshape(4000, 1, 4, 4)
    zca = ZCAWhitener(n_components=16, eps=0.0).fit(x)
    w = zca.transform(x).reshape(4000, 16).numpy()
    np.testing.assert_allclose(np.cov(w, rowvar=False), np.eye(16), atol=1e-6)
    # Zero phase: the ZCA transform is symmetric, so pixels stay where they were (each
    # whitened pixel correlates most with its own input pixel).
    corr = np.corrcoef(w.T, x.reshape(4000, 16).numpy().T)[:16, 16:]
    assert (np.abs(corr).argmax(axis=1) == np.arange(16)).all()


def test_zca_keeps_top_components_only() -> None:
    rng = np.random.default_rng(1)
    x = torch.from_numpy(rng.standard_normal((500, 9)) * np.arange(1, 10)).float()
    zca = ZCAWhitener(n_components=3, eps=0.0).fit(x)
    w = zca.transform(x).double().numpy()
    cov = np.cov(w, rowvar=False)
    assert np.linalg.matrix_rank(cov, tol=1e-6) == 3
    assert sorted(np.round(np.linalg.eigvalsh(cov)[-3:], 4)) == pytest.approx([1, 1, 1], abs=1e-3)
    assert w.dtype == np.float64 and zca.transform(x).dtype == torch.float32


def test_errors() -> None:
    with pytest.raises(ConfigError):
        ZCAWhitener().transform(torch.zeros(2, 4))
    with pytest.raises(ConfigError):
        ZCAWhitener(n_components=10).fit(torch.zeros(5, 4))
    with pytest.raises(ShapeError):
        ZCAWhitener(n_components=2).fit(torch.rand(10, 4)).transform(torch.rand(3, 5))
