r"""The averagine isotope model of peptides (Senko et al. 1995), as the thesis uses it.

A peptide of unknown sequence is modelled as a chain of *averagine* residues, the average amino
acid :math:`\mathrm{C}_{4.9384}\mathrm{H}_{7.7583}\mathrm{N}_{1.3577}\mathrm{O}_{1.4773}
\mathrm{S}_{0.0417}` (monoisotopic residue mass 111.0543 Da). For a singly charged ion of
monoisotopic m/z :math:`m`, the neutral mass :math:`M = m - m_p` (proton mass :math:`m_p`) holds
:math:`n_C = \mathrm{round}(4.9384\, M / 111.0543)` carbon atoms. Following the thesis, only
carbon is taken into account: the :math:`k`-th isotope peak (:math:`k` atoms of
:math:`^{13}\mathrm{C}`) lies at :math:`m + k\,\Delta_{13C}` with
:math:`\Delta_{13C} = 1.0033548` Da and has the binomial probability
:math:`\binom{n_C}{k} p^k (1 - p)^{n_C - k}`, :math:`p = 0.0107` (IUPAC abundance of
:math:`^{13}\mathrm{C}`). Peaks below the cut-off :math:`t_{iso} = 0.005` are dropped.

The number of m/z bins an isotope pattern covers (figure 7.3) follows from the peaks, a Gaussian
peak profile of width :math:`\sigma` and the bin edges: :func:`isotope_pattern_bins` counts the
bins that overlap :math:`[m_0 - 2\sigma, m_K + 2\sigma]` (first to last kept peak).

References:
    Senko, Beu, McLafferty (1995), *Determination of monoisotopic masses and ion populations for
    large biomolecules from resolved isotopic distributions*, J. Am. Soc. Mass Spectrom. 6(4).
    Behrmann (thesis), *Invertibility and Domain Knowledge*, section 7.3.2 ("Estimation of
    Isotope Size") and figure 7.3.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike
from scipy.stats import binom

from preimage.errors import ConfigError, ShapeError

__all__ = [
    "AVERAGINE",
    "AVERAGINE_MONO_MASS",
    "C13_ABUNDANCE",
    "C13_MASS_SHIFT",
    "PROTON_MASS",
    "averagine_carbons",
    "averagine_envelope",
    "averagine_formula",
    "isotope_pattern_bins",
]

AVERAGINE: dict[str, float] = {"C": 4.9384, "H": 7.7583, "N": 1.3577, "O": 1.4773, "S": 0.0417}
"""Elemental composition of one averagine residue (Senko et al. 1995)."""

AVERAGINE_MONO_MASS = 111.0543
"""Monoisotopic mass of one averagine residue, Da."""

C13_ABUNDANCE = 0.0107
"""Natural abundance of :math:`^{13}\\mathrm{C}` (IUPAC)."""

C13_MASS_SHIFT = 1.0033548352
"""Mass difference :math:`^{13}\\mathrm{C} - ^{12}\\mathrm{C}`, Da."""

PROTON_MASS = 1.00727646688
"""Mass of a proton, Da (the charge carrier of a singly charged [M+H]+ ion)."""


def _check_mass(mass: float) -> float:
    value = float(mass)
    if not np.isfinite(value) or value <= PROTON_MASS:
        raise ConfigError(f"mass must be a finite m/z above the proton mass, got {mass!r}")
    return value


def averagine_carbons(mass: float) -> int:
    r"""Carbon atoms of the averagine peptide of singly charged monoisotopic m/z ``mass``.

    Example:
        >>> averagine_carbons(1000.0), averagine_carbons(3000.0)
        (44, 133)
    """
    neutral = _check_mass(mass) - PROTON_MASS
    return max(1, round(AVERAGINE["C"] * neutral / AVERAGINE_MONO_MASS))


def averagine_formula(mass: float) -> dict[str, int]:
    r"""The whole averagine composition (rounded atom counts) of the peptide of ion m/z ``mass``.

    The thesis' model uses only the carbon count (:func:`averagine_carbons`); the full formula
    serves to compare that model with an exact isotope calculator.

    Example:
        >>> averagine_formula(1000.0)
        {'C': 44, 'H': 70, 'N': 12, 'O': 13, 'S': 0}
    """
    residues = (_check_mass(mass) - PROTON_MASS) / AVERAGINE_MONO_MASS
    return {element: round(count * residues) for element, count in AVERAGINE.items()}


def averagine_envelope(mass: float, *, t_iso: float = 0.005) -> tuple[np.ndarray, np.ndarray]:
    r"""Isotope peaks of the averagine peptide with singly charged monoisotopic m/z ``mass``.

    Args:
        mass: monoisotopic m/z of the [M+H]+ ion (Da, charge 1).
        t_iso: cut-off; peaks of probability below it are left out (thesis: 0.005).

    Returns:
        ``(masses, probabilities)``: float64 arrays, masses ascending from ``mass`` in steps of
        :math:`\Delta_{13C}`, probabilities the binomial ones of the kept peaks (not
        renormalised, so they sum to slightly less than 1).

    Raises:
        ConfigError: a mass at or below the proton mass, or ``t_iso`` outside ``[0, 1)``.

    References:
        Behrmann (thesis), section 7.3.2; Senko et al. (1995).

    Example:
        >>> masses, probs = averagine_envelope(1000.0)
        >>> len(masses), round(float(probs[0]), 3), round(float(masses[1] - masses[0]), 4)
        (4, 0.623, 1.0034)
    """
    m0 = _check_mass(mass)
    if not 0.0 <= t_iso < 1.0:
        raise ConfigError(f"t_iso must lie in [0, 1), got {t_iso}")
    n_carbon = averagine_carbons(m0)
    k = np.arange(n_carbon + 1)
    probs = binom.pmf(k, n_carbon, C13_ABUNDANCE)
    keep = probs >= t_iso
    # The binomial is unimodal, so the kept peaks are contiguous and include the mode.
    return m0 + k[keep] * C13_MASS_SHIFT, probs[keep].astype(np.float64)


def isotope_pattern_bins(
    masses: ArrayLike, edges: ArrayLike, *, sigma: float, t_iso: float = 0.005
) -> tuple[np.ndarray, np.ndarray]:
    r"""Bins covered by the averagine pattern of each m/z in ``masses`` (thesis figure 7.3).

    A pattern covers the bins overlapping :math:`[m_0 - 2\sigma, m_K + 2\sigma]`, from its first
    to its last kept peak widened by the Gaussian peak profile.

    Args:
        masses: monoisotopic m/z values of singly charged ions.
        edges: ascending bin edges, ``n_bins + 1`` values.
        sigma: standard deviation of the Gaussian peak profile, Da.
        t_iso: isotope cut-off of :func:`averagine_envelope`.

    Returns:
        ``(bins, peaks)``: int64 arrays, bins covered and isotope peaks kept per mass.

    Raises:
        ShapeError: edges not one-dimensional and ascending.
        ConfigError: a non-positive ``sigma``.

    Example:
        >>> edges = np.linspace(900.0, 1100.0, 2001)  # 0.1 Da bins
        >>> isotope_pattern_bins([1000.0], edges, sigma=0.04)
        (array([32]), array([4]))
    """
    e = np.asarray(edges, dtype=np.float64)
    if e.ndim != 1 or e.size < 2 or np.any(np.diff(e) <= 0):
        raise ShapeError("edges must be a one-dimensional ascending array of at least 2 values")
    if not sigma > 0:
        raise ConfigError(f"sigma must be positive, got {sigma}")
    m = np.atleast_1d(np.asarray(masses, dtype=np.float64))
    bins = np.empty(m.shape, dtype=np.int64)
    peaks = np.empty(m.shape, dtype=np.int64)
    for i, mass in enumerate(m):
        centres, _ = averagine_envelope(float(mass), t_iso=t_iso)
        lo, hi = centres[0] - 2.0 * sigma, centres[-1] + 2.0 * sigma
        # Bin j spans [e_j, e_{j+1}); it overlaps [lo, hi] when e_{j+1} > lo and e_j < hi.
        first = np.searchsorted(e, lo, side="right") - 1
        last = np.searchsorted(e, hi, side="left") - 1
        bins[i] = min(last, e.size - 2) - max(first, 0) + 1
        peaks[i] = centres.size
    return bins, peaks
