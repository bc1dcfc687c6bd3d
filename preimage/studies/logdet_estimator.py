r"""``preimage run logdet-estimator``: bias and spread of the i-ResNet log-det estimators.

On one small contractive residual block :math:`F(x) = x + g(x)` with :math:`d \le 16` the exact
:math:`\log\det(I + J_g(x))` comes from the dense Jacobian. The study measures, in float64:

* the truncated power series with Hutchinson probes (thesis algorithm 2) for
  :math:`n = 1, \dots, N` terms: the bias of its mean over many probe draws, its standard
  deviation per draw, the deterministic truncation error
  :math:`\sum_{k \le n} (-1)^{k+1}\operatorname{tr}(J^k)/k - \log\det(I+J)` from the dense
  Jacobian and the theorem-5.8 bound :math:`d\sum_{k>n}L^k/k` with :math:`L = \|J_g(x)\|_2`
  (figure 5.3);
* the Russian-roulette estimator of Residual Flows: its mean over many draws must lie within
  3 standard errors of the exact value (it is unbiased), with the mean number of terms used.

Deviation from the thesis: figure 5.3 uses a trained CIFAR-10 model; here the block is a
random dense branch so the exact value is affordable, and the numbers are in nats per sample.

References:
    Behrmann (thesis), *Invertibility and Domain Knowledge*, figure 5.3, lemma 5.6,
    algorithm 2, theorem 5.8 and section 5.6. Chen, Behrmann, Duvenaud, Jacobsen (2019),
    *Residual Flows*, section 3.1.

Example:
    >>> import tempfile
    >>> cfg = Config.for_budget("smoke", progress=False, max_terms=3, series_draws=20,
    ...                         roulette_draws=20)
    >>> m = run(cfg, tempfile.mkdtemp())  # doctest: +ELLIPSIS
    logdet...
    >>> m["dim"]
    8
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator
from torch import Tensor, nn

from preimage.errors import ConfigError
from preimage.nn.iresblock import dense_branch
from preimage.nn.logdet import (
    exact_logdet,
    power_series_logdet,
    roulette_logdet,
    series_truncation_bound,
)
from preimage.nn.spectral import SpectralLinear
from preimage.studies.base import StudyConfig
from preimage.studies.kit import StudyRun, study_entry

__all__ = ["Config", "logdet_problem", "run"]


@dataclass(frozen=True)
class Config(StudyConfig):
    """Settings of the log-det estimator study (defaults: the ``cpu`` budget).

    Attributes:
        dim: input dimension :math:`d` (at most 16, so the exact value is cheap).
        hidden: hidden width of the dense branch.
        depth: linear layers of the branch.
        coeff: spectral coefficient of each layer.
        n_points: evaluation points :math:`x` (their log-dets are averaged).
        max_terms: largest number of power-series terms.
        series_draws: probe draws per number of terms.
        roulette_draws: independent Russian-roulette draws.
        roulette_p: geometric parameter of the roulette.
        n_exact_terms: always-computed leading roulette terms.
        weight_scale: factor on the initial weights before normalisation (> 1 pushes every
            layer's norm to ``coeff``).
    """

    dim: int = 8
    hidden: int = 8
    depth: int = 2
    coeff: float = 0.9
    n_points: int = 4
    max_terms: int = 20
    series_draws: int = 2000
    roulette_draws: int = 10_000
    roulette_p: float = 0.5
    n_exact_terms: int = 2
    weight_scale: float = 10.0

    BUDGETS: ClassVar[dict[str, dict[str, Any]]] = {
        "smoke": {"max_terms": 8, "series_draws": 200, "roulette_draws": 300},
        "cpu": {},
        "paper": {"dim": 16, "max_terms": 30, "series_draws": 10_000, "roulette_draws": 100_000},
    }


def logdet_problem(
    config: Config, device: torch.device | str = "cpu"
) -> tuple[nn.Module, Tensor, torch.Generator]:
    """The study's frozen float64 branch :math:`g`, its evaluation points and the generator
    that then draws the estimators' probes (all determined by ``config.seed``).

    Example:
        >>> g, x, _ = logdet_problem(Config.for_budget("smoke"))
        >>> tuple(x.shape), tuple(g(x).shape), x.dtype
        ((4, 8), (4, 8), torch.float64)
    """
    torch.manual_seed(config.seed)
    gen = torch.Generator(device=device).manual_seed(config.seed)
    g = dense_branch(config.dim, config.hidden, coeff=config.coeff, depth=config.depth)
    g = g.to(device=device, dtype=torch.float64)
    with torch.no_grad():
        for layer in g.modules():
            if isinstance(layer, SpectralLinear):
                # Inflated weights make every layer sit at its coefficient, so that
                # ||J_g|| is close to the bound and the truncation bias is visible.
                layer.weight.mul_(config.weight_scale)
                layer.converge()
    g.eval()
    for p in g.parameters():
        p.requires_grad_(False)
    x = torch.randn(config.n_points, config.dim, generator=gen, device=device, dtype=torch.float64)
    return g, x, gen


def _dense_jacobians(g: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    return torch.stack(
        [torch.autograd.functional.jacobian(lambda v: g(v[None])[0], xi) for xi in x]
    )


def _figure(series: dict[str, np.ndarray], roulette_bias: float, roulette_se: float) -> Figure:
    fig = Figure(figsize=(10, 4))
    left, right = fig.subplots(1, 2)
    terms = series["terms"]
    left.semilogy(terms, np.abs(series["bias"]), "o-", label="|bias| of estimator mean")
    left.semilogy(terms, np.abs(series["truncation"]), "s--", label="|truncation error| (dense)")
    left.semilogy(terms, series["bound"], "k:", label="theorem 5.8 bound")
    left.semilogy(terms, series["std"], "^-", label="std of one draw")
    left.xaxis.set_major_locator(MaxNLocator(integer=True))
    left.set_xlabel("number of power-series terms n")
    left.set_ylabel("nats")
    left.set_title("truncated series: bias and spread")
    left.legend(fontsize=8)
    right.errorbar(
        [0],
        [roulette_bias],
        yerr=[3 * roulette_se],
        fmt="o",
        capsize=6,
        label="roulette mean - exact (±3 SE)",
    )
    right.axhline(0.0, color="k", lw=1, label="exact")
    right.set_xticks([])
    right.set_xlim(-1, 1)
    right.set_ylabel("nats")
    right.set_title("Russian roulette (unbiased)")
    right.legend(fontsize=8)
    fig.tight_layout()
    return fig


def _series(
    g: nn.Module, x: Tensor, exact: float, config: Config, gen: torch.Generator
) -> dict[str, np.ndarray]:
    """Per number of terms: estimator bias and spread, dense truncation error, thm-5.8 bound."""
    jac = _dense_jacobians(g, x)
    lips = torch.linalg.matrix_norm(jac, ord=2)
    powers = torch.eye(config.dim, dtype=x.dtype, device=x.device).expand_as(jac).clone()
    partial = torch.zeros(config.n_points, dtype=x.dtype, device=x.device)
    terms = np.arange(1, config.max_terms + 1)
    out = {k: np.empty(len(terms)) for k in ("bias", "std", "truncation", "bound", "z")}
    x_rep = x.repeat(config.series_draws, 1)
    for i, n in enumerate(terms):
        powers = powers @ jac
        partial = partial + ((-1) ** (n + 1) / n) * torch.diagonal(powers, dim1=1, dim2=2).sum(1)
        out["truncation"][i] = float(partial.mean()) - exact
        out["bound"][i] = float(
            np.mean([series_truncation_bound(float(li), config.dim, int(n)) for li in lips])
        )
        with torch.no_grad():
            _, est = power_series_logdet(g, x_rep, n_terms=int(n), generator=gen)
        draws = est.reshape(config.series_draws, config.n_points).mean(dim=1)
        out["bias"][i] = float(draws.mean()) - exact
        out["std"][i] = float(draws.std())
        se = out["std"][i] / math.sqrt(config.series_draws)
        out["z"][i] = abs(out["bias"][i] - out["truncation"][i]) / se
    out["terms"] = terms
    out["lip"] = np.asarray(float(lips.max()))
    return out


def _roulette(g: nn.Module, x: Tensor, config: Config, gen: torch.Generator) -> np.ndarray:
    """Mean log-det over the points of each of ``roulette_draws`` independent draws."""
    roulette = np.empty(config.roulette_draws)
    with torch.no_grad():
        for j in range(config.roulette_draws):
            _, est = roulette_logdet(
                g, x, p=config.roulette_p, n_exact_terms=config.n_exact_terms, generator=gen
            )
            roulette[j] = float(est.mean())
    return roulette


def _metrics(
    config: Config, exact: float, series: dict[str, np.ndarray], roulette: np.ndarray
) -> dict[str, Any]:
    truncation, bound = series["truncation"], series["bound"]
    violations = int(np.sum(np.abs(truncation) > bound * (1 + 1e-9) + 1e-12))
    lip = float(series["lip"])
    bias = float(roulette.mean()) - exact
    se = float(roulette.std(ddof=1) / math.sqrt(config.roulette_draws))
    return {
        "dim": config.dim,
        "exact_logdet": exact,
        "max_jacobian_norm": lip,
        "series_terms": int(series["terms"][-1]),
        "series_bias_1_term": float(series["bias"][0]),
        "series_bias_last": float(series["bias"][-1]),
        "series_std_last": float(series["std"][-1]),
        "truncation_error_1_term": float(truncation[0]),
        "truncation_error_last": float(truncation[-1]),
        "theorem58_bound_1_term": float(bound[0]),
        "theorem58_bound_last": float(bound[-1]),
        "theorem58_violations": violations,
        "series_max_z_vs_truncation": float(series["z"].max()),
        "roulette_draws": config.roulette_draws,
        "roulette_bias": bias,
        "roulette_standard_error": se,
        "roulette_z_score": abs(bias) / se if se > 0 else math.inf,
        "roulette_std": float(roulette.std(ddof=1)),
        # Mean number of terms of the geometric truncation, for the cost comparison.
        "roulette_mean_terms": config.n_exact_terms + 1 / config.roulette_p,
        "roulette_finite_variance_condition": bool(lip**2 < 1 - config.roulette_p),
    }


def _check_targets(study: StudyRun, metrics: dict[str, Any]) -> None:
    z_score, max_z = metrics["roulette_z_score"], metrics["series_max_z_vs_truncation"]
    study.check(
        "roulette_within_3se", round(z_score, 3), "|mean - exact| <= 3 SE", met=z_score <= 3
    )
    study.check(
        "series_mean_matches_truncation",
        round(max_z, 3),
        "max over n of |mean - truncated series| / SE <= 4",
        met=max_z <= 4.0,
    )
    study.check(
        "theorem58_violations",
        metrics["theorem58_violations"],
        "= 0",
        met=metrics["theorem58_violations"] == 0,
    )


def _check(config: Config) -> None:
    if not 1 <= config.dim <= 16:
        raise ConfigError(f"dim must be in [1, 16] for the exact reference, got {config.dim}")
    if config.max_terms < 1 or config.series_draws < 2 or config.roulette_draws < 2:
        raise ConfigError("need max_terms >= 1, series_draws >= 2 and roulette_draws >= 2")


@study_entry(
    "logdet-estimator",
    title="logdet-estimator: power series vs Russian roulette (thesis figure 5.3)",
    check=_check,
)
def run(study: StudyRun, config: Config) -> dict[str, Any]:
    """Measure the estimators and write the run directory; returns the metrics."""
    g, x, gen = logdet_problem(config, study.device)
    with torch.no_grad():
        exact = float(exact_logdet(g, x)[1].mean())
    series = _series(g, x, exact, config, gen)
    roulette = _roulette(g, x, config, gen)
    metrics = _metrics(config, exact, series, roulette)
    study.text(
        f"Residual block x + g(x) in d = {config.dim} with a dense branch of depth "
        f"{config.depth} (spectral coefficient {config.coeff}); largest exact "
        f"||J_g(x)||_2 = {metrics['max_jacobian_norm']:.4f} over {config.n_points} points; "
        f"exact mean log-det {exact:.6f} nats. Truncated series: {config.series_draws} "
        f"Gaussian-probe draws per number of terms. Roulette: {config.roulette_draws} draws "
        f"with p = {config.roulette_p} and {config.n_exact_terms} always-computed terms."
    )
    study.figure(
        _figure(series, metrics["roulette_bias"], metrics["roulette_standard_error"]),
        "estimator_bias_std",
        "Left: |bias| of the truncated series' mean over the probe draws, |truncation error| "
        "from the dense Jacobian, the theorem 5.8 bound and the standard deviation of one draw, "
        "vs number of terms. Right: roulette mean minus exact, with ±3 standard errors.",
    )
    keys = {
        "bias": "bias",
        "std": "std",
        "truncation": "truncation (dense)",
        "bound": "thm 5.8 bound",
    }
    study.table(
        [
            {"terms": int(n), **{label: float(series[k][i]) for k, label in keys.items()}}
            for i, n in enumerate(series["terms"])
        ],
        title="Power series per number of terms",
    )
    _check_targets(study, metrics)
    return study.finish(metrics)
