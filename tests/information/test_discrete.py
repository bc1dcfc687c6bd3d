from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from sklearn.metrics import mutual_info_score

from preimage.errors import ConfigError, DataError, ShapeError
from preimage.information.discrete import (
    entropy,
    mutual_information,
    mutual_information_from_joint,
    symbol_codes,
)

BSC_01 = math.log(2) + 0.1 * math.log(0.1) + 0.9 * math.log(0.9)  # 0.368064 nats


def _bsc_sample(n: int, eps: float) -> tuple[np.ndarray, np.ndarray]:
    """Inputs uniform on {0, 1} with exactly a fraction ``eps`` of each flipped: the empirical
    joint is the channel's joint, so the plug-in estimate is the exact value."""
    x = np.repeat([0, 1], n // 2)
    flip = np.zeros(n, dtype=bool)
    per = round(eps * n / 2)
    flip[:per] = True
    flip[n // 2 : n // 2 + per] = True
    return x, np.where(flip, 1 - x, x)


def test_binary_symmetric_channel() -> None:
    x, y = _bsc_sample(1000, 0.1)
    assert mutual_information(x, y) == pytest.approx(0.368064, abs=1e-6)
    assert mutual_information(x, y) == pytest.approx(BSC_01, rel=1e-12)
    assert mutual_information(x, y, unit="bits") == pytest.approx(BSC_01 / math.log(2))


def test_identity_on_uniform_symbols() -> None:
    s = np.tile(np.arange(10), 50)
    assert mutual_information(s, s) == pytest.approx(math.log(10))
    assert entropy(s) == pytest.approx(math.log(10))
    assert entropy(s, unit="bits") == pytest.approx(math.log2(10))


def test_matches_sklearn_on_random_tables() -> None:
    rng = np.random.default_rng(1)
    a = rng.integers(0, 5, 300)
    b = (a + rng.integers(0, 3, 300)) % 7
    assert mutual_information(a, b) == pytest.approx(mutual_info_score(a, b), rel=1e-12)
    # Symmetric, and I(A;A) = H(A).
    assert mutual_information(b, a) == pytest.approx(mutual_information(a, b))
    assert mutual_information(a, a) == pytest.approx(entropy(a))


def test_rows_are_symbols() -> None:
    rows = np.array([[0, 1], [1, 0], [0, 1], [1, 1]])
    assert symbol_codes(rows).tolist() == [0, 1, 0, 2]
    assert entropy(rows) == pytest.approx(-(0.5 * math.log(0.5) + 2 * 0.25 * math.log(0.25)))


def test_miller_madow_removes_bias_of_independent_variables() -> None:
    # 8 x 8 symbols, n = 2000: plug-in bias (7 * 7) / (2 n) = 0.01225 nats. After the
    # correction the mean over seeds is within 0.003 nats of 0 (its standard error here is
    # about 0.0007).
    plug, corrected = [], []
    for seed in range(20):
        rng = np.random.default_rng(seed)
        a, b = rng.integers(0, 8, 2000), rng.integers(0, 8, 2000)
        plug.append(mutual_information(a, b))
        corrected.append(mutual_information(a, b, correction="miller_madow"))
    assert np.mean(plug) == pytest.approx(49 / 4000, abs=0.003)
    assert abs(np.mean(corrected)) < 0.003


def test_miller_madow_entropy() -> None:
    s = [0, 0, 1, 2]
    plug = entropy(s)
    assert entropy(s, correction="miller_madow") == pytest.approx(plug + 2 / 8)


def test_joint_matches_sample_estimate_and_is_differentiable() -> None:
    x, y = _bsc_sample(1000, 0.1)
    counts = torch.zeros(2, 2, dtype=torch.float64)
    for i, j in zip(x, y, strict=True):
        counts[i, j] += 1
    assert float(mutual_information_from_joint(counts)) == pytest.approx(mutual_information(x, y))
    p = torch.tensor([[0.3, 0.1, 0.02], [0.05, 0.25, 0.28]], dtype=torch.float64)
    p.requires_grad_(True)
    assert torch.autograd.gradcheck(lambda q: mutual_information_from_joint(q), (p,))
    # A zero cell keeps the value and the gradient finite.
    z = torch.tensor([[0.5, 0.0], [0.25, 0.25]], dtype=torch.float64, requires_grad=True)
    mutual_information_from_joint(z).backward()
    assert z.grad is not None and torch.isfinite(z.grad).all()


def test_joint_independent_is_zero() -> None:
    p = torch.outer(torch.tensor([0.2, 0.8]), torch.tensor([0.5, 0.25, 0.25]))
    assert float(mutual_information_from_joint(p)) == pytest.approx(0.0, abs=1e-7)


def test_errors() -> None:
    with pytest.raises(ShapeError):
        mutual_information([0, 1], [0, 1, 1])
    with pytest.raises(ConfigError):
        entropy([0, 1], correction="jackknife")  # type: ignore[arg-type]
    with pytest.raises(ConfigError):
        entropy([0, 1], unit="dits")  # type: ignore[arg-type]
    with pytest.raises(DataError):
        entropy([])
    with pytest.raises(DataError):
        mutual_information_from_joint(torch.tensor([[0.5, -0.1], [0.3, 0.3]]))
    with pytest.raises(ShapeError):
        mutual_information_from_joint(torch.ones(3))


def test_miller_madow_mutual_information_is_that_of_the_corrected_entropies() -> None:
    rng = np.random.default_rng(7)
    a = rng.integers(0, 6, 400)
    b = (a + rng.integers(0, 2, 400)) % 4
    joint = np.column_stack([a, b])
    mm = "miller_madow"
    expected = entropy(a, mm) + entropy(b, mm) - entropy(joint, mm)
    assert mutual_information(a, b, mm) == pytest.approx(expected, rel=1e-12)
