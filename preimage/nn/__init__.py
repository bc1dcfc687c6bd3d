"""Invertible building blocks: every block maps ``x -> (y, logdet)`` and has an ``inverse``."""

from __future__ import annotations

from preimage.nn.actnorm import ActNorm
from preimage.nn.base import FlatCodeModel, InvertibleModule, InvertibleSequential, Shape
from preimage.nn.classifier import BijectiveClassifier, Classifier, logits_of, model_output
from preimage.nn.conv1x1 import InvConv1x1
from preimage.nn.coupling import AdditiveCoupling, AffineCoupling, conv_subnet, mlp_subnet
from preimage.nn.dct import DCT2d, DCTReadout, dct_matrix
from preimage.nn.iresblock import InverseDiagnostics, IResBlock, conv_branch, dense_branch
from preimage.nn.logdet import (
    exact_logdet,
    neumann_logdet,
    power_series_logdet,
    roulette_logdet,
    series_terms_needed,
    series_truncation_bound,
)
from preimage.nn.logit import LogitTransform
from preimage.nn.reshape import CenterReadout, Flatten, InjectivePad, Split, Squeeze
from preimage.nn.spectral import SpectralConv2d, SpectralLinear

__all__ = [
    "ActNorm",
    "AdditiveCoupling",
    "AffineCoupling",
    "BijectiveClassifier",
    "CenterReadout",
    "Classifier",
    "DCT2d",
    "DCTReadout",
    "FlatCodeModel",
    "Flatten",
    "IResBlock",
    "InjectivePad",
    "InvConv1x1",
    "InverseDiagnostics",
    "InvertibleModule",
    "InvertibleSequential",
    "LogitTransform",
    "Shape",
    "SpectralConv2d",
    "SpectralLinear",
    "Split",
    "Squeeze",
    "conv_branch",
    "conv_subnet",
    "dct_matrix",
    "dense_branch",
    "exact_logdet",
    "logits_of",
    "mlp_subnet",
    "model_output",
    "neumann_logdet",
    "power_series_logdet",
    "roulette_logdet",
    "series_terms_needed",
    "series_truncation_bound",
]
