r"""``preimage run iresnet-mnist-flow``: an i-ResNet density model on MNIST (thesis A.2).

Trains :class:`~preimage.models.iresnet_flow.IResNetFlow` by maximum likelihood on dequantised MNIST
(:math:`x \mapsto (255x + u)/256`, done by :class:`~preimage.train.Trainer`), the log-det of
every block estimated during training (``logdet``: by default the unbiased Russian roulette
with the Neumann-series gradient of Residual Flows, which trains about twice as fast as
back-propagating through the roulette series; thesis A.2 uses the 10-term power series), then
evaluates bits/dim on test images with the protocol of appendix A.2
(:meth:`~preimage.models.iresnet_flow.IResNetFlow.bits_per_dim`: series length from the theorem-5.8
bound with certified Lipschitz constants, Hutchinson probes until the standard error is small)
and draws a grid of samples :math:`F^{-1}(z)`.

Target (``cpu``): bits/dim :math:`\le 1.4` (thesis: 1.06 after 200 epochs). The ``cpu``
settings are an estimate from a throughput measurement, not a measured result (see
``Config``).

Deviations from the thesis: far fewer blocks, channels and epochs on the CPU budgets; the
evaluation's bias and standard-error tolerances are looser at ``smoke``/``cpu`` (reported in the
metrics) to keep evaluation affordable.

References:
    Behrmann (thesis), *Invertibility and Domain Knowledge*, sections 5.2-5.4 and appendix A.2.
    Chen et al. (2019), *Residual Flows*, section 3.1.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from preimage.errors import ConvergenceError
from preimage.models.iresnet_flow import IResNetFlow
from preimage.report.plots import image_grid, save_figure, training_curves
from preimage.studies._iresnet_common import Target, begin_run, finish_run, load_train_test
from preimage.studies.base import StudyConfig
from preimage.train import TrainConfig, Trainer, resolve_device

__all__ = ["Config", "bits_loss", "run"]


@dataclass(frozen=True)
class Config(StudyConfig):
    """Settings of the MNIST density model (defaults: the ``cpu`` budget).

    The ``cpu`` budget (3 scale-blocks x 3 blocks, 32 hidden channels, 4 epochs, bits/dim on
    300 test images) was sized from measurements on the development machine with one intra-op
    thread while two other jobs shared its two cores: 62 training samples/s with back-propagation
    through the roulette series and 128 samples/s with the Neumann gradient (``"neumann"``, the
    default), so 4 x 60000 samples take about 31 minutes, plus about 0.35 s per image for the
    A.2-style evaluation at the ``cpu`` tolerances (about 2 minutes). Measured run
    (2026-11-21, with two or three other studies on the two cores): 57 minutes, 5.58 bits/dim
    on the test images (target 1.4: missed; see BENCHMARKS.md).
    The run was not completed there; whether 3 epochs of so small a model reach 1.4 bits/dim
    is uncertain (the thesis needs 200 epochs of a far larger model for 1.06), so the target is
    reported, not promised.

    Attributes:
        dataset: ``"mnist"``.
        stages: scale-blocks.
        blocks_per_stage: residual blocks per scale-block.
        hidden: hidden channels of each branch.
        coeff: spectral coefficient :math:`c`.
        logdet: training estimator (``"roulette"``, ``"series"``, ``"neumann"``).
        n_terms: power-series terms when ``logdet="series"``.
        epochs: training epochs.
        batch_size: training batch size.
        lr: Adamax learning rate (thesis: 0.003).
        max_steps_per_epoch: cap on steps per epoch (``None``: full epochs).
        n_train: training images used (``None``: all).
        n_eval: test images for bits/dim.
        bias_tol: truncation-bias tolerance of the evaluation, bits/dim.
        se_tol: standard-error tolerance of the evaluation, bits/dim.
        max_probes: cap on Hutchinson probes per sample in the evaluation.
        probes_per_round: probes added per round of the evaluation (the standard error comes
            from the spread of the rounds, so ``max_probes`` should allow several rounds).
        n_samples: samples in the grid.
        bits_target: target bits/dim.
    """

    dataset: str = "mnist"
    stages: int = 3
    blocks_per_stage: int = 3
    hidden: int = 32
    coeff: float = 0.9
    logdet: str = "neumann"
    n_terms: int = 10
    epochs: int = 4
    batch_size: int = 64
    lr: float = 3e-3
    max_steps_per_epoch: int | None = None
    n_train: int | None = None
    n_eval: int = 300
    bias_tol: float = 1e-3
    se_tol: float = 5e-3
    max_probes: int = 64
    probes_per_round: int = 8
    n_samples: int = 16
    bits_target: float = 1.4

    BUDGETS: ClassVar[dict[str, dict[str, Any]]] = {
        "smoke": {
            "stages": 2,
            "blocks_per_stage": 1,
            "hidden": 8,
            "epochs": 1,
            "batch_size": 16,
            "max_steps_per_epoch": 3,
            "n_train": 128,
            "n_eval": 16,
            "bias_tol": 1e-2,
            "se_tol": 0.05,
            "max_probes": 8,
            "probes_per_round": 2,
            "n_samples": 4,
        },
        "cpu": {},
        "paper": {
            "blocks_per_stage": 32,
            "hidden": 32,
            "logdet": "series",
            "epochs": 200,
            "n_eval": 10_000,
            "bias_tol": 1e-4,
            "se_tol": 1e-4,
            "max_probes": 4096,
            "n_samples": 64,
        },
    }


def bits_loss(model: nn.Module, x: Tensor, y: Tensor) -> tuple[Tensor, dict[str, float]]:
    """Trainer objective: mean bits/dim of dequantised ``x`` (labels unused).

    Example:
        >>> flow = IResNetFlow((1, 4, 4), stages=1, blocks_per_stage=1, hidden=4,
        ...                    logdet="exact")
        >>> loss, logs = bits_loss(flow, torch.rand(2, 1, 4, 4), torch.zeros(2))
        >>> loss.shape, sorted(logs)
        (torch.Size([]), ['bits_per_dim'])
    """
    bits = model.bits_from_log_prob(model.log_prob(x)).mean()  # type: ignore[operator]
    return bits, {"bits_per_dim": float(bits.detach())}


def run(
    config: Config, out_dir: str | os.PathLike[str], *, argv: Sequence[str] | None = None
) -> dict[str, Any]:
    """Train the density model, evaluate bits/dim, draw samples; writes the run directory."""
    run_dir = begin_run(config, out_dir, argv, "iresnet-mnist-flow")
    device = resolve_device(config.device)
    (x_train, y_train), (x_test, _) = load_train_test(config, config.n_eval, device)
    torch.manual_seed(config.seed)
    model = IResNetFlow(
        tuple(x_train.shape[1:]),
        stages=config.stages,
        blocks_per_stage=config.blocks_per_stage,
        hidden=config.hidden,
        coeff=config.coeff,
        logdet=config.logdet,
        n_terms=config.n_terms,
    )
    train = TrainConfig(
        epochs=config.epochs,
        batch_size=config.batch_size,
        lr=config.lr,
        optimizer="adamax",
        weight_decay=0.0,
        lr_step=max(config.epochs, 1),
        max_shift=0,
        dequantize=True,
        seed=config.seed,
        device=str(device),
        max_steps_per_epoch=config.max_steps_per_epoch,
    )
    trainer = Trainer(
        model,
        (x_train, y_train),
        None,
        train,
        loss_fn=bits_loss,
        out_dir=run_dir.path,
        progress=config.progress,
        model_class="IResNetFlow",
    )
    trainer.fit()
    model.eval()
    model.converge(2000, rtol=1e-10)
    gen = torch.Generator(device="cpu").manual_seed(config.seed + 1)
    noise = torch.rand(x_test.shape, generator=gen).to(device)
    x_eval = (torch.round(x_test * 255) + noise) / 256
    result = model.bits_per_dim(
        x_eval,
        bias_tol=config.bias_tol,
        se_tol=config.se_tol,
        max_probes=config.max_probes,
        probes_per_round=config.probes_per_round,
    )
    sampled = True
    try:
        with torch.no_grad():
            samples = model.sample(config.n_samples).clamp(0, 1).cpu()
    except ConvergenceError:
        sampled = False
        samples = torch.zeros(config.n_samples, *x_train.shape[1:])
    save_figure(training_curves(trainer.history), run_dir.figures / "training_curves.png")
    save_figure(
        image_grid(samples, nrow=math.ceil(math.sqrt(config.n_samples)), title="samples"),
        run_dir.figures / "samples.png",
    )
    history = trainer.history
    metrics: dict[str, Any] = {
        "test_bits_per_dim": result.value,
        "test_bits_standard_error": result.standard_error,
        "test_bits_bias_bound": result.bias_bound,
        "eval_probes": result.n_probes,
        "eval_max_terms": max(result.n_terms) if result.n_terms else 0,
        "eval_capped": result.capped,
        "eval_images": int(x_eval.shape[0]),
        "train_bits_per_dim": float(history[-1].get("train_bits_per_dim", math.nan)),
        "samples_per_s": float(history[-1].get("samples_per_s", 0.0)),
        "sampled": sampled,
        "parameters": sum(p.numel() for p in model.parameters()),
    }
    targets = [
        Target(
            "bits_per_dim",
            round(result.value, 4),
            f"<= {config.bits_target} at the cpu budget (thesis 1.06)",
            result.value <= config.bits_target,
        ),
        Target("sampled", sampled, "fixed-point inverse converges for samples", sampled),
    ]
    intro = (
        f"IResNetFlow with {config.stages} scale-blocks x {config.blocks_per_stage} blocks, "
        f"{config.hidden} hidden channels, c = {config.coeff}, trained with the {config.logdet} "
        f"estimator for {config.epochs} epoch(s) on {x_train.shape[0]} images. Bits/dim on "
        f"{x_eval.shape[0]} dequantised test images: bias <= {result.bias_bound:.2g}, standard "
        f"error {result.standard_error:.2g} ({result.n_probes} probes)."
    )
    return finish_run(
        run_dir,
        config,
        title="iresnet-mnist-flow: i-ResNet density model (thesis appendix A.2)",
        intro=intro,
        metrics=metrics,
        targets=targets,
        figures=[
            ("training_curves.png", "Training bits/dim per epoch."),
            ("samples.png", "Samples F^-1(z), z ~ N(0, I)."),
        ],
    )
