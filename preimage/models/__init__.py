"""Assembled networks and a registry to build them by name."""

from __future__ import annotations

from preimage.models.baselines import CNN, CNNConfig
from preimage.models.firevnet import FiRevNet, FiRevNetConfig
from preimage.models.iresnet import (
    BitsPerDim,
    IResNet,
    IResNetConfig,
    IResNetFlow,
    IResNetFlowConfig,
    build_iresnet_flow,
)
from preimage.models.isotopenet import (
    IsotopeNet,
    ResidualNet1D,
    count_parameters,
    receptive_field,
)
from preimage.models.registry import MODELS, build_model

__all__ = [
    "CNN",
    "MODELS",
    "BitsPerDim",
    "CNNConfig",
    "FiRevNet",
    "FiRevNetConfig",
    "IResNet",
    "IResNetConfig",
    "IResNetFlow",
    "IResNetFlowConfig",
    "IsotopeNet",
    "ResidualNet1D",
    "build_iresnet_flow",
    "build_model",
    "count_parameters",
    "receptive_field",
]
