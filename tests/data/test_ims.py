"""imzML round trips through preimage and through pyimzml's own parser."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
from pyimzml.ImzMLParser import ImzMLParser
from pyimzml.ImzMLWriter import ImzMLWriter

from preimage.data import ImsDataset, load_imzml, synthetic_tma, write_imzml
from preimage.errors import DataError, ShapeError


@pytest.fixture(scope="module")
def tiny() -> ImsDataset:
    return synthetic_tma("tiny", seed=3, n_spots=64, n_cores=16, mz_hi=1100.0)


def test_round_trip_is_exact(tiny: ImsDataset, tmp_path: Path) -> None:
    imzml, table = write_imzml(tiny, tmp_path / "tiny")
    back = load_imzml(imzml)
    assert back.spectra.dtype == np.float32 and back.spectra.shape == tiny.spectra.shape
    for name in ("spectra", "mz", "tma", "core", "label", "x", "y", "roi"):
        np.testing.assert_array_equal(getattr(back, name), getattr(tiny, name), err_msg=name)
    assert table.is_file() and imzml.with_suffix(".ibd").is_file()


def test_pyimzml_parser_reads_what_we_write(tiny: ImsDataset, tmp_path: Path) -> None:
    imzml, _ = write_imzml(tiny, tmp_path / "tiny.imzML")
    with ImzMLParser(str(imzml)) as parser:
        assert len(parser.coordinates) == tiny.n_spots
        for i in (0, 17, tiny.n_spots - 1):
            mzs, intensities = parser.getspectrum(i)
            np.testing.assert_array_equal(mzs, tiny.mz)
            np.testing.assert_array_equal(intensities, tiny.spectra[i])
            assert parser.coordinates[i][:2] == (tiny.x[i], tiny.y[i])


def test_metadata_by_coordinates_selects_listed_spots(tiny: ImsDataset, tmp_path: Path) -> None:
    imzml, _ = write_imzml(tiny, tmp_path / "a")
    chosen = [3, 10, 40]
    table = tmp_path / "roi.csv"
    with table.open("w", newline="") as handle:
        out = csv.writer(handle)
        out.writerow(["x", "y", "tma", "core", "label"])
        for i in reversed(chosen):  # order of the table does not matter
            out.writerow([tiny.x[i], tiny.y[i], 7, 100 + i, 1])
    back = load_imzml(imzml, table)
    np.testing.assert_array_equal(back.spectra, tiny.spectra[chosen])
    assert back.core.tolist() == [103, 110, 140] and back.tma.tolist() == [7, 7, 7]
    assert back.roi.all()


def test_processed_file_needs_mz_grid(tmp_path: Path) -> None:
    path = tmp_path / "proc.imzML"
    with ImzMLWriter(str(path), mode="processed") as writer:
        writer.addSpectrum(np.array([100.0, 101.0, 102.0]), np.array([1.0, 2.0, 3.0]), (1, 1))
        writer.addSpectrum(np.array([100.5, 101.5]), np.array([4.0, 6.0]), (2, 1))
    with pytest.raises(DataError, match="mz_grid"):
        load_imzml(path)
    back = load_imzml(path, mz_grid=[100.5, 101.0, 101.5])
    np.testing.assert_allclose(back.spectra, [[1.5, 2.0, 2.5], [4.0, 5.0, 6.0]])
    assert back.label.tolist() == [-1, -1] and back.x.tolist() == [1, 2]


def test_errors(tiny: ImsDataset, tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no imzML"):
        load_imzml(tmp_path / "missing.imzML")
    bad = tiny.subset(np.arange(2))
    bad.x[0] = 0
    with pytest.raises(DataError, match="start at 1"):
        write_imzml(bad, tmp_path / "bad")
    with pytest.raises(ShapeError):
        ImsDataset(
            np.ones((2, 3)),
            np.ones(2),
            tma=[0, 0],
            core=[0, 0],
            label=[0, 0],
            x=[1, 2],
            y=[1, 1],
            roi=[1, 1],
        )


def test_concat_of_files_per_tma(tiny: ImsDataset, tmp_path: Path) -> None:
    parts = []
    for t in np.unique(tiny.tma)[:2]:
        imzml, _ = write_imzml(tiny.subset(tiny.tma == t), tmp_path / f"tma{t}")
        parts.append(load_imzml(imzml))
    both = ImsDataset.concat(parts)
    mask = np.isin(tiny.tma, np.unique(tiny.tma)[:2])
    np.testing.assert_array_equal(np.sort(both.core), np.sort(tiny.core[mask]))
