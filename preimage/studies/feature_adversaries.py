r"""``preimage run feature-adversaries``: optimised vs analytic logit metamers (appendix B).

A network without an inverse still has logit pre-images: the feature-adversary attack
(:class:`~preimage.attacks.LogitMetamer`) starts from a source image and minimises, with Adam
(learning rate 0.01, at most 3000 steps), the mean squared error between its logits and those
of a target image, equation 8. On a fully invertible RevNet the same pre-image point is one
inverse pass away: :math:`x_{met} = F^{-1}(z_s(\text{target}), z_n(\text{source}))` matches the
target's logits exactly (:func:`~preimage.attacks.metameric_sample`).

The study attacks the non-invertible ``cnn`` baseline and the CE-trained fi-RevNet with
``LogitMetamer`` on the same image pairs (stopping each sample at a logit MSE of
``tol = 1e-2``), times the analytic metamer of the fi-RevNet on the same pairs, and reports the
wall-time ratio. Targets: the analytic metamer matches the logits to a mean squared error of at
most :math:`10^{-4}`, at least 1000 times faster than ``LogitMetamer`` reaches an MSE of
:math:`10^{-2}` on the fi-RevNet.

Deviations, and why: the paper attacks an ImageNet ResNet-152; here it is the MNIST ``cnn``
baseline (CPU budget; the fi-RevNet is the CE model of :mod:`preimage.studies.ce_ice_models`).
The wall-time ratio uses the fi-RevNet for both methods (same network,
same images); the CNN's time is reported alongside. Analytic times are the median of
``timing_repeats`` runs, since a single inverse pass is too short to time once.

References:
    Jacobsen, Behrmann, Zemel, Bethge (2019), *Excessive Invariance Causes Adversarial
    Vulnerability*, appendix B (equation 8) and section 2.1 ("Attack on MNIST and ImageNet").
    Sabour et al. (2016), *Adversarial Manipulation of Deep Representations*.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from preimage.attacks import LogitMetamer, metameric_sample
from preimage.report import plots
from preimage.studies import ce_ice_models as cim
from preimage.studies.kit import StudyRun, study_entry
from preimage.train import TrainConfig

__all__ = ["Config", "run"]


@dataclass(frozen=True)
class Config(cim.MnistStudyConfig):
    """Settings of the feature-adversaries study (defaults: the ``cpu`` budget).

    The MNIST, ``train`` and ``model`` fields are those of
    :class:`~preimage.studies.ce_ice_models.MnistStudyConfig`; ``train`` applies to the
    fi-RevNet and to the CNN.

    Attributes:
        cnn_width: channels of the CNN's first stage (16 at ``cpu``, to fit the budget;
            BENCHMARKS.md).
        n_images: image pairs attacked.
        steps: LogitMetamer's step limit (paper: 3000).
        lr: LogitMetamer's Adam learning rate (paper: 0.01).
        tol: logit MSE at which LogitMetamer stops a sample.
        timing_repeats: repetitions of the analytic metamer for its median time.

    Example:
        >>> Config.for_budget("paper").steps
        3000
    """

    train: TrainConfig = field(default_factory=lambda: TrainConfig(epochs=8, lr_step=3))
    cnn_width: int = 16
    n_images: int = 16
    steps: int = 3000
    lr: float = 0.01
    tol: float = 1e-2
    timing_repeats: int = 20

    BUDGETS: ClassVar[dict[str, dict[str, Any]]] = {
        "smoke": {
            **cim.MNIST_SMOKE,
            "cnn_width": 8,
            "n_images": 4,
            "steps": 60,
            "timing_repeats": 3,
        },
        "cpu": {},
        "paper": {**cim.MNIST_PAPER, "n_images": 64},
    }


def _timed_metamer(
    revnet: nn.Module, target: Tensor, source: Tensor, repeats: int
) -> tuple[Tensor, float]:
    """The analytic metamer F^-1(z_s(target), z_n(source)) and its median wall time."""
    times = []
    for _ in range(repeats):
        if target.device.type == "cuda":
            torch.cuda.synchronize(target.device)
        start = time.perf_counter()
        x_met = metameric_sample(revnet, target, source)
        if target.device.type == "cuda":
            torch.cuda.synchronize(target.device)
        times.append(time.perf_counter() - start)
    return x_met, statistics.median(times)


def _figures(study: StudyRun, rows: list[Tensor], results: dict[str, Any]) -> None:
    labels = ["source", "target", f"LM {cim.BASELINE}", "LM fi-RevNet", "analytic"]
    grid = torch.stack([r.clamp(0, 1) for r in rows])
    fig = plots.image_grid(
        grid.cpu(), row_labels=labels, title="logit metamers: optimised (LM) and analytic"
    )
    study.figure(
        fig, "feature_adversaries",
        "Rows 3-5 have (approximately, for LogitMetamer; exactly, for the analytic metamer) the "
        "logits of the target row while starting from (LM) or keeping the nuisance of (analytic) "
        "the source row. Values clamped to [0, 1] for display: "
        f"{100 * plots.clamped_share(rows[4]):.1f}% of the analytic metamers' pixels lay outside.",
    )  # fmt: skip
    history = results["firevnet"].extras["history"]
    fig = plots.line_plot(
        list(range(1, len(history) + 1)), {"fi-RevNet": history}, xlabel="Adam step",
        ylabel="mean logit MSE", title="LogitMetamer convergence", logy=True,
    )  # fmt: skip
    study.figure(
        fig,
        "logitmetamer_convergence",
        "LogitMetamer on the fi-RevNet: mean logit MSE to the targets per Adam step.",
    )


def _attacks(config: Config, models: dict[str, nn.Module], source: Tensor, target: Tensor,
             metrics: dict[str, Any]) -> dict[str, Any]:  # fmt: skip
    """LogitMetamer from ``source`` to ``target``'s logits on each model; adds its metrics."""
    attack = LogitMetamer(steps=config.steps, lr=config.lr, tol=config.tol)
    results = {name: attack(model, source, target) for name, model in models.items()}
    for name, res in results.items():
        metrics[f"logitmetamer_{name}_wall_time_s"] = float(res.extras["wall_time_s"])
        metrics[f"logitmetamer_{name}_success_rate"] = res.success_rate
        metrics[f"logitmetamer_{name}_mean_mse"] = float(res.distance.mean())
        metrics[f"logitmetamer_{name}_max_steps_used"] = int(res.extras["steps_used"].max())
    return results


@study_entry(
    "feature-adversaries",
    title="Feature adversaries vs analytic metamers (appendix B)",
    check=cim.check_recipe,
)
def run(study: StudyRun, config: Config) -> dict[str, Any]:
    """Run the study into ``out_dir`` and return its metrics."""
    study.text(
        f"LogitMetamer (Adam, lr {config.lr}, at most {config.steps} steps, stop at logit "
        f"MSE {config.tol}) moves {config.n_images} source images until their logits match those "
        f"of target images of another class, on the non-invertible baseline ({cim.BASELINE}) and "
        "on the CE fi-RevNet. The analytic metamer F^-1(z_s(target), z_n(source)) of the "
        "fi-RevNet gets there in one inverse pass."
    )
    recipe = cim.study_recipe(config, config.train)
    study.seed()
    device = study.device
    train, test = cim.load_mnist(config)
    revnet = cim.obtain_firevnet(
        study, "ce", "ce", train, test, model=config.model, recipe=recipe,
        model_dir=config.model_dir, progress=config.progress,
    ).model  # fmt: skip
    cnn = cim.obtain_plain_classifier(
        study, "cnn", train, test, recipe=recipe, width=config.cnn_width, progress=config.progress
    ).model
    metrics: dict[str, Any] = {
        "baseline_architecture": cim.BASELINE,
        "firevnet_test_error": cim.error_on(revnet.logits, test, device),
        "baseline_test_error": cim.error_on(cnn, test, device),
    }
    x_test = test[0].to(device)
    idx_src, idx_tgt = cim.different_label_pairs(test[1], config.n_images, config.seed + 5)
    source, target = x_test[idx_src.to(device)], x_test[idx_tgt.to(device)]
    results = _attacks(config, {"cnn": cnn, "firevnet": revnet}, source, target, metrics)
    x_met, analytic_time = _timed_metamer(revnet, target, source, config.timing_repeats)
    with torch.no_grad():
        diff = revnet.logits(x_met) - revnet.logits(target)
    metrics["analytic_wall_time_s"] = analytic_time
    metrics["analytic_logit_mse"] = float(diff.pow(2).mean(dim=1).max())
    metrics["analytic_max_abs_logit_error"] = float(diff.abs().max())
    metrics["speedup_firevnet"] = metrics["logitmetamer_firevnet_wall_time_s"] / analytic_time
    metrics["speedup_vs_cnn"] = metrics["logitmetamer_cnn_wall_time_s"] / analytic_time
    k = min(6, config.n_images)
    _figures(
        study,
        [
            source[:k],
            target[:k],
            results["cnn"].x_adv[:k],
            results["firevnet"].x_adv[:k],
            x_met[:k],
        ],
        results,
    )
    study.check("analytic_logit_mse", metrics["analytic_logit_mse"], "<= 1e-4")
    study.check(
        "logitmetamer_reaches_tol", metrics["logitmetamer_firevnet_success_rate"], "= 1",
        met=metrics["logitmetamer_firevnet_success_rate"] == 1.0,
    )  # fmt: skip
    study.check("speedup_firevnet", metrics["speedup_firevnet"], ">= 1000")
    study.text(
        f"Wall-time ratio LogitMetamer / analytic metamer: {metrics['speedup_firevnet']:.0f}x."
    )
    return study.finish(metrics)
