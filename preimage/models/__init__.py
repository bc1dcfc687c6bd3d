"""Assembled networks and a registry to build them by name."""

from __future__ import annotations

from preimage.models.baselines import CNN, CNNConfig
from preimage.models.firevnet import FiRevNet, FiRevNetConfig
from preimage.models.flow_features import FlowFeatureClassifier
from preimage.models.glow import GlowFlow, GlowFlowConfig
from preimage.models.invnet import InvNet
from preimage.models.iresnet import IResNet, IResNetConfig, IResNetLinear, build_iresnet
from preimage.models.iresnet_flow import (
    BitsPerDim,
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
from preimage.models.mlp import MLP
from preimage.models.preact_resnet import PlainNet, PreActResNet
from preimage.models.registry import MODELS, build_model
from preimage.models.residual import ResidualClassifier, plain_conv_branch
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
    "FlowFeatureClassifier",
    "GlowFlow",
    "GlowFlowConfig",
    "IResNet",
    "IResNetConfig",
    "IResNetFlow",
    "IResNetFlowConfig",
    "IResNetLinear",
    "InvNet",
    "IsotopeNet",
    "PlainNet",
    "PreActResNet",
    "ResidualClassifier",
    "ResidualNet1D",
    "build_iresnet",
    "build_iresnet_flow",
    "build_model",
    "count_parameters",
    "plain_conv_branch",
    "receptive_field",
]
