"""Analysis tools: exact operator norms and Lipschitz certificates of invertible networks,
pre-images of ReLU layers and the inverse stability of exact linearisations."""

from __future__ import annotations

from preimage.analysis.operator_norm import (
    BlockCertificate,
    LayerBound,
    format_certificates,
    lipschitz_certificate,
    operator_norm,
)
from preimage.analysis.relu_preimage import (
    KINDS,
    LayerPreimages,
    PreimageResult,
    classify_preimage,
    is_omnidirectional,
    layer_matrix,
    layer_preimages,
    omnidirectional_stack,
)
from preimage.analysis.stability import (
    ClassifierDiagnostic,
    LayerStability,
    linear_classifier_diagnostic,
    linearization,
    stability_profile,
)

__all__ = [
    "KINDS",
    "BlockCertificate",
    "ClassifierDiagnostic",
    "LayerBound",
    "LayerPreimages",
    "LayerStability",
    "PreimageResult",
    "classify_preimage",
    "format_certificates",
    "is_omnidirectional",
    "layer_matrix",
    "layer_preimages",
    "linear_classifier_diagnostic",
    "linearization",
    "lipschitz_certificate",
    "omnidirectional_stack",
    "operator_norm",
    "stability_profile",
]
