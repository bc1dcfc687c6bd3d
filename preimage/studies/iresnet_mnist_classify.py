r"""``preimage run iresnet-mnist-classify``: an i-ResNet classifier on MNIST (thesis A.1).

Trains :class:`~preimage.models.iresnet.IResNetLinear` (injective padding, stages of residual
blocks with 3-1-3 spectrally normalised convolutions and ActNorm, squeezes between stages,
batch-norm / ELU / average-pooling / linear read-out) with :class:`~preimage.train.Trainer`,
then reports the test error, converges the power iterations and checks invertibility: the
reconstruction error :math:`\max|x - F^{-1}(F(x))|` of test images and the fixed-point steps
each block needed.

The spectral normalisation divides by a power-iteration estimate from below (thesis eq. 4.9),
so the layers' exact operator norms can exceed :math:`c` while training (remark 4.9). A
:class:`~preimage.analysis.operator_norm.SpectralNormMonitor` measures every layer's exact
:math:`\|\tilde A\|_2 / c` as training leaves it, every ``norm_check_every`` steps and at the
end of each epoch, and records the largest per epoch in the history (``max_norm_ratio``); target
``max_trained_norm_ratio`` :math:`\le 1 + 10^{-3}`. The test error is reported for the model as
trained and for the converged (certified) model.

Target (``cpu``): test error :math:`\le 1.0\%` (thesis: 0.38-0.42 %). The ``cpu`` settings were
sized from throughput measurements on the development machine (BENCHMARKS.md): three stages
end at :math:`7 \times 7 \times 128` like the thesis's pooled :math:`8 \times 8 \times 256`
tensor at the same cost per block as two wider stages.

Deviations from the thesis: fewer and narrower blocks and epochs on the CPU budgets; inputs in
:math:`[0, 1]` instead of :math:`[-0.5, 0.5]` (ActNorm after every block adapts to the offset);
on the CPU budgets a per-step cosine decay of the learning rate (the paper budget: a single step
schedule, every ``lr_step`` epochs) instead of decays at epochs 60, 120 and 160. The power
iteration's vectors are re-aligned with the moving weights by ``model.krylov`` Lanczos steps
before each training step's power step, and the monitor resets a layer that exceeds the
tolerance to its exact top singular pair (thesis: one power step, norms checked after training);
with one power step alone the trained norms sat percents above c (BENCHMARKS.md). Eq. 4.9 itself
is unchanged: the weight is divided by the estimate from below.

References:
    Behrmann (thesis), *Invertibility and Domain Knowledge*, section 4.3 (table of MNIST
    errors) and appendix A.1.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import Any, ClassVar

import matplotlib.pyplot as plt
import torch
from matplotlib.figure import Figure
from torch import Tensor

from preimage.analysis.operator_norm import SpectralNormMonitor, spectral_norm_ratios
from preimage.errors import ConvergenceError
from preimage.models.iresnet import IResNetConfig, IResNetLinear, build_iresnet
from preimage.report.plots import reconstruction_figure, training_curves
from preimage.studies.base import StudyConfig
from preimage.studies.kit import StudyRun, study_entry
from preimage.train import TrainConfig, Trainer

__all__ = ["Config", "run"]


@dataclass(frozen=True)
class Config(StudyConfig):
    r"""Settings of the MNIST classifier (defaults: the ``cpu`` budget).

    Attributes:
        dataset: ``"mnist"`` (or ``"digits"``).
        model: the network (:class:`~preimage.models.IResNetConfig`; ``cpu``: 3 stages x 2
            blocks, 32 hidden channels, padded to 8 channels, c = 0.9, one power step and 64
            Lanczos steps of re-alignment per training step; 48 let one layer reach
            1.0011 c in a 9-epoch run, BENCHMARKS.md).
        train: the recipe (:class:`~preimage.train.TrainConfig`; ``cpu``: 9 epochs of Adam,
            batch 128, learning rate 1e-3 on a per-step cosine decay, random shifts of up to 2
            pixels as the thesis uses on MNIST, no dequantisation; its ``seed`` and ``device``
            follow the study's).
        n_train: training images, a random subset (``None``: all).
        n_test: test images evaluated, a random subset.
        n_recon: test images reconstructed.
        error_target: target test error.
        norm_check_every: training steps between exact operator-norm checks (``None``: only at
            the end of each epoch).
        norm_tolerance: the target :math:`\|\tilde A\|_2 \le c (1 + \text{tol})` of every layer
            as trained; a layer above it is re-aligned to its exact top singular pair.
        norm_correct: re-align such layers (``False``: only measure).
    """

    dataset: str = "mnist"
    model: IResNetConfig = field(
        default_factory=lambda: IResNetConfig(
            stages=3, blocks_per_stage=2, hidden=32, coeff=0.9, pad_channels=8, krylov=64
        )
    )
    train: TrainConfig = field(
        default_factory=lambda: TrainConfig(
            epochs=9,
            batch_size=128,
            lr=1e-3,
            optimizer="adam",
            weight_decay=0.0,
            lr_decay=0.2,
            lr_step=3,
            lr_schedule="cosine",
            max_shift=2,
            dequantize=False,
        )
    )
    n_train: int | None = None
    n_test: int = 10_000
    n_recon: int = 64
    error_target: float = 0.01
    norm_check_every: int | None = 25
    norm_tolerance: float = 1e-3
    norm_correct: bool = True

    BUDGETS: ClassVar[dict[str, dict[str, Any]]] = {
        "smoke": {
            "model.stages": 2,
            "model.blocks_per_stage": 1,
            "model.hidden": 8,
            "model.pad_channels": 4,
            "train.epochs": 1,
            "train.batch_size": 32,
            "train.max_steps_per_epoch": 4,
            "n_train": 256,
            "n_test": 128,
            "n_recon": 8,
            "model.krylov": 6,
            "norm_check_every": 2,
        },
        "cpu": {},
        "paper": {
            "model.blocks_per_stage": 7,
            "model.pad_channels": 16,
            "train.epochs": 200,
            "train.lr": 0.1,
            "train.optimizer": "sgd",
            "train.weight_decay": 5e-4,
            "train.lr_step": 60,
            "train.lr_schedule": "step",
        },
    }


def _reconstruct(model: IResNetLinear, x: Tensor) -> tuple[Tensor, bool]:
    """``F^-1(F(x))`` by the blocks' fixed-point inverses; NaN where it did not converge."""
    with torch.no_grad():
        z, _ = model(x)
        try:
            return model.inverse(z), True
        except ConvergenceError:
            return torch.full_like(x, float("nan")), False


def _fit(
    study: StudyRun, config: Config, train: tuple[Tensor, Tensor], test: tuple[Tensor, Tensor]
) -> tuple[IResNetLinear, Trainer, SpectralNormMonitor, dict[str, Any]]:
    """Build and train the classifier, its exact operator norms monitored as it trains."""
    study.seed()
    model = build_iresnet(tuple(train[0].shape[1:]), 10, **asdict(config.model))
    recipe = replace(config.train, seed=config.seed, device=str(study.device))
    monitor = SpectralNormMonitor(
        check_every=config.norm_check_every,
        tolerance=config.norm_tolerance,
        correct=config.norm_correct,
    )
    trainer = Trainer(
        model,
        train,
        test,
        recipe,
        out_dir=study.path,
        callbacks=[monitor],
        progress=config.progress,
    )
    return model, trainer, monitor, trainer.fit()


def _figures(
    study: StudyRun,
    config: Config,
    history: list[dict[str, Any]],
    images: tuple[Tensor, Tensor],
    norms: tuple[SpectralNormMonitor, dict[str, float]],
) -> None:
    """Training curves, reconstructions ``images = (x, x_rec)`` and the operator norms."""
    x, x_rec = images
    lr_varies = len({h["lr"] for h in history}) > 1
    study.figure(
        training_curves(history),
        "training_curves",
        "Cross-entropy (left) and accuracy (middle) per epoch on the training batches "
        "(augmented, averaged over the epoch) and on the test images"
        + (
            ", and the learning rate (right)." if lr_varies else "; the learning rate was constant."
        ),
    )
    n = min(8, x.shape[0])
    study.figure(
        reconstruction_figure(x[:n].cpu(), x_rec[:n].cpu()),
        "reconstructions",
        f"{n} test images and their fixed-point reconstructions F^-1(F(x)) after converging "
        "the power iterations.",
    )
    study.figure(
        _norm_figure(*norms, config.norm_tolerance),
        "operator_norms",
        "Left: the largest exact operator norm / c - 1 over all spectral layers per epoch, "
        f"measured on the model as training left it (every {config.norm_check_every} steps and "
        "at the epoch's end, before any correction). Right: each layer's exact norm / c - 1 at "
        "the end of training and after converge(). Dashed: the target tolerance; the y axis "
        "is linear within 1e-5 of zero and logarithmic beyond (negative: below c).",
    )


def _norm_figure(
    monitor: SpectralNormMonitor, converged: dict[str, float], tolerance: float
) -> Figure:
    """Per-epoch largest exact norm / c - 1 as trained; every layer's at the end and converged."""
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 3.6), constrained_layout=True)
    epochs = [c.epoch for c in monitor.epochs]
    left.plot(epochs, [c.max_ratio - 1 for c in monitor.epochs], "o-", label="largest, as trained")
    end = monitor.epochs[-1].end_ratios if monitor.epochs else {}
    right.plot(range(len(end)), [r - 1 for r in end.values()], "o", label="as trained (end)")
    right.plot(range(len(end)), [converged[n] - 1 for n in end], "x", label="after converge()")
    left.set(xlabel="epoch", title="Largest layer per epoch (all checks)")
    left.set_xticks(epochs)
    right.set(xlabel="spectral layer (module order)", title="Every layer at the end of training")
    for ax in (left, right):
        ax.axhline(tolerance, color="tab:red", ls="--", label=f"target: {tolerance:g}")
        ax.axhline(0.0, color="grey", lw=0.8)
        ax.set_yscale("symlog", linthresh=1e-5)
        ax.set_ylabel("exact ||A|| / c - 1")
        ax.legend(fontsize=8)
    return fig


def _check_norms(study: StudyRun, monitor: SpectralNormMonitor, tol: float) -> float:
    study.table(
        [
            {
                "epoch": c.epoch,
                "largest exact norm / c - 1": f"{c.max_ratio - 1:+.2e}",
                "layer": c.worst_layer,
                "checks": c.checks,
                "corrections": c.corrections,
            }
            for c in monitor.epochs
        ],
        title="Exact operator norms as trained, per epoch (before any correction)",
    )
    worst = max(monitor.epochs, key=lambda c: c.max_ratio)
    study.check(
        "max_trained_norm_ratio",
        round(worst.max_ratio, 6),
        f"<= {1 + tol:g}: every layer's exact operator norm as trained, over "
        f"{sum(c.checks for c in monitor.epochs)} checks (worst: epoch {worst.epoch}, layer "
        f"{worst.worst_layer}), before any correction",
        met=worst.max_ratio <= 1.0 + tol,
    )
    return worst.max_ratio


@study_entry(
    "iresnet-mnist-classify",
    title="iresnet-mnist-classify: i-ResNet classifier (thesis appendix A.1)",
)
def run(study: StudyRun, config: Config) -> dict[str, Any]:
    """Train and evaluate the i-ResNet classifier; writes the run directory."""
    m, t = config.model, config.train
    study.text(
        f"IResNet with {m.stages} stages x {m.blocks_per_stage} blocks, {m.hidden} hidden "
        f"channels, c = {m.coeff}, padded to {m.pad_channels} channels; {t.epochs} epoch(s) "
        f"of {t.optimizer} (batch {t.batch_size}) on {config.n_train or 'all'} "
        f"{config.dataset} training images; test error on {config.n_test} test images. "
        f"{m.n_power_iterations} power step(s) and {m.krylov} Lanczos steps of re-alignment "
        f"per training step; exact operator norms checked every {config.norm_check_every} "
        "steps and at each epoch's end (thesis section 4.2.1, remark 4.9)."
    )
    train, test = study.load_data(config.dataset, n_train=config.n_train, n_test=config.n_test)
    model, trainer, monitor, final = _fit(study, config, train, test)
    error_as_trained = 1.0 - float(trainer.evaluate(*test)["accuracy"])
    model.eval()
    model.converge(2000, rtol=1e-10)
    converged = spectral_norm_ratios(model)
    test_error = 1.0 - float(trainer.evaluate(*test)["accuracy"])
    x_in = test[0][: config.n_recon]
    x_rec, inverted = _reconstruct(model, x_in)
    recon_error = float((x_rec - x_in).abs().max())
    steps = [d.iterations for d in model.last_inverse if d is not None]
    rates = [h["samples_per_s"] for h in trainer.history if "samples_per_s" in h]
    _figures(study, config, trainer.history, (x_in, x_rec), (monitor, converged))
    metrics: dict[str, Any] = {
        "test_error": test_error,
        "test_accuracy": 1.0 - test_error,
        "test_error_as_trained": error_as_trained,
        "test_images": int(test[0].shape[0]),
        "epochs": t.epochs,
        "train_loss": float(final.get("train_loss", float("nan"))),
        "samples_per_s": float(sum(rates) / len(rates)) if rates else 0.0,
        "inverted": inverted,
        "reconstruction_max_abs_error": recon_error,
        "max_fixed_point_steps": max(steps) if steps else -1,
        "parameters": sum(p.numel() for p in model.parameters()),
        "max_trained_norm_ratio": _check_norms(study, monitor, config.norm_tolerance),
        "max_norm_ratio_per_epoch": [c.max_ratio for c in monitor.epochs],
        "norm_corrections": sum(c.corrections for c in monitor.epochs),
        "max_converged_norm_ratio": max(converged.values()),
    }
    # The trainer wrote its history before the monitor added the last epoch's norms.
    study.dir.write_metrics({"history": trainer.history})
    study.check(
        "test_error",
        round(test_error, 5),
        f"<= {config.error_target:g} at the cpu budget (thesis 0.0038-0.0042)",
        met=test_error <= config.error_target,
    )
    study.check(
        "invertible",
        recon_error,
        f"max |x - F^-1(F(x))| over {x_in.shape[0]} test images <= 1e-4",
        met=recon_error <= 1e-4,
    )
    return study.finish(metrics)
