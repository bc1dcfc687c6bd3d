r"""``preimage run sphere-packing``: label clusters in a two-neuron layer (appendix A, figure 6).

An MLP 784-392-196-2-49-10 with a linear two-unit bottleneck :math:`h(x)` is trained on MNIST
as a nonlinear information bottleneck: the decoder reads :math:`T = h(X) + N(0, \sigma^2 I)`
and the loss is :math:`\mathrm{CE} + \beta\, \hat I(X;T)` with :math:`\hat I` the
Kolchinsky-Tracey pairwise upper bound on the batch
(:func:`~preimage.information.kernel.kernel_mi_bounds`). Three variants: (a) plain, (b) batch
norm after the 392- and 196-unit layers, (c) those batch norms without their learnable affine
parameters. The bottleneck codes of a probe set are drawn at ``snapshot_epochs``.

The paper's claims, checked as targets: batch norm leaves more excess capacity, "the
inter-cluster distance, as well as the clusters themselves, are larger" in (b) than in (a).
Measured on the final codes: the mean distance between class centroids and the mean distance
of a code to its class centroid.

Deviations: the bottleneck noise is fixed (``noise_std``) where Kolchinsky et al.'s release
learns it; (c) disables both the scale :math:`\gamma` and the shift :math:`\beta` of the batch
norms (the paper: only :math:`\gamma`); the ``cpu`` budget trains ``train.epochs`` epochs on
``n_train`` images with momentum 0.9 (the paper: 500 epochs, all of MNIST; ``paper``).

References:
    Galloway et al. (2018), *A Rate-Distortion Theory of Adversarial Examples*, appendix A,
    figure 6. Kolchinsky, Tracey & Wolpert (2019), *Nonlinear Information Bottleneck*.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from matplotlib.figure import Figure
from torch import Tensor, nn

from preimage.data.registry import load_dataset
from preimage.information.kernel import kernel_mi_bounds
from preimage.information.plane import layer_activations
from preimage.models.mlp import MLP
from preimage.studies._rate_distortion_common import recipe, subsample
from preimage.studies.base import StudyConfig
from preimage.studies.kit import StudyRun, study_entry
from preimage.train import Callback, TrainConfig, Trainer

__all__ = ["VARIANTS", "Config", "cluster_geometry", "run"]

VARIANTS: dict[str, dict[str, Any]] = {
    "plain": {},
    "bn": {"batch_norm": True, "norm_layers": (0, 1)},
    "bn-no-affine": {"batch_norm": True, "norm_layers": (0, 1), "batch_norm_affine": False},
}
"""Figure 6 (a), (b), (c): name -> :class:`~preimage.models.MLP` options."""


def cluster_geometry(codes: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """Mean distance between class centroids, mean distance of a code to its class centroid,
    and the power (mean squared norm) of the codes.

    Example:
        >>> codes = np.array([[0.0, 1.0], [0.0, -1.0], [4.0, 1.0], [4.0, -1.0]])
        >>> cluster_geometry(codes, np.array([0, 0, 1, 1]))
        {'inter_cluster': 4.0, 'cluster_radius': 1.0, 'power': 9.0}
    """
    classes = np.unique(labels)
    centres = np.stack([codes[labels == c].mean(0) for c in classes])
    pair = np.linalg.norm(centres[:, None] - centres[None], axis=2)
    inter = pair[np.triu_indices(len(classes), 1)].mean()
    radius = np.mean(
        [
            np.linalg.norm(codes[labels == c] - centres[i], axis=1).mean()
            for i, c in enumerate(classes)
        ]
    )
    return {
        "inter_cluster": float(inter),
        "cluster_radius": float(radius),
        "power": float((codes**2).sum(1).mean()),
    }


class _BottleneckIB:
    """Loss ``CE(decoder(h + noise)) + beta * upper bound on I(X;T)`` for an MLP whose hidden
    layer ``index`` is the bottleneck."""

    def __init__(self, beta: float, noise_std: float, index: int) -> None:
        self.beta, self.noise_std, self.index = beta, noise_std, index

    def __call__(self, model: nn.Module, x: Tensor, y: Tensor) -> tuple[Tensor, dict[str, float]]:
        assert isinstance(model, MLP)
        h = x.reshape(x.shape[0], -1)
        for block in model.blocks[: self.index + 1]:
            h = block(h)
        t = h + self.noise_std * torch.randn_like(h)
        for block in model.blocks[self.index + 1 :]:
            t = block(t)
        logits = model.head(t)
        ce = F.cross_entropy(logits, y)
        _, upper = kernel_mi_bounds(h, self.noise_std)
        accuracy = float((logits.argmax(1) == y).float().mean())
        return ce + self.beta * upper, {
            "ce": float(ce.detach()),
            "i_xt_upper": float(upper.detach()),
            "accuracy": accuracy,
        }


class _Snapshots(Callback):
    def __init__(self, x: Tensor, layer: nn.Module, epochs: Sequence[int]) -> None:
        self.x, self.layer, self.epochs = x, layer, set(epochs)
        self.codes: dict[int, np.ndarray] = {}

    def _take(self, trainer: Trainer, epoch: int) -> None:
        if epoch in self.epochs:
            acts = layer_activations(trainer.model, self.x, {"t": self.layer})
            self.codes[epoch] = acts["t"].numpy()

    def on_train_start(self, trainer: Trainer) -> None:
        self._take(trainer, 0)

    def on_epoch_end(self, trainer: Trainer, epoch: int, metrics: dict[str, float]) -> None:
        self._take(trainer, epoch)


@dataclass(frozen=True)
class Config(StudyConfig):
    """Settings of the sphere-packing study (defaults: the ``cpu`` budget).

    Attributes:
        train: recipe (the paper: batch 128, constant lr 1e-2, weight decay 1e-3).
        beta: weight of the information term (the paper: 5e-2).
        noise_std: :math:`\\sigma` of the bottleneck noise.
        n_train: MNIST training images (``None``: all).
        n_probe: images whose codes are drawn.
        snapshot_epochs: epochs drawn (0: at initialisation).
    """

    train: TrainConfig = field(
        default_factory=lambda: recipe(
            epochs=20, batch_size=128, lr=1e-2, optimizer="sgd", momentum=0.9, weight_decay=1e-3
        )
    )
    beta: float = 5e-2
    noise_std: float = 1.0
    n_train: int | None = 10_000
    n_probe: int = 2000
    snapshot_epochs: tuple[int, ...] = (0, 2, 5, 10, 20)

    BUDGETS: ClassVar[dict[str, dict[str, Any]]] = {
        "smoke": {"train.epochs": 2, "n_train": 256, "n_probe": 200, "snapshot_epochs": (0, 1, 2)},
        "cpu": {},
        "paper": {
            "train.epochs": 500,
            "train.momentum": 0.0,
            "n_train": None,
            "n_probe": 60_000,
            "snapshot_epochs": (0, 20, 30, 50, 500),
        },
    }


def _figure(snapshots: dict[str, dict[int, np.ndarray]], labels: np.ndarray) -> Figure:
    epochs = sorted(next(iter(snapshots.values())))
    fig = Figure(figsize=(2.6 * len(epochs), 2.6 * len(snapshots)), layout="constrained")
    for r, (name, codes) in enumerate(snapshots.items()):
        for c, epoch in enumerate(epochs):
            ax = fig.add_subplot(len(snapshots), len(epochs), r * len(epochs) + c + 1)
            ax.scatter(codes[epoch][:, 0], codes[epoch][:, 1], c=labels, cmap="tab10", s=2)
            ax.set_xlim(-10, 10)
            ax.set_ylim(-10, 10)
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_title(f"{name}, epoch {epoch}", fontsize="small")
    return fig


@study_entry(
    "sphere-packing",
    title="Sphere packing in a two-neuron bottleneck",
    intro="Galloway et al. (2018), appendix A and figure 6: MNIST codes of a 2-D nonlinear "
    "information bottleneck without batch norm, with it, and with it but no affine part.",
)
def run(study: StudyRun, config: Config) -> dict[str, Any]:
    x, y = subsample(
        load_dataset("mnist", "train", data_dir=config.data_dir), config.n_train, config.seed
    )
    probe_x, probe_y = x[: config.n_probe], y[: config.n_probe].numpy()
    loss = _BottleneckIB(config.beta, config.noise_std, index=2)
    snapshots: dict[str, dict[int, np.ndarray]] = {}
    metrics: dict[str, Any] = {}
    for name, options in VARIANTS.items():
        study.seed()
        model = MLP((1, 28, 28), 10, widths=(392, 196, 2, 49), linear_layers=(2,), **options)
        snap = _Snapshots(probe_x, model.blocks[2], config.snapshot_epochs)
        final = Trainer(
            model,
            (x, y),
            None,
            config.train,
            loss_fn=loss,
            callbacks=[snap],
            progress=config.progress,
        ).fit()
        snapshots[name] = snap.codes
        last = snap.codes[max(snap.codes)]
        for key, value in cluster_geometry(last, probe_y).items():
            metrics[f"{name}_{key}"] = value
        metrics[f"{name}_train_accuracy"] = final["train_accuracy"]
        metrics[f"{name}_i_xt_upper_nats"] = final["train_i_xt_upper"]
    study.figure(
        _figure(snapshots, probe_y),
        "bottleneck",
        "Two-neuron bottleneck codes of the probe images, coloured by label, axes +-10, for the "
        "plain, batch-norm and batch-norm-without-affine networks (rows) over epochs (figure 6).",
    )
    for key in ("inter_cluster", "cluster_radius"):
        study.compare(
            f"bn_{key}_larger",
            metrics,
            f"bn_{key}",
            ">",
            f"plain_{key}",
            f"> plain ({metrics[f'plain_{key}']:.3g})",
        )
    return study.finish(metrics)
