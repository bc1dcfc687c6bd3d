"""Information measurements: estimators with known answers (discrete, binning, kNN, kernel
bounds, Gaussian closed forms) for the rate-distortion view of adversarial examples, and the
information in a classifier's soft predictions (information-regularised networks).

References:
    Galloway et al. (2018), *A Rate-Distortion Theory of Adversarial Examples*, sections 4.1-4.4.
    *Information-Regularized Neural Networks*, propositions 2.1-2.2.
"""

from __future__ import annotations

from preimage.information.binning import AdaptiveBinner, binned_information
from preimage.information.discrete import (
    entropy,
    mutual_information,
    mutual_information_from_joint,
    symbol_codes,
)
from preimage.information.gaussian import awgn_capacity, gaussian_mutual_information, snr_db
from preimage.information.kernel import kernel_mi_bounds
from preimage.information.knn import ksg_mutual_information, mixed_mutual_information
from preimage.information.plane import InformationPlane, layer_activations
from preimage.information.predictive import (
    ConstrainLogger,
    irrelevant_information,
    predictive_information,
    relevant_information,
    soft_confusion,
)

__all__ = [
    "AdaptiveBinner",
    "ConstrainLogger",
    "InformationPlane",
    "awgn_capacity",
    "binned_information",
    "entropy",
    "gaussian_mutual_information",
    "irrelevant_information",
    "kernel_mi_bounds",
    "ksg_mutual_information",
    "layer_activations",
    "mixed_mutual_information",
    "mutual_information",
    "mutual_information_from_joint",
    "predictive_information",
    "relevant_information",
    "snr_db",
    "soft_confusion",
    "symbol_codes",
]
