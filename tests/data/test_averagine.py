"""The averagine model against IsoSpecPy, and the isotope-pattern widths of figure 7.3."""

from __future__ import annotations

import IsoSpecPy
import numpy as np
import pytest

from preimage.data import averagine_envelope, isotope_pattern_bins, tof_edges
from preimage.data.averagine import (
    C13_ABUNDANCE,
    C13_MASS_SHIFT,
    averagine_carbons,
    averagine_formula,
)
from preimage.errors import ConfigError


def _merged(iso: IsoSpecPy.IsoThreshold) -> np.ndarray:
    """IsoSpecPy's fine structure, peaks of the same nucleon count merged."""
    masses, probs = np.array(list(iso.masses)), np.array(list(iso.probs))
    return np.bincount(np.round(masses - masses.min()).astype(int), probs)


def _isospec(formula: str) -> np.ndarray:
    """Exact distribution of ``formula`` with IsoSpecPy's own isotope table."""
    return _merged(IsoSpecPy.IsoThreshold(formula=formula, threshold=1e-12, get_confs=False))


@pytest.mark.parametrize("mass", [700.0, 1500.0, 3200.0, 4800.0])
def test_carbon_only_envelope_equals_isospec(mass: float) -> None:
    # Same carbon count and 13C abundance (IUPAC 0.0107; IsoSpecPy's table has 0.010788), so
    # the binomial must match IsoSpecPy's exact calculation.
    masses, probs = averagine_envelope(mass, t_iso=0.0)
    iso = IsoSpecPy.IsoThreshold(
        threshold=1e-13,
        absolute=True,
        get_confs=False,
        atomCounts=[averagine_carbons(mass)],
        isotopeMasses=[[12.0, 12.0 + C13_MASS_SHIFT]],
        isotopeProbabilities=[[1.0 - C13_ABUNDANCE, C13_ABUNDANCE]],
    )
    exact = _merged(iso)
    np.testing.assert_allclose(probs[: exact.size], exact, rtol=1e-8, atol=1e-13)
    assert probs[exact.size :].sum() < 1e-10
    np.testing.assert_allclose(np.diff(masses), C13_MASS_SHIFT)
    assert masses[0] == mass


@pytest.mark.parametrize("mass", [1000.0, 2500.0, 4500.0])
def test_envelope_close_to_full_averagine_composition(mass: float) -> None:
    # The thesis' model ignores H, N, O, S isotopes; against the exact distribution of the
    # whole averagine formula it must still carry the bulk of the shape.
    counts = averagine_formula(mass)
    formula = "".join(f"{el}{n}" for el, n in counts.items() if n > 0)
    exact = _isospec(formula)
    _, probs = averagine_envelope(mass, t_iso=0.0)
    n = min(probs.size, exact.size)
    # The total variation grows with mass (0.17 at 4.5 kDa): the N, O, S isotopes add up.
    assert 0.5 * np.abs(probs[:n] - exact[:n]).sum() < 0.05 + mass / 30000.0
    assert int(np.argmax(probs)) in (int(np.argmax(exact)), int(np.argmax(exact)) - 1)


def test_cutoff_keeps_peaks_at_or_above_t_iso() -> None:
    _, full = averagine_envelope(3000.0, t_iso=0.0)
    masses, probs = averagine_envelope(3000.0, t_iso=0.005)
    assert probs.min() >= 0.005
    assert probs.size == int((full >= 0.005).sum()) < full.size
    assert masses.size == probs.size
    with pytest.raises(ConfigError):
        averagine_envelope(0.5)


def test_bins_per_pattern_fall_with_mass_on_tof_grid() -> None:
    # Figure 7.3: at a fixed number of isotope peaks the TOF bins widen with mass, so the bins
    # per pattern fall; new peaks (t_iso) make the jumps, and bins per peak fall overall.
    edges = tof_edges(600.0, 5000.0, 26994)
    masses = np.linspace(650.0, 4900.0, 300)
    bins, peaks = isotope_pattern_bins(masses, edges, sigma=0.08)
    for n in np.unique(peaks):
        run = bins[peaks == n]
        assert np.all(np.diff(run) <= 1), n  # non-increasing up to one bin of discretisation
        if run.size > 20:
            assert run[-1] < run[0]
    per_peak = bins / peaks
    assert np.corrcoef(masses, per_peak)[0, 1] < -0.5
    assert np.all(np.diff(peaks) >= 0) and peaks[-1] > peaks[0]


def test_bins_per_pattern_on_equidistant_grid_grow_with_mass() -> None:
    # Contrast: on equal-width bins the pattern only grows (more peaks), so the fall on the TOF
    # grid comes from the binning.
    edges = np.linspace(600.0, 5000.0, 26995)
    bins, _ = isotope_pattern_bins(np.linspace(650.0, 4900.0, 100), edges, sigma=0.08)
    assert np.all(np.diff(bins) >= -1) and bins[-1] > bins[0]
