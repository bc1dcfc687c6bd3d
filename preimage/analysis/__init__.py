"""Analysis tools: exact operator norms and Lipschitz certificates of invertible networks."""

from __future__ import annotations

from preimage.analysis.operator_norm import (
    BlockCertificate,
    LayerBound,
    format_certificates,
    lipschitz_certificate,
    operator_norm,
)

__all__ = [
    "BlockCertificate",
    "LayerBound",
    "format_certificates",
    "lipschitz_certificate",
    "operator_norm",
]
