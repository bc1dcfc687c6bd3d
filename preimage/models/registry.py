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
from preimage.models.baselines import CNN
from preimage.models.firevnet import FiRevNet
from preimage.models.iresnet import IResNet, build_iresnet_flow
from preimage.models.isotopenet import IsotopeNet, ResidualNet1D

__all__ = ["MODELS", "build_model"]

MODELS: dict[str, Callable[..., nn.Module]] = {
    "cnn": CNN,
    "fi-revnet": FiRevNet,
    "i-resnet": IResNet,
    "i-resnet-flow": build_iresnet_flow,
    "isotopenet": IsotopeNet,
    "residualnet-1d": ResidualNet1D,
}
"""Model name -> constructor ``(in_shape, num_classes, **options)``."""


def build_model(name: str, in_shape: Sequence[int], num_classes: int, **options: Any) -> nn.Module:
    """Construct the model registered as ``name``; unknown names raise :class:`ConfigError`."""
    try:
        factory = MODELS[name]
    except KeyError:
        known = ", ".join(sorted(MODELS))
        raise ConfigError(f"unknown model {name!r}; known models: {known}") from None
    return factory(tuple(in_shape), num_classes, **options)
