r"""Closed forms for Gaussian variables and the Gaussian channel, and the SNR of a perturbation.

References:
    Cover & Thomas, *Elements of Information Theory*, sections 8.5 and 9.1. Galloway et al.
    (2018), *A Rate-Distortion Theory of Adversarial Examples*, section 2, equation (1) (the
    capacity of the AWGN channel) and section 4.4 (SNR in dB).
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
import torch
from torch import Tensor

from preimage.errors import ConfigError, DataError, ShapeError
from preimage.information.units import Unit, unit_divisor

__all__ = ["awgn_capacity", "gaussian_mutual_information", "snr_db"]


def gaussian_mutual_information(
    cov: Any, dim_x: int | None = None, *, unit: Unit = "nats"
) -> float:
    r""":math:`I(X;Y) = \frac12 \log \frac{\det\Sigma_X \det\Sigma_Y}{\det\Sigma}`, Gaussian (X, Y).

    Args:
        cov: joint covariance ``(d, d)`` of :math:`(X, Y)`, :math:`X` the first ``dim_x``
            coordinates; a number is read as the correlation :math:`\rho` of two unit
            variances (:math:`I = -\frac12 \log(1 - \rho^2)`).
        dim_x: size of :math:`X` (default ``d // 2``).
        unit: ``"nats"`` or ``"bits"``.

    Raises:
        ShapeError: ``cov`` is not square or ``dim_x`` leaves no room for :math:`Y`.
        DataError: ``cov`` is not positive definite.

    References:
        Cover & Thomas, section 8.5 (differential entropy of a Gaussian).

    Example:
        >>> round(gaussian_mutual_information(0.5), 6), round(gaussian_mutual_information(0.9), 6)
        (0.143841, 0.830366)
    """
    arr = np.asarray(cov, dtype=np.float64)
    if arr.ndim == 0:
        rho = float(arr)
        arr = np.array([[1.0, rho], [rho, 1.0]])
    if arr.ndim != 2 or arr.shape[0] != arr.shape[1]:
        raise ShapeError(f"cov must be a square matrix, got shape {arr.shape}")
    d = arr.shape[0]
    dim_x = d // 2 if dim_x is None else dim_x
    if not 1 <= dim_x < d:
        raise ShapeError(f"dim_x must be in 1..{d - 1}, got {dim_x}")
    logdets = []
    for block in (arr, arr[:dim_x, :dim_x], arr[dim_x:, dim_x:]):
        sign, logdet = np.linalg.slogdet(block)
        if sign <= 0:
            raise DataError("cov is not positive definite")
        logdets.append(logdet)
    return float(0.5 * (logdets[1] + logdets[2] - logdets[0])) / unit_divisor(unit)


def awgn_capacity(snr: Any, *, unit: Unit = "nats") -> Any:
    r"""Capacity :math:`C = \frac12 \log(1 + P/N)` of the additive white Gaussian noise channel.

    Args:
        snr: the (linear, not dB) signal-to-noise ratio :math:`P/N \ge 0`; a number or an array.
        unit: ``"nats"`` or ``"bits"`` (the paper's equation (1) is in bits per transmission).

    Returns:
        Capacity per transmission: a float for a number, an array for an array.

    Raises:
        DataError: a negative SNR.

    References:
        Galloway et al. (2018), section 2, equation (1); Cover & Thomas, section 9.1.

    Example:
        >>> awgn_capacity(3.0, unit="bits")
        1.0
    """
    arr = np.asarray(snr, dtype=np.float64)
    if (arr < 0).any():
        raise DataError("snr must be >= 0 (a power ratio, not decibels)")
    c = 0.5 * np.log1p(arr) / unit_divisor(unit)
    return float(c) if c.ndim == 0 else c


def snr_db(x: Tensor, delta: Tensor, definition: Literal["ratio", "one_plus"] = "ratio") -> Tensor:
    r"""Per-sample signal-to-noise ratio of a perturbation ``delta`` of ``x``, in decibels.

    Section 4.4 computes "SNR in dB as in Cisse et al. (2017)", and the extracted text reads
    :math:`20 \log_{10}(1 + \|x\|/\|\delta_x\|)`, with the fraction garbled. Both readings are
    offered:

    * ``"ratio"`` (default): :math:`20 \log_{10}(\|x\|_2 / \|\delta\|_2)`, the usual amplitude SNR
      (Cisse et al.'s Parseval-network definition); it is 20 dB for :math:`\delta = 0.1x` and
      goes to :math:`-\infty` as :math:`\delta` dominates.
    * ``"one_plus"``: :math:`20 \log_{10}(1 + \|x\|_2 / \|\delta\|_2)`, the literal text; always
      positive, tending to 0 dB for large perturbations (figure 5's axis ends at 0 dB, which
      fits this reading).

    Returns decibels, which do not depend on an information unit, so unlike the rest of
    :mod:`preimage.information` this function takes no ``unit``.

    Args:
        x: clean inputs ``(B, ...)``.
        delta: perturbations of the same shape.
        definition: ``"ratio"`` or ``"one_plus"``.

    Raises:
        ShapeError: shapes differ.
        ConfigError: unknown definition.

    References:
        Galloway et al. (2018), section 4.4; Cisse et al. (2017), *Parseval Networks*, section 5.

    Example:
        >>> x = torch.ones(2, 3)
        >>> snr_db(x, 0.1 * x).tolist()
        [20.0, 20.0]
        >>> round(float(snr_db(x, 0.1 * x, definition="one_plus")[0]), 4)  # 20 log10(11)
        20.8279
    """
    if x.shape != delta.shape:
        raise ShapeError(f"x and delta differ in shape: {tuple(x.shape)} vs {tuple(delta.shape)}")
    if definition not in ("ratio", "one_plus"):
        raise ConfigError(f"unknown definition {definition!r}; use 'ratio' or 'one_plus'")
    signal = x.reshape(x.shape[0], -1).norm(dim=1)
    noise = delta.reshape(delta.shape[0], -1).norm(dim=1)
    ratio = signal / noise
    if definition == "one_plus":
        ratio = 1.0 + ratio
    return 20.0 * torch.log10(ratio)
