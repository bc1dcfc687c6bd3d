"""Training objectives: the independence cross-entropy and its nuisance classifier, and the
information-regularised cross-entropy with its alternating autoencoder scheme."""

from __future__ import annotations

from preimage.losses.ice import IceConfig, IndependenceCrossEntropy, gaussian_nll
from preimage.losses.nuisance import NuisanceClassifier

__all__ = ["IceConfig", "IndependenceCrossEntropy", "NuisanceClassifier", "gaussian_nll"]
from preimage.losses.autoencoder import AlternatingAutoencoderLoss
from preimage.losses.info_reg import (
    FeatureClassifier,
    InformationRegularizedLoss,
    soft_threshold,
)

__all__ = [
    "AlternatingAutoencoderLoss",
    "FeatureClassifier",
    "IndependenceCrossEntropy",
    "InformationRegularizedLoss",
    "NuisanceClassifier",
    "gaussian_nll",
    "soft_threshold",
]
