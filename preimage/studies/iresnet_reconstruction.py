r"""``preimage run iresnet-reconstruction``: inverting trained i-ResNets by fixed-point iteration.

Small residual classifiers (squeeze, injective padding, residual blocks with 3-1-3 convolution
branches) are trained on MNIST (``smoke``: scikit-learn's 8x8 digits) with spectral
coefficients :math:`c \in \{0.5, 0.7, 0.9\}` and without any constraint (plain convolutions,
the "vanilla ResNet"). For each, the network is inverted with :math:`k` fixed-point steps per
block (thesis algorithm 1) and the worst relative reconstruction error
:math:`\max_i \|x_i - \hat x_i\|_2 / \|x_i\|_2` is plotted against :math:`k` (figure 4.4),
with originals and reconstructions (figure 4.3).

Two checks: at :math:`c = 0.9` the number of steps to reach a relative error
:math:`\le 10^{-5}` in float32 (target :math:`\le 30`); and, in float64, block by block, the
a-posteriori bound of lemma 4.5 with :math:`L` the block's *certified* Lipschitz bound
(exact operator norms, :func:`~preimage.analysis.operator_norm.lipschitz_certificate`) is never
below the true error (violations counted above a round-off floor of :math:`10^{-10}\|x\|`).

Deviation from the thesis: 4 blocks instead of 21 and a few hundred to a few thousand training
steps, to fit the CPU budgets; the thesis (section 4.3.1) finds that vanilla ResNets trained on
MNIST happen to be invertible, so the unconstrained model failing is not guaranteed here either:
the study reports whether it inverts and whether its blocks are certified contractive.

References:
    Behrmann (thesis), *Invertibility and Domain Knowledge*, section 4.3.1, figures 4.3 and
    4.4, algorithm 1, lemma 4.5, appendix A.1.
"""

from __future__ import annotations

import copy
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch

from preimage.analysis.operator_norm import lipschitz_certificate
from preimage.errors import ConfigError
from preimage.nn.iresblock import IResBlock
from preimage.report.plots import image_grid, line_plot, save_figure
from preimage.studies._iresnet_common import (
    ResidualClassifier,
    Target,
    accuracy,
    begin_run,
    converge_spectral,
    finish_run,
    fixed_point_trace,
    invert_with_iterations,
    load_images,
    train_classifier,
)
from preimage.studies.base import StudyConfig
from preimage.train import resolve_device
from preimage.train.checkpoint import save_checkpoint

__all__ = ["Config", "iteration_grid", "run"]


@dataclass(frozen=True)
class Config(StudyConfig):
    """Settings of the reconstruction study (defaults: the ``cpu`` budget).

    ``cpu`` estimate: 4 x 1500 training steps at ~0.09 s/step (measured on one loaded core) plus
    inversions and certificates, about 12-15 minutes.

    Attributes:
        dataset: ``"mnist"`` or ``"digits"``.
        coeffs: spectral coefficients of the i-ResNets.
        n_blocks: residual blocks per network.
        hidden: hidden channels of each branch.
        pad_channels: zero channels appended after the squeeze.
        steps: training steps per network.
        batch_size: training batch size.
        lr: Adam learning rate.
        n_train: training images used (``None``: all).
        n_test: test images for the accuracy.
        n_eval: images reconstructed.
        max_iter: largest number of fixed-point steps per block.
        dense_iterations: every step count up to this one is measured, then 10 log-spaced
            ones up to ``max_iter`` (the iteration count is exact when it is at most this).
        tolerance: relative error that counts as inverted.
        max_iter_target: target on the steps needed at the largest ``c``.
    """

    dataset: str = "mnist"
    coeffs: tuple[float, ...] = (0.5, 0.7, 0.9)
    n_blocks: int = 4
    hidden: int = 32
    pad_channels: int = 4
    steps: int = 1500
    batch_size: int = 64
    lr: float = 1e-3
    n_train: int | None = None
    n_test: int = 2000
    n_eval: int = 32
    max_iter: int = 100
    dense_iterations: int = 32
    tolerance: float = 1e-5
    max_iter_target: int = 30

    BUDGETS: ClassVar[dict[str, dict[str, Any]]] = {
        "smoke": {
            "dataset": "digits",
            "n_blocks": 2,
            "hidden": 16,
            "steps": 80,
            "lr": 3e-3,
            "n_test": 200,
            "n_eval": 16,
            "max_iter": 30,
            "dense_iterations": 20,
        },
        "cpu": {},
        "paper": {"n_blocks": 21, "hidden": 64, "steps": 20_000, "batch_size": 128},
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


def _relative_errors(model: ResidualClassifier, x: torch.Tensor, grid: list[int]) -> np.ndarray:
    with torch.no_grad():
        z, _ = model.body(x)
        norms = x.flatten(1).norm(dim=1)
        out = []
        for k in grid:
            x_rec = invert_with_iterations(model.body, z, k)
            err = ((x_rec - x).flatten(1).norm(dim=1) / norms).max()
            out.append(float(err) if torch.isfinite(err) else math.inf)
    return np.asarray(out)


def _bound_violations(
    model: ResidualClassifier, x: torch.Tensor, n_iter: int
) -> tuple[int, int, int]:
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
                if lip >= 1.0:
                    uncertified += 1
                errors, bounds = fixed_point_trace(layer.g, h, lip, n_iter)
                floor = 1e-10 * float(h.flatten(1).norm(dim=1).max())
                checks += len(errors)
                violations += int(np.sum(errors > bounds + floor))
            h, _ = layer(h)
    return violations, checks, uncertified


def run(
    config: Config, out_dir: str | os.PathLike[str], *, argv: Sequence[str] | None = None
) -> dict[str, Any]:
    """Train the networks, invert them and write the run directory; returns the metrics."""
    if not config.coeffs or any(not 0 < c < 1 for c in config.coeffs):
        raise ConfigError(f"coeffs must be in (0, 1), got {config.coeffs}")
    run_dir = begin_run(config, out_dir, argv, "iresnet-reconstruction")
    device = resolve_device(config.device)
    x_train, y_train = load_images(
        config.dataset, "train", data_dir=config.data_dir, limit=config.n_train, device=device
    )
    x_test, y_test = load_images(
        config.dataset, "test", data_dir=config.data_dir, limit=config.n_test, device=device
    )
    x_eval = x_test[: config.n_eval]
    grid = iteration_grid(config.max_iter, config.dense_iterations)
    in_shape = tuple(x_train.shape[1:])

    curves: dict[str, np.ndarray] = {}
    recon: dict[str, torch.Tensor] = {}
    rows: list[dict[str, Any]] = []
    metrics: dict[str, Any] = {"dataset": config.dataset, "max_iter": config.max_iter}
    total_violations = total_checks = total_uncertified = 0
    settings: list[tuple[str, float | None]] = [(f"c={c}", c) for c in config.coeffs]
    settings.append(("unconstrained", None))
    for index, (name, coeff) in enumerate(settings):
        torch.manual_seed(config.seed + index)
        model = ResidualClassifier(
            in_shape,  # type: ignore[arg-type]
            n_blocks=config.n_blocks,
            hidden=config.hidden,
            coeff=coeff,
            pad_channels=config.pad_channels,
        ).to(device)
        train_classifier(
            model,
            x_train,
            y_train,
            steps=config.steps,
            batch_size=config.batch_size,
            lr=config.lr,
            seed=config.seed + index,
            progress=config.progress,
            description=f"training {name}",
        )
        converge_spectral(model)
        key = name.replace("=", "").replace(".", "")
        save_checkpoint(run_dir.checkpoint_path(key), model=model)
        acc = accuracy(model, x_test, y_test)
        errors = _relative_errors(model, x_eval, grid)
        curves[name] = errors
        with torch.no_grad():
            z, _ = model.body(x_eval)
            recon[name] = invert_with_iterations(model.body, z, config.max_iter).cpu()
        reached = [k for k, e in zip(grid, errors, strict=True) if e <= config.tolerance]
        needed = reached[0] if reached else -1
        certs = lipschitz_certificate(model.body, x_eval[:1])
        worst = max(c.bound for c in certs)
        metrics[f"{key}_test_accuracy"] = acc
        metrics[f"{key}_final_relative_error"] = float(errors[-1])
        metrics[f"{key}_iterations_to_tolerance"] = needed
        metrics[f"{key}_max_certified_lipschitz"] = worst
        row: dict[str, Any] = {
            "model": name,
            "test accuracy": acc,
            "max certified Lip(g)": worst,
            f"steps to rel. error <= {config.tolerance:g}": needed if needed > 0 else "never",
            f"rel. error after {config.max_iter}": float(errors[-1]),
        }
        if coeff is not None:
            violations, checks, uncertified = _bound_violations(model, x_eval, config.max_iter)
            total_violations += violations
            total_checks += checks
            total_uncertified += uncertified
            row["bound violations"] = violations
        rows.append(row)

    top = f"c={max(config.coeffs)}"
    needed_top = int(metrics[f"{top.replace('=', '').replace('.', '')}_iterations_to_tolerance"])
    unconstrained_final = float(curves["unconstrained"][-1])
    unconstrained_fails = not unconstrained_final <= 1e-3
    metrics.update(
        {
            "iterations_at_max_coeff": needed_top,
            "bound_violations": total_violations,
            "bound_checks": total_checks,
            "uncertified_constrained_blocks": total_uncertified,
            "unconstrained_inverts": not unconstrained_fails,
        }
    )

    fig = line_plot(
        grid,
        {name: np.where(np.isfinite(e), e, np.nan) for name, e in curves.items()},
        xlabel="fixed-point iterations per block",
        ylabel="max relative reconstruction error",
        title="reconstruction error vs iterations (float32)",
        logy=True,
    )
    ax = fig.axes[0]
    ax.axhline(config.tolerance, color="k", ls=":", lw=1)
    save_figure(fig, run_dir.figures / "error_vs_iterations.png")
    n_show = min(8, x_eval.shape[0])
    panels = [x_eval[:n_show].cpu()] + [recon[name][:n_show] for name, _ in settings]
    grid_images = torch.stack(panels).clamp(0, 1)
    save_figure(
        image_grid(
            grid_images,
            row_labels=["original"] + [name for name, _ in settings],
            title=f"reconstructions after {config.max_iter} iterations per block",
        ),
        run_dir.figures / "reconstructions.png",
    )
    targets = [
        Target(
            "iterations_at_max_coeff",
            needed_top,
            f"<= {config.max_iter_target} steps to rel. error <= {config.tolerance:g} at {top}",
            0 < needed_top <= config.max_iter_target,
        ),
        Target(
            "bound_violations",
            total_violations,
            "= 0 (and every constrained block certified contractive)",
            total_violations == 0 and total_uncertified == 0,
        ),
        Target(
            "unconstrained_fails",
            unconstrained_final,
            "unconstrained ResNet error after max_iter > 1e-3 (thesis: not guaranteed on MNIST)",
            unconstrained_fails,
        ),
    ]
    intro = (
        f"{len(settings)} residual classifiers with {config.n_blocks} blocks trained for "
        f"{config.steps} steps on {config.dataset}; each inverted with 1..{config.max_iter} "
        f"fixed-point steps per block on {x_eval.shape[0]} test images. The lemma 4.5 bound is "
        f"checked in float64 with the certified Lipschitz bound of each block "
        f"({total_checks} block-steps)."
    )
    return finish_run(
        run_dir,
        config,
        title="iresnet-reconstruction: fixed-point inversion (thesis figures 4.3, 4.4)",
        intro=intro,
        metrics=metrics,
        targets=targets,
        figures=[
            ("error_vs_iterations.png", "Worst relative error vs fixed-point steps per block."),
            ("reconstructions.png", "Originals and reconstructions of each model."),
        ],
        tables=[("Models", rows)],
    )
