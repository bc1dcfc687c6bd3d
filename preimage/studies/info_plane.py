r"""``preimage run info-plane``: memorisation is the lack of compression (section 4.2, figure 3).

The ReLU MLP of section 4.1 is trained on MNIST 3 versus 7 twice, once with the true labels and
once with labels drawn uniformly at random. :class:`~preimage.information.InformationPlane`
records, before training and after every ``measure_every`` epochs, each layer's
:math:`(I(X;T), I(T;Y))` on a fixed probe set of training inputs with the paper's
maximum-entropy adaptive binning (30 equal-mass bins per layer, recomputed every epoch).
The paper's claim, checked as targets: with true labels the last layer *compresses*
(:math:`I(X;T)` falls after its peak); with random labels it does not, the network memorises.

Compression of a layer = (peak :math:`I(X;T)` over the epochs) - (final :math:`I(X;T)`), in bits.

Deviations: the paper trains for :math:`10^4` epochs with SGD at 1e-3 on all 3-vs-7 images;
the ``cpu`` budget uses ``n_train`` images (the probe set is all of them when
``n_train <= n_probe``), Adam, and fewer epochs, so that random labels are fitted in minutes.
The ``paper`` budget restores SGD 1e-3, batch 100 and :math:`10^4` epochs.

References:
    Galloway et al. (2018), *A Rate-Distortion Theory of Adversarial Examples*, section 4.2,
    figure 3. Shwartz-Ziv & Tishby (2017), *Opening the Black Box of Deep Neural Networks via
    Information*.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import torch

from preimage.data.registry import DatasetSplit
from preimage.data.subsets import random_labels
from preimage.information import AdaptiveBinner, InformationPlane
from preimage.models.mlp import MLP
from preimage.report.plots import training_curves
from preimage.studies._rate_distortion_common import information_plane_figure, recipe, three_v_seven
from preimage.studies.base import StudyConfig
from preimage.studies.kit import StudyRun, study_entry
from preimage.train import TrainConfig, Trainer

__all__ = ["Config", "run"]

MIN_COMPRESSION_BITS = 0.1
"""Compression of the last layer under true labels that counts as a compression phase."""


@dataclass(frozen=True)
class Config(StudyConfig):
    """Settings of the information-plane study (defaults: the ``cpu`` budget, 2 min measured).

    Attributes:
        train: the training recipe (both runs).
        widths: hidden widths of the ReLU MLP.
        n_train: training images of 3 versus 7 (``None``: all).
        n_probe: probe inputs for the information plane (the paper: 2 000).
        n_bins: bins per layer (the paper: 30).
        measure_every: epochs between measurements.
    """

    train: TrainConfig = field(
        default_factory=lambda: recipe(epochs=150, lr=1e-3, optimizer="adam")
    )
    widths: tuple[int, ...] = (256, 128, 64, 32, 16)
    n_train: int | None = 2000
    n_probe: int = 2000
    n_bins: int = 30
    measure_every: int = 5

    BUDGETS: ClassVar[dict[str, dict[str, Any]]] = {
        "smoke": {
            "train.epochs": 2,
            "widths": (16, 8),
            "n_train": 200,
            "n_probe": 200,
            "measure_every": 1,
        },
        "cpu": {},
        "paper": {
            "train.epochs": 10_000,
            "train.optimizer": "sgd",
            "train.momentum": 0.0,
            "widths": (1024, 512, 256, 128, 64),
            "n_train": None,
            "measure_every": 50,
        },
    }


def _compression(curve: dict[str, np.ndarray]) -> float:
    return float(curve["i_xt"].max() - curve["i_xt"][-1])


def _fit(
    study: StudyRun,
    config: Config,
    split: DatasetSplit,
    test: tuple[torch.Tensor, torch.Tensor] | None,
    probe: torch.Tensor,
) -> tuple[Trainer, InformationPlane, dict[str, Any]]:
    """Train the MLP on ``split`` from the study's initial weights, measuring the information
    plane on the ``probe`` inputs; ``test`` is scored (or ``None``)."""
    study.seed()  # both runs start from the same initial weights
    model = MLP(split.sample_shape, 2, widths=config.widths)
    plane = InformationPlane(
        split.images[probe],
        split.labels[probe],
        binner=AdaptiveBinner(config.n_bins),
        every=config.measure_every,
    )
    trainer = Trainer(
        model,
        (split.images, split.labels),
        test,
        config.train,
        callbacks=[plane],
        progress=config.progress,
    )
    return trainer, plane, trainer.fit()


def _compression_table(
    study: StudyRun, curves: dict[str, dict[str, dict[str, np.ndarray]]]
) -> None:
    study.table(
        [
            {
                "labels": n,
                "layer": layer,
                "compression (bits)": _compression(c),
                "final I(X;T)": float(c["i_xt"][-1]),
                "final I(T;Y)": float(c["i_ty"][-1]),
            }
            for n, cs in curves.items()
            for layer, c in cs.items()
        ],
        title="Compression (peak minus final I(X;T)) per layer",
    )


@study_entry(
    "info-plane",
    title="Information plane under true and random labels",
    intro="Galloway et al. (2018), section 4.2 and figure 3: a ReLU MLP on MNIST 3 vs 7 "
    "compresses I(X;T) in its last layer with true labels and memorises (no "
    "compression) with random labels. Binned estimates, 30 equal-mass bins per layer.",
)
def run(study: StudyRun, config: Config) -> dict[str, Any]:
    gen = study.seed()
    (x, y), test = three_v_seven(config.data_dir, config.n_train, 2000, config.seed)
    true = DatasetSplit("mnist-3v7", x, y, 2, tuple(x.shape[1:]))
    labels = {"true labels": true, "random labels": random_labels(true, seed=config.seed + 1)}
    probe = torch.randperm(len(true), generator=gen)[: config.n_probe]
    curves, metrics, histories = {}, {}, {}
    for name, split in labels.items():
        key = name.split()[0]
        trainer, plane, final = _fit(study, config, split, test if key == "true" else None, probe)
        curves[name] = plane.curves()
        histories[name] = trainer.history
        last = list(curves[name])[-1]
        metrics[f"{key}_train_accuracy"] = final["train_accuracy"]
        metrics[f"{key}_compression_last_bits"] = _compression(curves[name][last])
        metrics[f"{key}_final_i_xt_last_bits"] = float(curves[name][last]["i_xt"][-1])
        metrics[f"{key}_final_i_ty_last_bits"] = float(curves[name][last]["i_ty"][-1])
        metrics[f"{key}_seconds_per_measurement"] = float(np.mean(plane.seconds))
    metrics["true_test_accuracy"] = histories["true labels"][-1]["test_accuracy"]
    study.figure(
        information_plane_figure(curves),
        "information_plane",
        "I(T;Y) against I(X;T) per layer (labels at the last point), coloured by epoch; left: "
        "true labels, right: random labels (figure 3 (a), (b)).",
    )
    study.figure(
        training_curves(histories["random labels"]),
        "training_random",
        "Training on random labels: loss and accuracy per epoch (memorisation).",
    )
    _compression_table(study, curves)
    study.check(
        "true_compression_last_bits",
        metrics["true_compression_last_bits"],
        f">= {MIN_COMPRESSION_BITS}",
    )
    study.compare(
        "random_compresses_less",
        metrics,
        "random_compression_last_bits",
        "<",
        "true_compression_last_bits",
        "< true-label compression",
    )
    return study.finish(metrics)
