"""Assembled networks and a registry to build them by name."""

from __future__ import annotations

from preimage.models.baselines import CNN, CNNConfig
from preimage.models.firevnet import FiRevNet, FiRevNetConfig
from preimage.models.flow_features import FlowFeatureClassifier
from preimage.models.invnet import InvNet
from preimage.models.iresnet import (
    BitsPerDim,
    IResNet,
    IResNetConfig,
    IResNetFlow,
    IResNetFlowConfig,
    build_iresnet_flow,
)
from preimage.models.preact_resnet import PlainNet, PreActResNet
from preimage.models.registry import MODELS, build_model

__all__ = [
    "CNN",
    "MODELS",
    "BitsPerDim",
    "CNNConfig",
    "FiRevNet",
    "FiRevNetConfig",
    "FlowFeatureClassifier",
    "IResNet",
    "IResNetConfig",
    "IResNetFlow",
    "IResNetFlowConfig",
    "InvNet",
    "PlainNet",
    "PreActResNet",
    "build_iresnet_flow",
    "build_model",
]
