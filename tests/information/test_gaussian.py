from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from preimage.errors import ConfigError, DataError, ShapeError
from preimage.information.gaussian import awgn_capacity, gaussian_mutual_information, snr_db


def test_correlated_pairs() -> None:
    assert gaussian_mutual_information(0.5) == pytest.approx(0.143841, abs=1e-6)
    assert gaussian_mutual_information(0.9) == pytest.approx(0.830366, abs=1e-6)
    assert gaussian_mutual_information(0.0) == 0.0


def test_block_covariance_adds_independent_pairs() -> None:
    # (X1, Y1) with rho 0.5 and (X2, Y2) with rho 0.9, independent: the informations add.
    cov = np.eye(4)
    cov[0, 2] = cov[2, 0] = 0.5
    cov[1, 3] = cov[3, 1] = 0.9
    total = gaussian_mutual_information(cov, dim_x=2, unit="bits")
    assert total == pytest.approx((0.143841 + 0.830366) / math.log(2), abs=1e-5)


def test_awgn_capacity() -> None:
    assert awgn_capacity(3.0, unit="bits") == pytest.approx(1.0)
    assert awgn_capacity(3.0) == pytest.approx(math.log(2))
    assert awgn_capacity(np.array([0.0, 15.0]), unit="bits").tolist() == [0.0, 2.0]
    # The AWGN channel with a Gaussian input: its capacity is the Gaussian MI of (X, X + Z).
    p, n = 3.0, 1.0
    cov = np.array([[p, p], [p, p + n]])
    assert gaussian_mutual_information(cov, unit="bits") == pytest.approx(1.0)


def test_snr_db_both_definitions() -> None:
    x = torch.randn(4, 3, 8, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    ratio = snr_db(x, 0.1 * x)
    assert torch.allclose(ratio, torch.full((4,), 20.0, dtype=torch.float64))
    one_plus = snr_db(x, 0.1 * x, definition="one_plus")
    assert torch.allclose(one_plus, torch.full((4,), 20 * math.log10(11), dtype=torch.float64))
    # Per sample: a perturbation as large as x is 0 dB (ratio) or 20 log10 2 (one_plus).
    delta = torch.stack([x[0], 0.1 * x[1], x[2], 0.01 * x[3]])
    assert snr_db(x, delta).tolist() == pytest.approx([0.0, 20.0, 0.0, 40.0])
    assert float(snr_db(x, x, definition="one_plus")[0]) == pytest.approx(20 * math.log10(2))


def test_errors() -> None:
    with pytest.raises(DataError):
        awgn_capacity(-1.0)
    with pytest.raises(DataError):
        gaussian_mutual_information(np.array([[1.0, 2.0], [2.0, 1.0]]))
    with pytest.raises(ShapeError):
        gaussian_mutual_information(np.eye(2), dim_x=2)
    with pytest.raises(ShapeError):
        snr_db(torch.ones(2, 3), torch.ones(2, 4))
    with pytest.raises(ConfigError):
        snr_db(torch.ones(2, 3), torch.ones(2, 3), definition="power")  # type: ignore[arg-type]
