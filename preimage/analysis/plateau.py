r"""When a noisy training curve reaches its plateau, read as on a log-epoch axis.

Figure 2 of the paper reads off, on log-log axes, the epoch from which each network's gradient
SNR "approaches a constant". :func:`plateau_epoch` states that reading: the first epoch from
which a running median of the curve stays within ``tolerance`` of its final level, where the
band is widened by what the scatter of the curve allows one to resolve.

Why not the raw values against a fixed band: the per-epoch SNR is itself an estimate from the
epoch's mini-batches (20 of them at the ``cpu`` budget of ``gradient-snr``) and scatters from
one epoch to the next by more than 0.1 decade, so a rule "every epoch within 0.1 decade of the
final level" put every noisy curve's plateau in the last few epochs of the run, whatever its
trend (``window_decades=0, z=0`` is that rule). Here:

1. the final level :math:`L` is the mean of the last ``tail`` fraction of epochs;
2. the scatter :math:`\sigma` is estimated from the data, robustly, from the epoch-to-epoch
   differences over that tail (:math:`1.4826\,\mathrm{MAD}(\Delta)/\sqrt2`, the standard
   deviation of independent noise on each epoch);
3. the running level :math:`m(e)` is the median over the epochs in
   :math:`[e\,10^{-w/2}, e\,10^{w/2}]`, a window of constant width :math:`w` =
   ``window_decades`` on the log-epoch axis of the figure, holding :math:`n(e)` epochs;
4. :math:`e` is on the plateau when
   :math:`|m(e) - L| \le \mathrm{tolerance} + z \sqrt{(1.2533\,\sigma)^2 / n(e) +
   \sigma^2 / n_\mathrm{tail}}`, the second term being ``z`` standard errors of the
   difference (1.2533 is the efficiency factor of a median of normal values);
5. the plateau epoch is the first from which every later epoch is on the plateau.

A trend larger than the band is still a trend: a curve that drifts by more than
``tolerance`` over the rest of the run does not plateau, however noisy it is, once the windows
hold enough epochs to resolve the drift. What the noise allowance costs: a deviation below
``z`` standard errors cannot be told from scatter, so a noisy curve can be called flat up to
that much earlier than a noiseless one.

References:
    Galloway et al. (2018), *A Rate-Distortion Theory of Adversarial Examples*, section 4.1,
    figure 2. Hampel (1974), *JASA* 69 (the MAD as a scale estimate).
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import ArrayLike

from preimage.errors import ConfigError

__all__ = ["epoch_scatter", "plateau_epoch"]

_MAD_TO_STD = 1.4826  # MAD of a normal variable times this is its standard deviation
_MEDIAN_EFFICIENCY = 1.2533  # std of a median of n normal values is this * sigma / sqrt(n)


def epoch_scatter(values: ArrayLike, tail: float = 0.1) -> float:
    r"""Robust standard deviation of independent per-epoch noise on a curve, from the
    epoch-to-epoch differences over its last ``tail`` fraction (at least 3 epochs):
    :math:`1.4826\,\mathrm{MAD}(\Delta) / \sqrt 2`.

    Example:
        >>> noisy = np.random.default_rng(0).normal(0.0, 0.5, 10_000)
        >>> round(epoch_scatter(noisy, tail=1.0), 1)
        0.5
    """
    values = np.asarray(values, dtype=np.float64)
    n_tail = max(1, round(tail * values.size))
    diffs = np.diff(values[-max(n_tail, 3) :])
    if diffs.size == 0:
        return 0.0
    return _MAD_TO_STD * float(np.median(np.abs(diffs - np.median(diffs)))) / math.sqrt(2)


def plateau_epoch(
    values: ArrayLike,
    *,
    tolerance: float = 0.1,
    tail: float = 0.1,
    window_decades: float = 0.1,
    z: float = 3.0,
) -> int:
    r"""First epoch (1-based) from which ``values`` (one per epoch) stay at their final level
    (the module's steps 1-5; at most the last epoch).

    Args:
        values: the curve, ``values[i]`` at epoch ``i + 1`` (e.g. the mean log10 SNR).
        tolerance: half-width of the band around the final level, in the curve's units.
        tail: fraction of the last epochs that gives the final level and the scatter.
        window_decades: width of the running-median window on the log10-epoch axis.
        z: standard errors of the scatter added to the band.

    Example:
        >>> plateau_epoch(np.array([0.0, 0.5, 0.95, 1.0, 1.02, 0.98, 1.0, 1.0, 1.0, 1.0]))
        3
    """
    values = np.asarray(values, dtype=np.float64)
    if values.ndim != 1 or values.size == 0 or not np.all(np.isfinite(values)):
        raise ConfigError("plateau_epoch needs a non-empty 1-D curve of finite values")
    if not (tolerance >= 0 and 0 < tail <= 1 and window_decades >= 0 and z >= 0):
        raise ConfigError(
            "need tolerance >= 0, 0 < tail <= 1, window_decades >= 0 and z >= 0; got "
            f"{tolerance}, {tail}, {window_decades}, {z}"
        )
    n = values.size
    n_tail = max(1, round(tail * n))
    level = values[-n_tail:].mean()
    sigma = epoch_scatter(values, tail)
    epochs = np.arange(1, n + 1)
    half = 10.0 ** (window_decades / 2)
    lo = np.clip(np.ceil(epochs / half - 1e-9).astype(int), 1, n) - 1
    hi = np.clip(np.floor(epochs * half + 1e-9).astype(int), 1, n)
    running = np.array([np.median(values[a:b]) for a, b in zip(lo, hi, strict=True)])
    counts = hi - lo
    band = tolerance + z * np.sqrt((_MEDIAN_EFFICIENCY * sigma) ** 2 / counts + sigma**2 / n_tail)
    outside = np.flatnonzero(np.abs(running - level) > band)
    # A curve whose last epoch is off its own final level has not settled: the run's end.
    return 1 if outside.size == 0 else min(n, int(outside[-1]) + 2)
