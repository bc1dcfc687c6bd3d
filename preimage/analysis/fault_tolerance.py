r"""Fault tolerance as information transmitted: :math:`I(T;Y)` and accuracy against the SNR.

For clean inputs :math:`x` with labels :math:`y` and a sequence of perturbed versions (the
iterates of an unbounded attack, or Gaussian noise at a sweep of SNRs),
:func:`label_information_curve` gives for each version the mean SNR in dB
(:func:`~preimage.information.gaussian.snr_db`), the accuracy and the discrete
:math:`I(T;Y)` between the model's predicted class :math:`T` and the label, in bits, by default
with the Miller-Madow correction: the plug-in value of a 10 x 10 table is biased up by about
:math:`81 / (2n)` nats, 0.12 bits at the ``n = 500`` of a CPU run.

Deviation: the paper does not say which :math:`T` its figure 5 uses; the predicted class is the
part of the output a decision rests on, and its discrete estimate needs no binning choices.

:func:`falling_phase_spearman` states figure 5's claim about an attack trajectory: the
information falls with the SNR while the attack is still destroying it, which ends when the
accuracy reaches chance. Below chance the paper describes a plateau and a slow rise
("the model reliably predicts a specific class as if it were a targeted attack"), and Fano's
inequality bounds :math:`I(T;Y)` from below by a falling function of the accuracy only down
to chance (:math:`1/K` for :math:`K` balanced classes), so a monotone fall is neither implied
nor claimed past that point.

References:
    Galloway et al. (2018), *A Rate-Distortion Theory of Adversarial Examples*, section 4.4,
    figure 5.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np
import torch
from scipy.stats import spearmanr
from torch import Tensor, nn

from preimage.attacks.base import eval_mode
from preimage.errors import ConfigError, ShapeError
from preimage.information.discrete import Correction, mutual_information
from preimage.information.gaussian import snr_db
from preimage.nn.classifier import logits_of

__all__ = ["falling_phase_spearman", "interpolate_on_snr", "label_information_curve"]


@torch.no_grad()
def label_information_curve(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    perturbed: Sequence[Tensor],
    *,
    definition: Literal["ratio", "one_plus"] = "ratio",
    correction: Correction = "miller_madow",
    batch_size: int = 1000,
) -> dict[str, np.ndarray]:
    """``{"snr_db", "i_ty_bits", "accuracy"}``, one entry per perturbed version of ``x``.

    A version equal to ``x`` has infinite SNR.

    Example:
        >>> net = nn.Linear(2, 2)
        >>> x = torch.randn(50, 2)
        >>> y = net(x).argmax(1)
        >>> curve = label_information_curve(net, x, y, [x + 0.01 * torch.randn(50, 2)])
        >>> bool(curve["snr_db"][0] > 30), float(curve["accuracy"][0]) > 0.9
        (True, True)
    """
    labels = y.detach().cpu().numpy()
    out: dict[str, list[float]] = {"snr_db": [], "i_ty_bits": [], "accuracy": []}
    with eval_mode(model):
        for version in perturbed:
            if version.shape != x.shape:
                raise ShapeError(
                    f"perturbed inputs {tuple(version.shape)} differ from {tuple(x.shape)}"
                )
            pred = torch.cat(
                [logits_of(model, chunk).argmax(1).cpu() for chunk in version.split(batch_size)]
            ).numpy()
            out["snr_db"].append(float(snr_db(x, version - x, definition=definition).mean()))
            out["i_ty_bits"].append(mutual_information(pred, labels, correction, unit="bits"))
            out["accuracy"].append(float((pred == labels).mean()))
    return {k: np.asarray(v) for k, v in out.items()}


def interpolate_on_snr(
    curve: dict[str, np.ndarray], grid: np.ndarray, key: str = "i_ty_bits"
) -> np.ndarray:
    """``curve[key]`` linearly interpolated at the SNRs ``grid`` (NaN outside its range).

    Example:
        >>> c = {"snr_db": np.array([30.0, 10.0]), "i_ty_bits": np.array([1.0, 0.0])}
        >>> interpolate_on_snr(c, np.array([20.0, 40.0])).tolist()
        [0.5, nan]
    """
    snr = curve["snr_db"]
    finite = np.isfinite(snr)
    order = np.argsort(snr[finite])
    xs, ys = snr[finite][order], curve[key][finite][order]
    values = np.interp(grid, xs, ys)
    values[(grid < xs[0]) | (grid > xs[-1])] = np.nan
    return values


def falling_phase_spearman(
    curve: dict[str, np.ndarray], chance: float, key: str = "i_ty_bits"
) -> tuple[float, int]:
    r"""Spearman correlation of SNR and ``curve[key]`` over an attack's falling phase.

    The falling phase is the trajectory from its start up to, not including, the first
    iterate whose accuracy is below ``chance``: there the attack is still removing
    information, and by Fano's inequality
    :math:`I(T;Y) \ge H(Y) - h(1 - a) - (1 - a)\log(K - 1)`, a bound that falls with the
    accuracy :math:`a` only down to :math:`a = 1/K`. Points of infinite SNR (unperturbed
    inputs) are left out. Returns ``(rho, points used)``; ``rho`` is NaN with fewer than
    three points or a constant curve.

    References:
        Galloway et al. (2018), section 4.4, figure 5. Cover & Thomas (2006), *Elements of
        Information Theory*, section 2.10 (Fano's inequality).

    Example:
        >>> c = {"snr_db": np.array([30.0, 20.0, 10.0, 5.0, 0.0]),
        ...      "i_ty_bits": np.array([3.0, 2.0, 1.0, 1.2, 1.3]),
        ...      "accuracy": np.array([0.9, 0.5, 0.15, 0.0, 0.0])}
        >>> falling_phase_spearman(c, chance=0.1)
        (1.0, 3)
    """
    if not 0.0 < chance < 1.0:
        raise ConfigError(f"chance accuracy must lie in (0, 1), got {chance}")
    below = np.flatnonzero(curve["accuracy"] < chance)
    end = int(below[0]) if below.size else curve["accuracy"].size
    snr, values = curve["snr_db"][:end], curve[key][:end]
    finite = np.isfinite(snr)
    snr, values = snr[finite], values[finite]
    if snr.size < 3 or np.ptp(values) == 0 or np.ptp(snr) == 0:
        return float("nan"), int(snr.size)
    return float(spearmanr(snr, values).statistic), int(snr.size)
