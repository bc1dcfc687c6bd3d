"""The synthetic TMA generator: hierarchy, TOF binning, peptides and the class signal."""

from __future__ import annotations

import numpy as np
import pytest

from preimage.data import TMA_PRESETS, synthetic_tma, tof_edges
from preimage.data.tma_synthetic import _layout, peptide_mz, tryptic_digest
from preimage.errors import ConfigError


@pytest.mark.parametrize(("preset", "spots"), [("adsq", 4672), ("lp", 27475)])
def test_full_presets_have_the_thesis_totals(preset: str, spots: int) -> None:
    cfg = TMA_PRESETS[preset]
    tma, core, label, x, y, roi = _layout(cfg, np.random.default_rng(0))
    assert tma.size == spots and np.unique(tma).size == 12
    assert roi.all() == cfg.roi_only  # ADSQ keeps ROI spots only, LP whole cores
    assert len(set(zip(x.tolist(), y.tolist(), strict=True))) == spots  # one spot per pixel
    assert x.min() >= 1 and y.min() >= 1
    for t in np.unique(tma):
        core_labels = [label[core == c][0] for c in np.unique(core[tma == t])]
        assert abs(np.mean(core_labels) - 0.5) <= 0.5 / len(core_labels) + 1e-9
    mean_width = (cfg.mz_hi - cfg.mz_lo) / cfg.n_bins
    assert mean_width == pytest.approx(0.163, abs=1e-3)


def test_tof_bins_widen_like_sqrt_mass() -> None:
    widths = np.diff(tof_edges(600.0, 5000.0, 26994))
    mid = 0.5 * (tof_edges(600.0, 5000.0, 26994)[1:] + tof_edges(600.0, 5000.0, 26994)[:-1])
    ratio = widths / np.sqrt(mid)
    assert ratio.max() / ratio.min() < 1.0001
    assert widths.mean() == pytest.approx(0.163, abs=1e-3)


def test_trypsin_and_masses() -> None:
    assert tryptic_digest("AKPRK") == ["AKPR", "K"]
    # Angiotensin II, DRVYIHPF: [M+H]+ monoisotopic 1046.5418.
    assert peptide_mz("DRVYIHPF") == pytest.approx(1046.5418, abs=2e-3)


def test_tiny_data_set() -> None:
    ds = synthetic_tma("tiny", seed=1)
    assert ds.spectra.shape == (384, 1840) and ds.spectra.dtype == np.float32
    np.testing.assert_allclose(ds.spectra.mean(axis=1), 1.0, rtol=1e-4)  # TIC normalised
    assert (ds.spectra >= 0).all()
    assert np.unique(ds.tma).size == 8 and np.unique(ds.core).size == 48
    for c in np.unique(ds.core):
        assert (
            np.unique(ds.label[ds.core == c]).size == 1
            and np.unique(ds.tma[ds.core == c]).size == 1
        )
    assert ds.planted_mz.size > 0
    assert synthetic_tma("tiny", seed=1) == ds  # deterministic


def _class_gap_at_planted(ds) -> float:
    """Largest class difference of mean log intensity at the planted monoisotopic peaks."""
    idx = np.searchsorted(ds.mz, ds.planted_mz)
    logx = np.log(ds.spectra[:, idx] + 0.1)
    return float(np.abs(logx[ds.label == 1].mean(0) - logx[ds.label == 0].mean(0)).max())


def test_class_signal_switch() -> None:
    on = synthetic_tma("tiny", seed=2)
    off = synthetic_tma("tiny", seed=2, class_signal=0.0)
    assert _class_gap_at_planted(on) > 2.0 * _class_gap_at_planted(off)
    with pytest.raises(ConfigError):
        synthetic_tma("huge")
    with pytest.raises(ConfigError):
        synthetic_tma("tiny", n_tmas=40)


def test_null_data_do_not_depend_on_the_fold_change() -> None:
    # The class effect's size draws no random numbers of its own, so recalibrating log_fold
    # leaves the null (class_signal=0) data, and the no-leakage runs on them, unchanged.
    null = synthetic_tma("tiny", seed=3, class_signal=0.0)
    assert synthetic_tma("tiny", seed=3, class_signal=0.0, log_fold=0.23) == null
    assert synthetic_tma("tiny", seed=3, log_fold=0.23) != synthetic_tma("tiny", seed=3)
