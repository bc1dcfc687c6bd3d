r"""Shared pieces of the information-regularisation studies: data, one training run, its record.

Both studies train a :class:`~preimage.losses.info_reg.FeatureClassifier` with
:class:`~preimage.losses.InformationRegularizedLoss` through :class:`~preimage.train.Trainer`,
log the Constrain :math:`\hat I(X;\hat Y) - \hat I(Y;\hat Y)` after every epoch on a fixed
subset of the training data (:class:`~preimage.information.ConstrainLogger`), and apply the
pending proximal step at the end (:meth:`~preimage.losses.InformationRegularizedLoss.flush`),
so the weights they analyse are those the proximal scheme produces.

References:
    Anonymous (2019), *Information Regularized Neural Networks* (ICLR 2019 submission),
    sections 4.1-4.2 and appendix E.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from preimage.data.subsets import Pair, load_train_test, subset
from preimage.information import ConstrainLogger
from preimage.losses import AlternatingAutoencoderLoss, InformationRegularizedLoss
from preimage.train import Callback, TrainConfig, Trainer

__all__ = ["Fit", "features_of", "fit_regularized", "load_data", "plain_sgd"]


def plain_sgd(epochs: int, **fields: Any) -> TrainConfig:
    """Appendix E's schedule: SGD at 0.1, times 0.7 every 10 epochs, no augmentation."""
    base: dict[str, Any] = {
        "epochs": epochs,
        "batch_size": 64,
        "optimizer": "sgd",
        "lr": 0.1,
        "momentum": 0.0,
        "weight_decay": 0.0,
        "lr_decay": 0.7,
        "lr_step": 10,
        "max_shift": 0,
        "dequantize": False,
    }
    return TrainConfig(**{**base, **fields})


def load_data(
    dataset: str, n_train: int | None, n_test: int | None, seed: int, data_dir: str | None
) -> tuple[Pair, Pair]:
    """Train/test subsets of ``dataset`` (``mnist`` or the embedded 8x8 ``digits``)."""
    return load_train_test(dataset, n_train=n_train, n_test=n_test, seed=seed, data_dir=data_dir)


@dataclass
class Fit:
    """What one training run leaves: the model, its history and its Constrain per epoch.

    Attributes:
        model: the trained model (in eval mode).
        history: the trainer's per-epoch records.
        constrain: the Constrain logger's per-epoch records.
    """

    model: nn.Module
    history: list[dict[str, Any]]
    constrain: list[dict[str, float | int]]

    @property
    def best_accuracy(self) -> float:
        """The best test accuracy over the epochs (tables 1-2 report the best)."""
        return max(float(h["test_accuracy"]) for h in self.history)

    @property
    def final_accuracy(self) -> float:
        """The test accuracy after the last epoch."""
        return float(self.history[-1]["test_accuracy"])

    @property
    def mean_constrain(self) -> float:
        """The Constrain averaged over the epochs (table 1)."""
        return sum(float(h["constrain"]) for h in self.constrain) / len(self.constrain)


def fit_regularized(
    model: nn.Module,
    loss_fn: InformationRegularizedLoss,
    data: tuple[Pair, Pair],
    train_config: TrainConfig,
    *,
    num_classes: int,
    n_constrain: int,
    autoencoder: bool = False,
    progress: bool = False,
    callbacks: Sequence[Callback] = (),
) -> Fit:
    """Train ``model`` on ``data`` with ``loss_fn`` (inside the alternating autoencoder scheme
    when ``autoencoder``), logging the Constrain on ``n_constrain`` training samples; further
    ``callbacks`` run after the Constrain logger."""
    train, test = data
    logger = ConstrainLogger(subset(train, n_constrain, train_config.seed), num_classes)
    objective: nn.Module = AlternatingAutoencoderLoss(loss_fn) if autoencoder else loss_fn
    trainer = Trainer(
        model,
        train,
        test,
        train_config,
        loss_fn=objective,
        callbacks=[logger, *callbacks],
        progress=progress,
    )
    trainer.fit()
    loss_fn.flush(model)
    model.eval()
    return Fit(model, trainer.history, logger.history)


@torch.no_grad()
def features_of(model: nn.Module, x: Tensor, batch: int = 512) -> Tensor:
    """``model.features`` of ``x`` in batches, on the model's device, returned on the CPU."""
    device = next(model.parameters()).device
    return torch.cat([model.features(c.to(device)).cpu() for c in x.split(batch)])  # type: ignore[operator]
