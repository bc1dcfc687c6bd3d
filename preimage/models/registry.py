"""Build models by the names the CLI and checkpoints use.

Example:
    >>> from preimage.models import build_model
    >>> model = build_model("fi-revnet", (1, 8, 8), 10, stages=2, blocks_per_stage=1, hidden=8)
    >>> type(model).__name__
    'FiRevNet'
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from torch import nn

from preimage.errors import ConfigError
from preimage.models.baselines import CNN, CNNConfig
from preimage.models.firevnet import FiRevNet, FiRevNetConfig
from preimage.models.iresnet import IResNetConfig, build_iresnet
from preimage.models.iresnet_flow import IResNetFlowConfig, build_iresnet_flow
from preimage.models.isotopenet import IsotopeNet, ResidualNet1D
from preimage.models.mlp import MLP
from preimage.models.svhn_cnn import SVHNCNN

__all__ = ["CLASSIFIERS", "MODELS", "MODEL_CONFIGS", "build_model"]

MODELS: dict[str, Callable[..., nn.Module]] = {
    "cnn": CNN,
    "fi-revnet": FiRevNet,
    "i-resnet": build_iresnet,
    "i-resnet-flow": build_iresnet_flow,
    "mlp": MLP,
    "svhn-cnn": SVHNCNN,
    "isotopenet": IsotopeNet,
    "residualnet-1d": ResidualNet1D,
}
"""Model name -> constructor ``(in_shape, num_classes, **options)``."""

MODEL_CONFIGS: dict[str, type] = {
    "cnn": CNNConfig,
    "fi-revnet": FiRevNetConfig,
    "i-resnet": IResNetConfig,
    "i-resnet-flow": IResNetFlowConfig,
}
"""Model name -> the dataclass of its options: what ``-m KEY=VALUE`` is typed against."""

CLASSIFIERS: tuple[str, ...] = ("cnn", "fi-revnet", "i-resnet")
"""The models ``preimage train`` trains with cross-entropy. ``i-resnet-flow`` is a density
model; the ``iresnet-mnist-flow`` study trains it with its likelihood."""


def build_model(name: str, in_shape: Sequence[int], num_classes: int, **options: Any) -> nn.Module:
    """Construct the model registered as ``name``; unknown names raise :class:`ConfigError`."""
    try:
        factory = MODELS[name]
    except KeyError:
        known = ", ".join(sorted(MODELS))
        raise ConfigError(f"unknown model {name!r}; known models: {known}") from None
    return factory(tuple(in_shape), num_classes, **options)
