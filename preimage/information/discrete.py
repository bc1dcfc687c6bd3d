r"""Entropy and mutual information of discrete (or discretised) variables.

The plug-in (maximum-likelihood) estimators replace probabilities by frequencies; they are
biased low for the entropy by about :math:`(m - 1) / (2n)` nats for :math:`m` occupied bins and
:math:`n` samples, which the Miller-Madow correction adds back. A discrete mutual information
:math:`I(A;B) = H(A) + H(B) - H(A,B)` inherits the correction from its three entropies, which
removes the upward bias :math:`(m_A - 1)(m_B - 1)/(2n)` of the plug-in value for independent
variables.

Symbols may be rows: an array of shape ``(n, d)`` is read as ``n`` symbols, each a ``d``-tuple
(a binned layer's code, for instance).

References:
    Galloway et al. (2018), *A Rate-Distortion Theory of Adversarial Examples*, section 4.2 (the
    plug-in maximum-likelihood estimator of the information plane). Paninski (2003), *Estimation
    of Entropy and Mutual Information*, section 3 (plug-in bias, Miller-Madow). Cover & Thomas,
    *Elements of Information Theory*, chapter 2.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
import torch
from sklearn.metrics import mutual_info_score
from torch import Tensor

from preimage.errors import ConfigError, DataError, ShapeError
from preimage.information.units import Unit, unit_divisor

__all__ = ["entropy", "mutual_information", "mutual_information_from_joint", "symbol_codes"]

Correction = Literal["none", "miller_madow"]


def symbol_codes(symbols: Any) -> np.ndarray:
    """Integer codes ``0..m-1`` of ``n`` symbols (scalars, or rows of an ``(n, d)`` array).

    Raises:
        DataError: no symbols.
        ShapeError: more than two dimensions.

    Example:
        >>> symbol_codes([[0, 1], [2, 3], [0, 1]]).tolist()
        [0, 1, 0]
    """
    if isinstance(symbols, Tensor):
        symbols = symbols.detach().cpu().numpy()
    arr = np.asarray(symbols)
    if arr.ndim == 0 or arr.shape[0] == 0:
        raise DataError("need at least one symbol")
    if arr.ndim > 2:
        raise ShapeError(f"symbols must be (n,) or (n, d), got shape {arr.shape}")
    if arr.ndim == 2:
        _, codes = np.unique(arr, axis=0, return_inverse=True)
    else:
        _, codes = np.unique(arr, return_inverse=True)
    return codes.reshape(-1).astype(np.int64)


def _entropy_of_codes(codes: np.ndarray, correction: str) -> float:
    counts = np.bincount(codes)
    counts = counts[counts > 0]
    n = codes.size
    p = counts / n
    h = float(-(p * np.log(p)).sum())
    if correction == "miller_madow":
        h += (counts.size - 1) / (2.0 * n)
    elif correction != "none":
        raise ConfigError(f"unknown correction {correction!r}; use 'none' or 'miller_madow'")
    return h


def entropy(symbols: Any, correction: Correction = "none", *, unit: Unit = "nats") -> float:
    r"""Plug-in entropy :math:`H = -\sum_s \hat p_s \log \hat p_s` of a sample of symbols.

    Args:
        symbols: ``(n,)`` symbols or ``(n, d)`` rows, each row one symbol.
        correction: ``"none"`` (plug-in) or ``"miller_madow"`` (adds :math:`(m-1)/(2n)` nats,
            :math:`m` the number of distinct symbols seen).
        unit: ``"nats"`` or ``"bits"``.

    References:
        Paninski (2003), section 3; Galloway et al. (2018), section 4.2.

    Example:
        >>> round(entropy([0, 1, 2, 3], unit="bits"), 6)
        2.0
        >>> round(entropy([0, 0, 1, 1], correction="miller_madow"), 6)  # ln 2 + 1/8
        0.818147
    """
    return _entropy_of_codes(symbol_codes(symbols), correction) / unit_divisor(unit)


def mutual_information(
    a: Any, b: Any, correction: Correction = "none", *, unit: Unit = "nats"
) -> float:
    r"""Plug-in mutual information :math:`I(A;B)` of paired discrete samples.

    The plug-in value is scikit-learn's :func:`~sklearn.metrics.mutual_info_score` on the
    symbol codes; ``"miller_madow"`` adds the corrections of :math:`H(A)`, :math:`H(B)` and
    :math:`-H(A,B)`, i.e. :math:`(m_A + m_B - m_{AB} - 1)/(2n)` nats, which is negative and
    cancels the plug-in's bias for independent variables (the result may then be below 0).

    Args:
        a: ``(n,)`` symbols or ``(n, d)`` rows.
        b: ``(n,)`` symbols or ``(n, d')`` rows, paired with ``a``.
        correction: ``"none"`` or ``"miller_madow"``.
        unit: ``"nats"`` or ``"bits"``.

    Raises:
        ShapeError: ``a`` and ``b`` hold different numbers of samples.

    References:
        Galloway et al. (2018), section 4.2; Paninski (2003), section 3.

    Example:
        >>> round(mutual_information([0, 1, 0, 1], [1, 0, 1, 0], unit="bits"), 6)
        1.0
    """
    ca, cb = symbol_codes(a), symbol_codes(b)
    if ca.size != cb.size:
        raise ShapeError(f"a and b must pair up: {ca.size} vs {cb.size} samples")
    if correction not in ("none", "miller_madow"):
        raise ConfigError(f"unknown correction {correction!r}; use 'none' or 'miller_madow'")
    mi = float(mutual_info_score(ca, cb))
    if correction == "miller_madow":
        joint = ca * (int(cb.max()) + 1) + cb
        m_a, m_b, m_ab = np.unique(ca).size, np.unique(cb).size, np.unique(joint).size
        mi += (m_a + m_b - m_ab - 1) / (2.0 * ca.size)
    return mi / unit_divisor(unit)


def mutual_information_from_joint(p: Tensor, *, unit: Unit = "nats") -> Tensor:
    r"""Differentiable :math:`I(A;B) = \sum_{ij} p_{ij} \log \frac{p_{ij}}{p_i p_j}` of a table.

    Zero cells contribute 0 (:math:`0 \log 0 = 0`) and get a finite gradient, so the table can
    be the output of a model (a soft confusion matrix, say) trained through this value.

    Args:
        p: non-negative joint probabilities of shape ``(|A|, |B|)``; normalised here, so
            counts are accepted too.
        unit: ``"nats"`` or ``"bits"``.

    Raises:
        ShapeError: ``p`` is not a matrix.
        DataError: ``p`` has a negative entry or sums to 0.

    References:
        Cover & Thomas, *Elements of Information Theory*, equation (2.28).

    Example:
        >>> p = torch.tensor([[0.45, 0.05], [0.05, 0.45]])  # binary symmetric channel, eps 0.1
        >>> round(float(mutual_information_from_joint(p)), 6)
        0.368064
    """
    if p.dim() != 2:
        raise ShapeError(f"joint table must be a matrix, got shape {tuple(p.shape)}")
    if bool((p < 0).any()):
        raise DataError("joint table has negative entries")
    total = p.sum()
    if float(total.detach()) <= 0:
        raise DataError("joint table sums to 0")
    p = p / total
    outer = p.sum(dim=1, keepdim=True) * p.sum(dim=0, keepdim=True)
    # Where p_ij = 0 the term is 0; masking both arguments keeps log() and its gradient finite.
    mask = p > 0
    ratio = torch.where(mask, p, torch.ones_like(p)) / torch.where(mask, outer, torch.ones_like(p))
    mi = torch.where(mask, p * torch.log(ratio), torch.zeros_like(p)).sum()
    return mi / unit_divisor(unit)
