r"""``preimage run iresnet-reconstruction``: inverting trained i-ResNets by fixed-point iteration.

Small residual classifiers (squeeze, injective padding, residual blocks with 3-1-3 convolution
branches, a linear head; :class:`~preimage.studies.residual_parts.ResidualClassifier`) are
trained with cross-entropy on MNIST (``smoke``: scikit-learn's 8x8 digits) with spectral
coefficients :math:`c \in \{0.5, 0.7, 0.9\}` and without any constraint (plain convolutions,
the "vanilla ResNet"). For each, the network is inverted with :math:`k` fixed-point steps per
block (thesis algorithm 1) and the worst relative reconstruction error
:math:`\max_i \|x_i - \hat x_i\|_2 / \|x_i\|_2` is plotted against :math:`k` (figure 4.4),
with originals and reconstructions (figure 4.3).

Three targets: at the largest :math:`c` the number of steps to reach a relative error
:math:`\le 10^{-5}` in float32 (:math:`\le 30`); in float64, block by block, the a-posteriori
bound of lemma 4.5 with :math:`L` the block's *certified* Lipschitz bound (exact operator norms,
:func:`~preimage.analysis.operator_norm.lipschitz_certificate`) is never below the true error
(violations counted above a round-off floor of :math:`10^{-10}\|x\|`); and the unconstrained
network does not invert (relative error :math:`> 10^{-3}` after ``max_iter`` steps).

Deviation from the thesis: 4 blocks instead of 21 and one or two epochs, to fit the CPU
budgets; the thesis (section 4.3.1) finds that vanilla ResNets trained on MNIST happen to be
invertible, so the unconstrained model failing is not guaranteed here either: the study reports
whether it inverts and whether its blocks are certified contractive.

References:
    Behrmann (thesis), *Invertibility and Domain Knowledge*, section 4.3.1, figures 4.3 and
    4.4, algorithm 1, lemma 4.5, appendix A.1.
"""

from __future__ import annotations

import copy
import math
from dataclasses import asdict, dataclass, replace
from typing import Any, ClassVar

import numpy as np
import torch
from torch import Tensor

from preimage.analysis.invariance import classification_error
from preimage.analysis.operator_norm import lipschitz_certificate
from preimage.nn.iresblock import IResBlock
from preimage.report.plots import image_grid, line_plot
from preimage.studies.kit import StudyRun, study_entry
from preimage.studies.residual_parts import (
    ResidualClassifier,
    ResidualStudyConfig,
    check_coeffs,
    converge_spectral,
    fixed_point_trace,
    invert_with_iterations,
    trained_classifier,
)
from preimage.train.checkpoint import save_checkpoint

__all__ = ["Config", "iteration_grid", "run"]


@dataclass(frozen=True)
class Config(ResidualStudyConfig):
    """Settings of the reconstruction study (defaults: the ``cpu`` budget): the fields of
    :class:`~preimage.studies.residual_parts.ResidualStudyConfig` (``coeffs``: the
    i-ResNets), and

    Attributes:
        n_train: training images, a random subset (``None``: all).
        n_test: test images for the accuracy, a random subset.
        n_eval: images reconstructed (the first of the test subset).
        max_iter: largest number of fixed-point steps per block.
        dense_iterations: every step count up to this one is measured, then 10 log-spaced
            ones up to ``max_iter`` (the iteration count is exact when it is at most this).
        tolerance: relative error that counts as inverted.
        max_iter_target: target on the steps needed at the largest ``c``.
    """

    n_train: int | None = None
    n_test: int = 2000
    n_eval: int = 32
    max_iter: int = 100
    dense_iterations: int = 32
    tolerance: float = 1e-5
    max_iter_target: int = 30

    BUDGETS: ClassVar[dict[str, dict[str, Any]]] = {
        "smoke": {
            **ResidualStudyConfig.BUDGETS["smoke"],
            "train.epochs": 4,
            "n_test": 200,
            "n_eval": 16,
            "max_iter": 30,
            "dense_iterations": 20,
        },
        "cpu": {},
        "paper": ResidualStudyConfig.BUDGETS["paper"],
    }


def iteration_grid(max_iter: int, dense_until: int = 32, n_log: int = 10) -> list[int]:
    """Every step count up to ``dense_until``, then ``n_log`` log-spaced ones to ``max_iter``.

    Example:
        >>> iteration_grid(50, dense_until=3, n_log=3)
        [1, 2, 3, 4, 14, 50]
    """
    dense = list(range(1, min(dense_until, max_iter) + 1))
    if max_iter <= dense_until:
        return dense
    tail = np.unique(np.round(np.geomspace(dense_until + 1, max_iter, n_log)).astype(int))
    return sorted(set(dense) | {int(t) for t in tail} | {max_iter})


def _relative_errors(model: ResidualClassifier, x: Tensor, grid: list[int]) -> np.ndarray:
    with torch.no_grad():
        z, _ = model.body(x)
        norms = x.flatten(1).norm(dim=1)
        out = []
        for k in grid:
            x_rec = invert_with_iterations(model.body, z, k)
            err = ((x_rec - x).flatten(1).norm(dim=1) / norms).max()
            out.append(float(err) if torch.isfinite(err) else math.inf)
    return np.asarray(out)


def _bound_violations(model: ResidualClassifier, x: Tensor, n_iter: int) -> tuple[int, int, int]:
    """Lemma-4.5 bound vs true error per block and step in float64.

    Returns ``(violations, checks, uncertified blocks)``; a block whose certified bound is not
    below 1 has no lemma-4.5 bound and is counted as uncertified instead.
    """
    double = copy.deepcopy(model).double().eval()
    certificates = {c.block: c.bound for c in lipschitz_certificate(double.body, x[:1].double())}
    violations = checks = uncertified = 0
    h = x.double()
    with torch.no_grad():
        for i, layer in enumerate(double.body):
            if isinstance(layer, IResBlock):
                lip = certificates[f"layers.{i}"]
                uncertified += int(lip >= 1.0)
                errors, bounds = fixed_point_trace(layer.g, h, lip, n_iter)
                floor = 1e-10 * float(h.flatten(1).norm(dim=1).max())
                checks += len(errors)
                violations += int(np.sum(errors > bounds + floor))
            h, _ = layer(h)
    return violations, checks, uncertified


def _key(name: str) -> str:
    """Metrics and checkpoint key of a model: ``c=0.9`` -> ``c09``."""
    return name.replace("=", "").replace(".", "")


def _evaluate(
    model: ResidualClassifier,
    name: str,
    test: tuple[Tensor, Tensor],
    x_eval: Tensor,
    grid: list[int],
    config: Config,
) -> tuple[dict[str, Any], dict[str, Any], np.ndarray, Tensor]:
    """Metrics, report row, error curve and ``max_iter``-step reconstructions of one trained,
    converged network."""
    with torch.no_grad():
        accuracy = 1.0 - classification_error(model.logits, *test)
    errors = _relative_errors(model, x_eval, grid)
    reached = [k for k, e in zip(grid, errors, strict=True) if e <= config.tolerance]
    needed = reached[0] if reached else -1
    worst = max(c.bound for c in lipschitz_certificate(model.body, x_eval[:1]))
    key = _key(name)
    metrics = {
        f"{key}_test_accuracy": accuracy,
        f"{key}_final_relative_error": float(errors[-1]),
        f"{key}_iterations_to_tolerance": needed,
        f"{key}_max_certified_lipschitz": worst,
    }
    row: dict[str, Any] = {
        "model": name,
        "test accuracy": accuracy,
        "max certified Lip(g)": worst,
        f"steps to rel. error <= {config.tolerance:g}": needed if needed > 0 else "never",
        f"rel. error after {config.max_iter}": float(errors[-1]),
    }
    with torch.no_grad():
        z, _ = model.body(x_eval)
        recon = invert_with_iterations(model.body, z, config.max_iter).cpu()
    return metrics, row, errors, recon


def _figures(
    study: StudyRun,
    grid: list[int],
    curves: dict[str, np.ndarray],
    x_eval: Tensor,
    recon: dict[str, Tensor],
    config: Config,
) -> None:
    fig = line_plot(
        grid,
        {name: np.where(np.isfinite(e), e, np.nan) for name, e in curves.items()},
        xlabel="fixed-point iterations per block",
        ylabel="max relative reconstruction error",
        title="reconstruction error vs iterations (float32)",
        logy=True,
    )
    fig.axes[0].axhline(config.tolerance, color="k", ls=":", lw=1)
    study.figure(
        fig,
        "error_vs_iterations",
        f"Worst relative error over {x_eval.shape[0]} test images vs fixed-point steps per "
        f"block, one curve per model (float32); dotted: the tolerance {config.tolerance:g}. "
        "Diverging or non-finite errors leave gaps.",
    )
    n_show = min(8, x_eval.shape[0])
    panels = torch.stack([x_eval[:n_show].cpu()] + [r[:n_show] for r in recon.values()])
    # Round-off around 0 and 1 is not worth mentioning; what the clamp hides is.
    outside = {
        name: float(((r[:n_show] < -1 / 256) | (r[:n_show] > 1 + 1 / 256)).float().mean())
        for name, r in recon.items()
    }
    clamped = ", ".join(f"{name} {100 * share:.1f}%" for name, share in outside.items())
    study.figure(
        image_grid(
            panels,
            row_labels=["original", *recon],
            title=f"reconstructions after {config.max_iter} iterations per block",
        ),
        "reconstructions",
        f"Top row: {n_show} test images; below, each model's reconstruction after "
        f"{config.max_iter} fixed-point steps per block, clamped to [0, 1] for display "
        f"(pixels more than 1/256 outside [0, 1] before clamping: {clamped}).",
    )


def _check_targets(
    study: StudyRun, config: Config, metrics: dict[str, Any], totals: np.ndarray
) -> None:
    """Add the summary metrics (``totals``: bound violations, checks, uncertified blocks) and
    check the three targets."""
    top = f"c={max(config.coeffs)}"
    metrics.update(
        iterations_at_max_coeff=int(metrics[f"{_key(top)}_iterations_to_tolerance"]),
        bound_violations=int(totals[0]),
        bound_checks=int(totals[1]),
        uncertified_constrained_blocks=int(totals[2]),
        unconstrained_inverts=bool(metrics["unconstrained_final_relative_error"] <= 1e-3),
    )
    needed = metrics["iterations_at_max_coeff"]
    study.check(
        "iterations_at_max_coeff",
        needed,
        f"<= {config.max_iter_target} steps to rel. error <= {config.tolerance:g} at {top}",
        met=0 < needed <= config.max_iter_target,
    )
    study.check(
        "bound_violations",
        metrics["bound_violations"],
        "= 0 (and every constrained block certified contractive)",
        met=metrics["bound_violations"] == 0 and metrics["uncertified_constrained_blocks"] == 0,
    )
    study.check(
        "unconstrained_fails",
        metrics["unconstrained_final_relative_error"],
        "unconstrained ResNet error after max_iter > 1e-3 (thesis: not guaranteed on MNIST)",
        met=not metrics["unconstrained_inverts"],
    )


@study_entry(
    "iresnet-reconstruction",
    title="iresnet-reconstruction: fixed-point inversion (thesis figures 4.3, 4.4)",
    check=check_coeffs,
)
def run(study: StudyRun, config: Config) -> dict[str, Any]:
    """Train the networks, invert them and write the run directory; returns the metrics."""
    settings: list[tuple[str, float | None]] = [(f"c={c}", c) for c in config.coeffs]
    settings.append(("unconstrained", None))
    study.text(
        f"{len(settings)} residual classifiers with {config.model.n_blocks} blocks trained for "
        f"{config.train.epochs} epoch(s) on {config.dataset}; each inverted with "
        f"1..{config.max_iter} fixed-point steps per block on {config.n_eval} test images. "
        "The lemma 4.5 bound is checked in float64 with the certified Lipschitz bound of "
        "each block."
    )
    train, test = study.load_data(config.dataset, n_train=config.n_train, n_test=config.n_test)
    x_eval = test[0][: config.n_eval]
    grid = iteration_grid(config.max_iter, config.dense_iterations)
    metrics: dict[str, Any] = {"dataset": config.dataset, "max_iter": config.max_iter}
    curves: dict[str, np.ndarray] = {}
    recon: dict[str, Tensor] = {}
    rows: list[dict[str, Any]] = []
    totals = np.zeros(3, dtype=int)  # bound violations, checks, uncertified blocks
    for index, (name, coeff) in enumerate(settings):
        study.seed(index)
        recipe = replace(config.train, seed=config.seed + index, device=str(study.device))
        model = trained_classifier(
            train, recipe, coeff=coeff, progress=config.progress, **asdict(config.model)
        )
        converge_spectral(model)
        save_checkpoint(study.checkpoint_path(_key(name)), model=model)
        found, row, curves[name], recon[name] = _evaluate(model, name, test, x_eval, grid, config)
        metrics.update(found)
        if coeff is not None:
            counts = _bound_violations(model, x_eval, config.max_iter)
            totals += counts
            row["bound violations"] = counts[0]
        rows.append(row)
    _figures(study, grid, curves, x_eval, recon, config)
    study.table(rows, title="Models")
    _check_targets(study, config, metrics, totals)
    return study.finish(metrics)
