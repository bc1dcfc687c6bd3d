from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from preimage.errors import ConfigError
from preimage.studies.logdet_estimator import Config, logdet_problem, run


def _dense_truncation_and_bound(config: Config, n_terms: int) -> tuple[float, float]:
    """Mean truncation error of the ``n_terms`` power series and the theorem-5.8 bound
    :math:`d \\sum_{k > n} L^k / k = d(-\\log(1 - L) - \\sum_{k \\le n} L^k / k)`, computed here
    from each point's dense Jacobian (eigenvalues for the series, SVD for L)."""
    g, x, _ = logdet_problem(config)
    errors, bounds = [], []
    for xi in x:
        jac = torch.autograd.functional.jacobian(lambda v: g(v[None])[0], xi).numpy()
        eig = np.linalg.eigvals(jac)
        series = sum(((-1) ** (k + 1) / k) * np.sum(eig**k) for k in range(1, n_terms + 1))
        errors.append(float(np.real(series)) - np.linalg.slogdet(np.eye(len(eig)) + jac)[1])
        lip = np.linalg.norm(jac, 2)
        head = sum(lip**k / k for k in range(1, n_terms + 1))
        bounds.append(config.dim * (-math.log1p(-lip) - head))
    return float(np.mean(errors)), float(np.mean(bounds))


def test_smoke_run(tmp_path: Path) -> None:
    config = Config.for_budget("smoke", progress=False)
    metrics = run(config, tmp_path)
    for name in ("config.json", "metrics.json", "report.html", "figures/estimator_bias_std.png"):
        assert (tmp_path / name).is_file(), name
    assert json.loads((tmp_path / "metrics.json").read_text())["dim"] == config.dim
    assert metrics["theorem58_violations"] == 0
    # The study's truncation errors are the dense ones, decay with n and stay below the
    # theorem 5.8 bound, all computed here from the dense Jacobian.
    for n, suffix in ((1, "1_term"), (config.max_terms, "last")):
        error, bound = _dense_truncation_and_bound(config, n)
        assert metrics[f"truncation_error_{suffix}"] == pytest.approx(error, rel=1e-6, abs=1e-12)
        assert abs(error) <= bound
        assert metrics[f"theorem58_bound_{suffix}"] == pytest.approx(bound, rel=1e-6)
    assert abs(metrics["truncation_error_last"]) < 1e-3 * abs(metrics["truncation_error_1_term"])
    # The truncated estimator's mean follows the truncated series (within 4 standard errors).
    assert metrics["series_max_z_vs_truncation"] < 4.0
    # The roulette estimator is unbiased: its mean lies within a few standard errors.
    assert metrics["roulette_standard_error"] > 0
    assert metrics["roulette_z_score"] < 4.0
    assert math.isclose(
        metrics["roulette_mean_terms"], config.n_exact_terms + 1 / config.roulette_p
    )
    assert metrics["target_theorem58_violations_met"] is True


def test_rejects_large_dimension(tmp_path: Path) -> None:
    with pytest.raises(ConfigError):
        run(Config.for_budget("smoke", progress=False, dim=32), tmp_path)


def test_self_checks_report_a_biased_estimator_as_missed(tmp_path: Path) -> None:
    from preimage.studies.kit import StudyRun
    from preimage.studies.logdet_estimator import _check_targets

    study = StudyRun("logdet-estimator", Config.for_budget("smoke"), tmp_path, echo=False)
    _check_targets(
        study,
        {"roulette_z_score": 9.0, "series_max_z_vs_truncation": 6.0, "theorem58_violations": 2},
    )
    assert [t.met for t in study.targets] == [False, False, False]
    good = StudyRun("logdet-estimator", Config.for_budget("smoke"), tmp_path / "ok", echo=False)
    _check_targets(
        good,
        {"roulette_z_score": 1.0, "series_max_z_vs_truncation": 2.0, "theorem58_violations": 0},
    )
    assert all(t.met for t in good.targets)
