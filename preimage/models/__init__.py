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
from preimage.models.mlp import MLP
from preimage.models.registry import MODELS, build_model
from preimage.models.svhn_cnn import SVHNCNN

__all__ = [
    "CNN",
    "MLP",
    "MODELS",
    "SVHNCNN",
    "BitsPerDim",
    "CNNConfig",
    "FiRevNet",
    "FiRevNetConfig",
    "IResNet",
    "IResNetConfig",
    "IResNetFlow",
    "IResNetFlowConfig",
    "build_iresnet_flow",
    "build_model",
]
