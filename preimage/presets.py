r"""Per-dataset defaults of a fi-RevNet and of its training: one table for the CLI and the studies.

``preimage train --dataset NAME`` starts from these settings (explicit options win), and the
studies build their nested ``model:`` and ``train:`` configs from the same presets, so that a
dataset's recipe is written down once.

The ``spheres`` preset is appendix D.1's network and optimiser (fully connected, 4 additive
RevNet blocks, no batch norm, Adam with learning rate :math:`10^{-4}`); ``mnist`` is the
CPU-sized fi-RevNet (the paper's 3 stages x 16 blocks x 128 filters are
``blocks_per_stage=16, hidden=128``) with the appendix D.2 recipe, which is
:class:`~preimage.train.TrainConfig`'s default.

References:
    Jacobsen, Behrmann, Zemel, Bethge (2019), *Excessive Invariance Causes Adversarial
    Vulnerability*, appendix D.1 (spheres) and D.2 (MNIST).

Example:
    >>> model_preset("spheres").coupling, train_preset("spheres").optimizer
    ('additive', 'adam')
    >>> model_preset("mnist", hidden=8).hidden
    8
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any, TypeVar

from preimage.errors import ConfigError
from preimage.models.firevnet import FiRevNetConfig
from preimage.train.config import TrainConfig

__all__ = ["DATASET_PRESETS", "model_preset", "train_preset"]

C = TypeVar("C", FiRevNetConfig, TrainConfig)

DATASET_PRESETS: dict[str, dict[str, dict[str, Any]]] = {
    # CPU-sized fi-RevNet; the paper's MNIST network (3 stages x 16 blocks x 128 filters) is
    # available with --model-option blocks_per_stage=16 --model-option hidden=128.
    "mnist": {"model": {"stages": 3, "blocks_per_stage": 2, "hidden": 32}, "train": {}},
    "digits": {
        "model": {
            "stages": 2,
            "blocks_per_stage": 3,
            "hidden": 32,
            "readout": "dct",
            "split": False,
        },
        "train": {"max_shift": 1, "batch_size": 32},
    },
    # Appendix D.1: fully connected, 4 additive blocks, no batch norm, Adam with lr 1e-4.
    "spheres": {
        "model": {
            "stages": 1,
            "blocks_per_stage": 4,
            "hidden": 256,
            "coupling": "additive",
            "batch_norm": False,
        },
        "train": {
            "optimizer": "adam",
            "lr": 1e-4,
            "weight_decay": 0.0,
            "max_shift": 0,
            "dequantize": False,
        },
    },
}
"""Per-dataset defaults: ``model`` options of a fi-RevNet and training settings of any model.

Explicit options win."""


def _preset(dataset: str, part: str, cls: type[C], changes: dict[str, Any]) -> C:
    if dataset not in DATASET_PRESETS:
        known = ", ".join(sorted(DATASET_PRESETS))
        raise ConfigError(f"no preset for dataset {dataset!r}; presets exist for {known}")
    try:
        return replace(cls(**DATASET_PRESETS[dataset][part]), **changes)
    except TypeError as err:
        raise ConfigError(f"{part} preset of {dataset!r}: {err}") from None


def model_preset(dataset: str, **changes: Any) -> FiRevNetConfig:
    """The fi-RevNet config of ``dataset``'s preset with ``changes`` applied.

    Raises:
        ConfigError: ``dataset`` has no preset, or a change is not a FiRevNet option.
    """
    return _preset(dataset, "model", FiRevNetConfig, changes)


def train_preset(dataset: str, **changes: Any) -> TrainConfig:
    """The training config of ``dataset``'s preset with ``changes`` applied.

    Raises:
        ConfigError: ``dataset`` has no preset, or a change is not a TrainConfig field.
    """
    return _preset(dataset, "train", TrainConfig, changes)
