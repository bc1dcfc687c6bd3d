r"""``preimage run iresnet-mnist-classify``: an i-ResNet classifier on MNIST (thesis A.1).

Trains :class:`~preimage.models.iresnet.IResNetLinear` (injective padding, stages of residual
blocks with 3-1-3 spectrally normalised convolutions and ActNorm, squeezes between stages,
batch-norm / ELU / average-pooling / linear read-out) with :class:`~preimage.train.Trainer`,
then reports the test error, converges the power iterations and checks invertibility: the
reconstruction error :math:`\max|x - F^{-1}(F(x))|` of test images and the fixed-point steps
each block needed.

Target (``cpu``): test error :math:`\le 1.0\%` (thesis: 0.38-0.42 %). The ``cpu`` settings are
sized from a throughput measurement on the development machine (2 shared cores): see the
``Config`` docstring.

Deviations from the thesis: fewer and narrower blocks and epochs on the CPU budgets; inputs in
:math:`[0, 1]` instead of :math:`[-0.5, 0.5]` (ActNorm after every block adapts to the offset);
a single step learning-rate schedule (every ``lr_step`` epochs) instead of decays at epochs
60, 120 and 160.

References:
    Behrmann (thesis), *Invertibility and Domain Knowledge*, section 4.3 (table of MNIST
    errors) and appendix A.1.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import torch

from preimage.errors import ConvergenceError
from preimage.models.iresnet import IResNetLinear
from preimage.report.plots import reconstruction_figure, save_figure, training_curves
from preimage.studies._iresnet_common import Target, begin_run, finish_run, load_train_test
from preimage.studies.base import StudyConfig
from preimage.train import TrainConfig, Trainer, resolve_device

__all__ = ["Config", "run"]


@dataclass(frozen=True)
class Config(StudyConfig):
    """Settings of the MNIST classifier (defaults: the ``cpu`` budget).

    The ``cpu`` budget (3 stages x 2 blocks, 32 hidden channels, 8 padded channels, 6 epochs
    of batch 128, learning rate x0.2 after epoch 3) was sized from throughput measurements on
    the development machine with one intra-op thread. A first run with 2 stages x 3 blocks
    (14 x 14 x 32 before the pooling) reached only 90.3% and 91.2% test accuracy after one and
    two epochs; three stages end at 7 x 7 x 128 like the thesis's pooled 8 x 8 x 256 tensor,
    cost the same per block (channels x pixels is constant) and trained at 178 instead of 141
    samples/s in a side-by-side measurement on the shared machine. Measured at this budget
    (2026-11-21, one thread, the other core busy): 1.23% test error (target 1.0%: missed),
    34 minutes, 197 samples/s.

    Attributes:
        dataset: ``"mnist"`` (or ``"digits"``).
        stages: stages of the network (squeeze between stages).
        blocks_per_stage: residual blocks per stage.
        hidden: hidden channels of each branch.
        coeff: spectral coefficient :math:`c`.
        pad_channels: channels after injective padding.
        epochs: training epochs.
        batch_size: training batch size.
        lr: learning rate.
        optimizer: ``"adam"``, ``"adamax"`` or ``"sgd"``.
        weight_decay: l2 penalty.
        lr_step: epochs between learning-rate decays (factor 0.2).
        max_shift: random shifts in pixels (thesis: 2 on MNIST).
        max_steps_per_epoch: cap on steps per epoch (``None``: full epochs).
        n_train: training images used (``None``: all).
        n_test: test images evaluated.
        n_recon: test images reconstructed.
        error_target: target test error.
    """

    dataset: str = "mnist"
    stages: int = 3
    blocks_per_stage: int = 2
    hidden: int = 32
    coeff: float = 0.9
    pad_channels: int = 8
    epochs: int = 6
    batch_size: int = 128
    lr: float = 1e-3
    optimizer: str = "adam"
    weight_decay: float = 0.0
    lr_step: int = 3
    max_shift: int = 2
    max_steps_per_epoch: int | None = None
    n_train: int | None = None
    n_test: int = 10_000
    n_recon: int = 64
    error_target: float = 0.01

    BUDGETS: ClassVar[dict[str, dict[str, Any]]] = {
        "smoke": {
            "stages": 2,
            "blocks_per_stage": 1,
            "hidden": 8,
            "pad_channels": 4,
            "epochs": 1,
            "batch_size": 32,
            "max_steps_per_epoch": 4,
            "n_train": 256,
            "n_test": 128,
            "n_recon": 8,
        },
        "cpu": {},
        "paper": {
            "stages": 3,
            "blocks_per_stage": 7,
            "hidden": 32,
            "epochs": 200,
            "lr": 0.1,
            "optimizer": "sgd",
            "weight_decay": 5e-4,
            "pad_channels": 16,
            "lr_step": 60,
        },
    }


def run(
    config: Config, out_dir: str | os.PathLike[str], *, argv: Sequence[str] | None = None
) -> dict[str, Any]:
    """Train and evaluate the i-ResNet classifier; writes the run directory."""
    run_dir = begin_run(config, out_dir, argv, "iresnet-mnist-classify")
    device = resolve_device(config.device)
    (x_train, y_train), (x_test, y_test) = load_train_test(config, config.n_test, device)
    torch.manual_seed(config.seed)
    model = IResNetLinear(
        tuple(x_train.shape[1:]),
        10,
        stages=config.stages,
        blocks_per_stage=config.blocks_per_stage,
        hidden=config.hidden,
        coeff=config.coeff,
        pad_channels=config.pad_channels,
    )
    train = TrainConfig(
        epochs=config.epochs,
        batch_size=config.batch_size,
        lr=config.lr,
        optimizer=config.optimizer,
        weight_decay=config.weight_decay,
        lr_decay=0.2,
        lr_step=config.lr_step,
        max_shift=config.max_shift,
        dequantize=False,
        seed=config.seed,
        device=str(device),
        max_steps_per_epoch=config.max_steps_per_epoch,
    )
    trainer = Trainer(
        model,
        (x_train, y_train),
        (x_test, y_test),
        train,
        out_dir=run_dir.path,
        progress=config.progress,
    )
    final = trainer.fit()
    model.eval()
    model.converge(2000, rtol=1e-10)
    evaluation = trainer.evaluate(x_test, y_test)
    test_error = 1.0 - float(evaluation["accuracy"])
    x_rec_in = x_test[: config.n_recon]
    inverted = True
    with torch.no_grad():
        z, _ = model(x_rec_in)
        try:
            x_rec = model.inverse(z)
        except ConvergenceError:
            inverted = False
            x_rec = torch.full_like(x_rec_in, float("nan"))
    recon_error = float((x_rec - x_rec_in).abs().max())
    steps = [d.iterations for d in model.last_inverse if d is not None]
    samples_per_s = [h["samples_per_s"] for h in trainer.history if "samples_per_s" in h]

    save_figure(training_curves(trainer.history), run_dir.figures / "training_curves.png")
    save_figure(
        reconstruction_figure(x_rec_in[:8].cpu(), x_rec[:8].cpu()),
        run_dir.figures / "reconstructions.png",
    )
    metrics: dict[str, Any] = {
        "test_error": test_error,
        "test_accuracy": 1.0 - test_error,
        "test_images": int(x_test.shape[0]),
        "epochs": config.epochs,
        "train_loss": float(final.get("train_loss", float("nan"))),
        "samples_per_s": float(sum(samples_per_s) / len(samples_per_s)) if samples_per_s else 0.0,
        "inverted": inverted,
        "reconstruction_max_abs_error": recon_error,
        "max_fixed_point_steps": max(steps) if steps else -1,
        "parameters": sum(p.numel() for p in model.parameters()),
    }
    targets = [
        Target(
            "test_error",
            round(test_error, 5),
            f"<= {config.error_target:g} at the cpu budget (thesis 0.0038-0.0042)",
            test_error <= config.error_target,
        ),
        Target("invertible", recon_error, "max |x - F^-1(F(x))| <= 1e-4", recon_error <= 1e-4),
    ]
    intro = (
        f"IResNet with {config.stages} stages x {config.blocks_per_stage} blocks, {config.hidden} "
        f"hidden channels, c = {config.coeff}, padded to {config.pad_channels} channels; "
        f"{config.epochs} epoch(s) of {config.optimizer} (batch {config.batch_size}) on "
        f"{x_train.shape[0]} {config.dataset} images; test error on {x_test.shape[0]} images."
    )
    return finish_run(
        run_dir,
        config,
        title="iresnet-mnist-classify: i-ResNet classifier (thesis appendix A.1)",
        intro=intro,
        metrics=metrics,
        targets=targets,
        figures=[
            ("training_curves.png", "Training and test loss / accuracy per epoch."),
            ("reconstructions.png", "Test images and their fixed-point reconstructions."),
        ],
    )
