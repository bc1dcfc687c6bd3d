"""Invertible building blocks: every block maps ``x -> (y, logdet)`` and has an ``inverse``."""

from __future__ import annotations

from preimage.nn.actnorm import ActNorm
from preimage.nn.base import InvertibleModule, InvertibleSequential, Shape
from preimage.nn.conv1x1 import InvConv1x1
from preimage.nn.coupling import AdditiveCoupling, AffineCoupling, conv_subnet, mlp_subnet
from preimage.nn.dct import DCT2d, DCTReadout, dct_matrix
from preimage.nn.reshape import Flatten, InjectivePad, Split, Squeeze

__all__ = [
    "ActNorm",
    "AdditiveCoupling",
    "AffineCoupling",
    "DCT2d",
    "DCTReadout",
    "Flatten",
    "InjectivePad",
    "InvConv1x1",
    "InvertibleModule",
    "InvertibleSequential",
    "Shape",
    "Split",
    "Squeeze",
    "conv_subnet",
    "dct_matrix",
    "mlp_subnet",
]
