r"""Shared pieces of the rate-distortion studies (Galloway et al. 2018): data, configs, figures.

References:
    Galloway et al. (2018), *A Rate-Distortion Theory of Adversarial Examples*, sections 4.1-4.4
    and appendix A.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from matplotlib.figure import Figure
from torch import Tensor

from preimage.data.paths import dataset_dir
from preimage.data.preprocess import ZCAWhitener, grayscale
from preimage.data.registry import DatasetSplit, load_dataset
from preimage.data.subsets import mnist_3v7
from preimage.data.svhn import SVHN_FILES, load_svhn
from preimage.errors import ConfigError
from preimage.models.svhn_cnn import SVHNCNN
from preimage.studies.base import StudyConfig
from preimage.studies.kit import StudyRun
from preimage.train import TrainConfig, Trainer

__all__ = [
    "WeightDecayCNNConfig",
    "digits_32",
    "fit_table3_cnn",
    "information_plane_figure",
    "recipe",
    "subsample",
    "three_v_seven",
]

Pair = tuple[Tensor, Tensor]


def recipe(**overrides: Any) -> TrainConfig:
    """The paper's constant-learning-rate recipe: mini-batches of 100, no schedule, no weight
    decay, no augmentation (raw inputs); ``overrides`` set the rest (epochs, optimiser, lr)."""
    base: dict[str, Any] = {
        "batch_size": 100,
        "weight_decay": 0.0,
        "lr_step": 10**6,
        "max_shift": 0,
        "dequantize": False,
    }
    return TrainConfig(**{**base, **overrides})


def fit_table3_cnn(
    study: StudyRun,
    recipe: TrainConfig,
    train: Pair,
    test: Pair,
    *,
    weight_decay: float,
    batch_norm: bool = False,
    progress: bool = True,
) -> tuple[SVHNCNN, Trainer, dict[str, Any]]:
    r"""Train one variant of the table-3 CNN on ``train`` from the study's seed.

    The variants of Galloway et al. differ in two switches only: A has neither, B adds
    ``weight_decay`` (:math:`\lambda`), C adds ``batch_norm`` as well. Every variant starts
    from the same seed, so that they differ in those switches and not in their initialisation.

    Returns:
        The trained model, its trainer (for further evaluation) and the final epoch's record.

    References:
        Galloway et al. (2018), *A Rate-Distortion Theory of Adversarial Examples*, section 4.3
        and table 3.
    """
    study.seed()
    model = SVHNCNN(tuple(train[0].shape[1:]), 10, batch_norm=batch_norm)
    schedule = replace(recipe, weight_decay=weight_decay)
    trainer = Trainer(model, train, test, schedule, progress=progress)
    return model, trainer, trainer.fit()


def subsample(split: DatasetSplit, n: int | None, seed: int) -> Pair:
    """``n`` samples of ``split`` drawn without replacement with ``seed`` (all when ``None``)."""
    if n is None or n >= len(split):
        return split.images, split.labels
    idx = torch.randperm(len(split), generator=torch.Generator().manual_seed(seed))[:n]
    return split.images[idx], split.labels[idx]


def three_v_seven(
    data_dir: str | os.PathLike[str] | None, n_train: int | None, n_test: int | None, seed: int
) -> tuple[Pair, Pair]:
    """MNIST 3 versus 7 (section 4.1), subsampled to ``n_train`` / ``n_test``."""
    train = subsample(mnist_3v7("train", data_dir), n_train, seed)
    test = subsample(mnist_3v7("test", data_dir), n_test, seed + 1)
    return train, test


def digits_32(
    data_dir: str | os.PathLike[str] | None,
    n_train: int | None,
    n_test: int | None,
    seed: int,
    *,
    dataset: str = "auto",
    zca_components: int = 400,
) -> tuple[Pair, Pair, str]:
    """Ten-class 32 x 32 grayscale digits for the table-3 CNN: SVHN when its files are there.

    ``dataset``: ``"svhn"`` (grayscale, PCA to ``zca_components`` and ZCA fitted on the training
    subset, section 4.3), ``"mnist"`` (bilinearly upsampled to 32 x 32 as in appendix C, in
    ``[0, 1]``) or ``"auto"`` (SVHN if ``train_32x32.mat`` is found, else MNIST). Returns the
    train and test pairs and the dataset used.
    """
    if dataset == "auto":
        folder = dataset_dir("svhn", data_dir, files=SVHN_FILES.values())
        dataset = "svhn" if (folder / SVHN_FILES["train"]).is_file() else "mnist"
    if dataset == "svhn":
        splits = []
        for split, n, s in (("train", n_train, seed), ("test", n_test, seed + 1)):
            x, y = load_svhn(data_dir, split)
            splits.append(subsample(DatasetSplit("svhn", grayscale(x), y, 10, (1, 32, 32)), n, s))
        (x, y), (xt, yt) = splits
        zca = ZCAWhitener(n_components=min(zca_components, x.shape[0])).fit(x)
        return (zca.transform(x), y), (zca.transform(xt), yt), "svhn"
    if dataset != "mnist":
        raise ConfigError(f"unknown dataset {dataset!r}; use auto, svhn or mnist")
    out = []
    for split, n, s in (("train", n_train, seed), ("test", n_test, seed + 1)):
        x, y = subsample(load_dataset("mnist", split, data_dir=data_dir), n, s)
        out.append((F.interpolate(x, size=(32, 32), mode="bilinear", align_corners=False), y))
    return out[0], out[1], "mnist"


@dataclass(frozen=True)
class WeightDecayCNNConfig(StudyConfig):
    """Model B of section 4.4: the table-3 CNN trained with weight decay on 32 x 32 digits.

    The fault-tolerance and label-prototype studies train this model (and compare it with
    variants: C adds batch norm, A drops the weight decay); their configs extend this one.

    Attributes:
        train: the recipe (:func:`recipe`; SGD with momentum 0.9 at ``cpu``, plain SGD for
            500 epochs at ``paper``); the weight decay is ``weight_decay``.
        weight_decay: :math:`\\lambda` of model B (the paper found about 1e-2, section 4.3).
        dataset: ``auto``, ``svhn`` or ``mnist`` (:func:`digits_32`).
        n_train: training images (``None``: all).

    Example:
        >>> cfg = WeightDecayCNNConfig.for_budget("paper")
        >>> cfg.train.epochs, cfg.train.momentum, cfg.n_train, cfg.weight_decay
        (500, 0.0, None, 0.01)
    """

    train: TrainConfig = field(
        default_factory=lambda: recipe(epochs=30, lr=1e-2, optimizer="sgd", momentum=0.9)
    )
    weight_decay: float = 1e-2
    dataset: str = "auto"
    n_train: int | None = 5000

    BUDGETS: ClassVar[dict[str, dict[str, Any]]] = {
        "smoke": {"train.epochs": 1, "n_train": 256},
        "cpu": {},
        "paper": {"train.epochs": 500, "train.momentum": 0.0, "n_train": None},
    }

    def digits(self, n_test: int | None) -> tuple[Pair, Pair, str]:
        """:func:`digits_32` of the config: ``n_train`` training and ``n_test`` test images
        of ``dataset``, drawn with ``seed`` from ``data_dir``."""
        return digits_32(self.data_dir, self.n_train, n_test, self.seed, dataset=self.dataset)


def information_plane_figure(
    curves_by_run: Mapping[str, Mapping[str, Mapping[str, np.ndarray]]], unit: str = "bits"
) -> Figure:
    """One panel per run: :math:`I(T;Y)` against :math:`I(X;T)`, a line per layer, points
    coloured by epoch (figure 3's layout)."""
    fig = Figure(figsize=(5.2 * len(curves_by_run), 4.2), layout="constrained")
    last_scatter = None
    for k, (run_name, curves) in enumerate(curves_by_run.items()):
        ax = fig.add_subplot(1, len(curves_by_run), k + 1)
        for layer, c in curves.items():
            ax.plot(c["i_xt"], c["i_ty"], color="0.7", linewidth=0.8, zorder=1)
            last_scatter = ax.scatter(
                c["i_xt"], c["i_ty"], c=c["epoch"], cmap="viridis", s=12, zorder=2
            )
            ax.annotate(layer, (c["i_xt"][-1], c["i_ty"][-1]), fontsize="x-small")
        ax.set_xlabel(f"I(X;T) [{unit}]")
        ax.set_ylabel(f"I(T;Y) [{unit}]")
        ax.set_title(run_name)
        ax.grid(alpha=0.3)
    if last_scatter is not None:
        fig.colorbar(last_scatter, ax=fig.axes, label="epoch")
    return fig
