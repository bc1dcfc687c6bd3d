r"""Imaging mass spectrometry (IMS) data: the :class:`ImsDataset` container and imzML I/O.

An IMS data set is a stack of spectra on a common m/z grid, one per measured tissue spot, with
the hierarchy of the thesis' tumour-typing data (section 7.2, figure 7.1): spots lie in tissue
cores (one core per patient), cores in tissue micro-arrays (TMAs, one measurement each); a core
has one label (tumour type), and a spot may lie inside a pathologist's region of interest (ROI).

:func:`load_imzml` reads the open imzML format (continuous or processed) through the
``pyimzml`` package (optional extra ``ims``); the hierarchy comes from a user-given CSV table
(columns ``tma``, ``core``, ``label`` and optionally ``roi``, keyed by ``spot`` index or by
the ``x``, ``y`` pixel coordinates). :func:`write_imzml` writes a data set as continuous imzML
with such a table beside it, so that both :func:`load_imzml` and pyimzml's own parser read it.

References:
    Behrmann (thesis), *Invertibility and Domain Knowledge*, sections 7.2 and 7.4.1.
    Schramm et al. (2012), *imzML: a common data format for the flexible exchange and processing
    of mass spectrometry imaging data*, J. Proteomics 75(16).
"""

from __future__ import annotations

import csv
import os
from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from preimage.errors import DataError, ShapeError

__all__ = ["METADATA_COLUMNS", "ImsDataset", "load_imzml", "write_imzml"]

METADATA_COLUMNS: tuple[str, ...] = ("spot", "x", "y", "tma", "core", "label", "roi")
"""Columns of the metadata table :func:`write_imzml` writes beside the imzML file."""

_PER_SPOT = ("tma", "core", "label", "x", "y", "roi")


@dataclass
class ImsDataset:
    r"""Spectra of tissue spots on a common m/z grid with their TMA / core / label hierarchy.

    Attributes:
        spectra: intensities, float32 of shape ``(n_spots, n_bins)``.
        mz: bin centres (m/z), float64 of shape ``(n_bins,)``, ascending.
        tma: TMA (measurement) of each spot, int64 ``(n_spots,)``.
        core: tissue core (patient) of each spot, int64; unique over the whole data set.
        label: class of each spot (that of its core), int64; ``-1`` when unknown.
        x: pixel column of each spot, int64.
        y: pixel row of each spot, int64.
        roi: whether the spot lies in the region of interest, bool.
        planted_mz: m/z of the class-discriminative peptides of a synthetic data set (monoisotopic
            peaks), float64; empty for real data.

    Raises:
        ShapeError: arrays of inconsistent shapes.

    Example:
        >>> ds = ImsDataset(np.ones((3, 4), np.float32), np.arange(4.0) + 1000,
        ...                 tma=[0, 0, 1], core=[0, 0, 1], label=[1, 1, 0], x=[1, 2, 1],
        ...                 y=[1, 1, 1], roi=[True, True, False])
        >>> ds.n_spots, ds.n_bins, ds.subset(ds.tma == 0).core.tolist()
        (3, 4, [0, 0])
    """

    spectra: np.ndarray
    mz: np.ndarray
    tma: np.ndarray
    core: np.ndarray
    label: np.ndarray
    x: np.ndarray
    y: np.ndarray
    roi: np.ndarray
    planted_mz: np.ndarray = field(default_factory=lambda: np.zeros(0))

    def __post_init__(self) -> None:
        self.spectra = np.asarray(self.spectra, dtype=np.float32)
        self.mz = np.asarray(self.mz, dtype=np.float64)
        if self.spectra.ndim != 2:
            raise ShapeError(f"spectra must be (n_spots, n_bins), got shape {self.spectra.shape}")
        if self.mz.shape != (self.spectra.shape[1],):
            raise ShapeError(
                f"mz must have {self.spectra.shape[1]} values (one per bin), got {self.mz.shape}"
            )
        for name in _PER_SPOT:
            dtype = bool if name == "roi" else np.int64
            value = np.asarray(getattr(self, name), dtype=dtype).reshape(-1)
            if value.shape != (self.spectra.shape[0],):
                raise ShapeError(
                    f"{name} must have one value per spot ({self.spectra.shape[0]}), "
                    f"got {value.shape[0]}"
                )
            setattr(self, name, value)
        self.planted_mz = np.asarray(self.planted_mz, dtype=np.float64).reshape(-1)

    @property
    def n_spots(self) -> int:
        """Number of spectra."""
        return int(self.spectra.shape[0])

    @property
    def n_bins(self) -> int:
        """Number of m/z bins."""
        return int(self.spectra.shape[1])

    def subset(self, index: ArrayLike) -> ImsDataset:
        """The spots selected by ``index`` (integer indices or a boolean mask)."""
        idx = np.asarray(index)
        parts = {name: getattr(self, name)[idx] for name in _PER_SPOT}
        return ImsDataset(self.spectra[idx], self.mz, planted_mz=self.planted_mz, **parts)

    @classmethod
    def concat(cls, datasets: Sequence[ImsDataset]) -> ImsDataset:
        """The spots of several data sets on the same m/z grid (e.g. one imzML file per TMA).

        Raises:
            DataError: no data set, or m/z grids that differ.
        """
        if not datasets:
            raise DataError("concat needs at least one data set")
        mz = datasets[0].mz
        if any(d.mz.shape != mz.shape or not np.array_equal(d.mz, mz) for d in datasets):
            raise DataError("data sets have different m/z grids; resample them with mz_grid=")
        parts = {name: np.concatenate([getattr(d, name) for d in datasets]) for name in _PER_SPOT}
        planted = np.unique(np.concatenate([d.planted_mz for d in datasets]))
        spectra = np.concatenate([d.spectra for d in datasets])
        return cls(spectra, mz, planted_mz=planted, **parts)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ImsDataset):
            return NotImplemented
        return all(
            np.array_equal(getattr(self, f.name), getattr(other, f.name)) for f in fields(self)
        )


def _require_pyimzml() -> Any:
    try:
        import pyimzml.ImzMLParser as parser  # noqa: F401
        import pyimzml.ImzMLWriter as writer  # noqa: F401
    except ImportError:  # pragma: no cover - depends on the environment
        raise DataError(
            "reading and writing imzML needs pyimzml; pip install 'preimage[ims]'"
        ) from None
    import pyimzml

    return pyimzml


def _imzml_paths(path: str | os.PathLike[str]) -> tuple[Path, Path]:
    p = Path(path)
    stem = p.with_suffix("") if p.suffix.lower() == ".imzml" else p
    return stem.with_suffix(".imzML"), stem.with_suffix(".csv")


def write_imzml(dataset: ImsDataset, path: str | os.PathLike[str]) -> tuple[Path, Path]:
    """Write ``dataset`` as continuous imzML (``.imzML`` + ``.ibd``) with a metadata CSV beside it.

    Intensities are stored as float32 and m/z as float64, so that :func:`load_imzml` gives back
    an equal data set; the CSV (``<stem>.csv``, columns :data:`METADATA_COLUMNS`) carries the
    hierarchy, which imzML has no field for. Pixel coordinates must be positive (imzML counts
    from 1).

    Args:
        dataset: the spots to write.
        path: file name; ``.imzML`` is added (or replaces a given ``.imzML`` suffix).

    Returns:
        ``(imzml_path, csv_path)``.

    Raises:
        DataError: pyimzml missing, or coordinates below 1.

    Example:
        >>> import tempfile
        >>> ds = ImsDataset(np.ones((2, 3), np.float32), [900.0, 901.0, 902.0], tma=[0, 0],
        ...                 core=[0, 1], label=[0, 1], x=[1, 2], y=[1, 1], roi=[True, True])
        >>> imzml, table = write_imzml(ds, Path(tempfile.mkdtemp()) / "two")
        >>> load_imzml(imzml) == ds
        True
    """
    _require_pyimzml()
    from pyimzml.ImzMLWriter import ImzMLWriter

    if dataset.n_spots and (dataset.x.min() < 1 or dataset.y.min() < 1):
        raise DataError("imzML pixel coordinates start at 1; shift x and y before writing")
    imzml_path, csv_path = _imzml_paths(path)
    imzml_path.parent.mkdir(parents=True, exist_ok=True)
    with ImzMLWriter(
        str(imzml_path),
        mz_dtype=np.float64,
        intensity_dtype=np.float32,
        mode="continuous",
        spec_type="profile",
    ) as writer:
        for i in range(dataset.n_spots):
            writer.addSpectrum(
                dataset.mz, dataset.spectra[i], (int(dataset.x[i]), int(dataset.y[i]))
            )
    with csv_path.open("w", newline="") as handle:
        out = csv.writer(handle)
        out.writerow(METADATA_COLUMNS)
        for i in range(dataset.n_spots):
            out.writerow(
                [
                    i,
                    int(dataset.x[i]),
                    int(dataset.y[i]),
                    int(dataset.tma[i]),
                    int(dataset.core[i]),
                    int(dataset.label[i]),
                    int(bool(dataset.roi[i])),
                ]
            )
    return imzml_path, csv_path


def _read_metadata(path: Path) -> list[dict[str, str]]:
    try:
        with path.open(newline="") as handle:
            rows = list(csv.DictReader(handle))
    except OSError as err:
        raise DataError(f"cannot read metadata table {path}: {err.strerror}") from None
    if not rows:
        raise DataError(f"metadata table {path} has no rows")
    missing = [c for c in ("tma", "core", "label") if c not in rows[0]]
    if missing:
        raise DataError(f"metadata table {path} lacks the columns {', '.join(missing)}")
    if "spot" not in rows[0] and not {"x", "y"} <= set(rows[0]):
        raise DataError(f"metadata table {path} needs a 'spot' column or 'x' and 'y' columns")
    return rows


def _match_rows(
    rows: list[dict[str, str]], coords: np.ndarray, path: Path
) -> tuple[np.ndarray, list[dict[str, str]]]:
    """Indices of the file's spots that the table describes, and their rows, in file order."""
    try:
        if "spot" in rows[0]:
            by_key = {int(r["spot"]): r for r in rows}
            keys: list[Any] = list(range(coords.shape[0]))
        else:
            by_key = {(int(r["x"]), int(r["y"])): r for r in rows}
            keys = [(int(cx), int(cy)) for cx, cy in coords[:, :2]]
    except ValueError:
        raise DataError(f"metadata table {path} has a non-integer spot, x or y") from None
    index = np.array([i for i, k in enumerate(keys) if k in by_key], dtype=np.int64)
    if index.size == 0:
        raise DataError(f"no spot of the imzML file appears in the metadata table {path}")
    return index, [by_key[keys[i]] for i in index]


def load_imzml(
    path: str | os.PathLike[str],
    metadata: str | os.PathLike[str] | None = None,
    *,
    mz_grid: ArrayLike | None = None,
) -> ImsDataset:
    r"""Read an imzML file (continuous or processed) into an :class:`ImsDataset`.

    The spectra must share one m/z array (continuous files always do) unless ``mz_grid`` is
    given: then every spectrum is resampled onto it by linear interpolation (zero outside its
    own m/z range). No resampling happens otherwise.

    Spot metadata come from the CSV table ``metadata`` (default: ``<stem>.csv`` beside the file
    when it exists). Rows are matched by the ``spot`` column (0-based index in the file) or else
    by the ``x``, ``y`` pixel coordinates; spots the table does not list are left out (so a table
    of annotated ROI spots selects them). Without any table every spot is kept, with ``tma``
    0, ``core`` and ``label`` ``-1`` and ``roi`` true.

    Args:
        path: the ``.imzML`` file (its ``.ibd`` beside it).
        metadata: CSV table with columns ``tma``, ``core``, ``label`` (and optional ``roi``),
            keyed by ``spot`` or by ``x`` and ``y``.
        mz_grid: m/z values to resample onto, or ``None`` to keep the file's own grid.

    Returns:
        The data set, spectra as float32.

    Raises:
        DataError: pyimzml missing, an unreadable file or table, spectra on different m/z
            arrays without ``mz_grid``, or no spot matched by the table.

    References:
        Schramm et al. (2012), imzML; Behrmann (thesis), section 7.4.1 (TMA, core and ROI).

    Example:
        >>> import tempfile
        >>> ds = ImsDataset(np.eye(3, dtype=np.float32), [900.0, 901.0, 902.0], tma=[0, 0, 1],
        ...                 core=[0, 0, 1], label=[0, 0, 1], x=[1, 2, 3], y=[1, 1, 1],
        ...                 roi=[True, False, True])
        >>> imzml, _ = write_imzml(ds, Path(tempfile.mkdtemp()) / "eye")
        >>> back = load_imzml(imzml, mz_grid=[900.5, 901.0])
        >>> back.spectra.tolist(), back.roi.tolist()
        ([[0.5, 0.0], [0.5, 1.0], [0.0, 0.0]], [True, False, True])
    """
    _require_pyimzml()
    from pyimzml.ImzMLParser import ImzMLParser

    imzml_path, default_csv = _imzml_paths(path)
    if not imzml_path.is_file():
        raise DataError(f"no imzML file at {imzml_path}")
    try:
        parser = ImzMLParser(str(imzml_path), parse_lib="ElementTree")
    except Exception as err:  # pyimzml raises bare exceptions of many kinds on bad files
        raise DataError(f"cannot parse {imzml_path}: {err}") from None
    with parser:
        coords = np.asarray(parser.coordinates, dtype=np.int64).reshape(-1, 3)
        table = Path(metadata) if metadata is not None else default_csv
        if metadata is not None or table.is_file():
            index, rows = _match_rows(_read_metadata(table), coords, table)
        else:
            index, rows = np.arange(coords.shape[0]), []
        grid = None if mz_grid is None else np.asarray(mz_grid, dtype=np.float64).reshape(-1)
        spectra, mz = _read_spectra(parser, index, grid, imzml_path)
    if rows:
        meta = {name: np.array([int(r[name]) for r in rows]) for name in ("tma", "core", "label")}
        meta["roi"] = np.array([bool(int(r.get("roi", "1") or 1)) for r in rows])
    else:
        n = index.size
        meta = {
            "tma": np.zeros(n),
            "core": np.full(n, -1),
            "label": np.full(n, -1),
            "roi": np.ones(n, bool),
        }
    return ImsDataset(spectra, mz, x=coords[index, 0], y=coords[index, 1], **meta)


def _read_spectra(
    parser: Any, index: np.ndarray, grid: np.ndarray | None, path: Path
) -> tuple[np.ndarray, np.ndarray]:
    first_mz: np.ndarray | None = None
    out: np.ndarray | None = None
    for row, i in enumerate(index):
        mzs, intensities = parser.getspectrum(int(i))
        mzs = np.asarray(mzs, dtype=np.float64)
        intensities = np.asarray(intensities, dtype=np.float64)
        if grid is not None:
            values = np.interp(grid, mzs, intensities, left=0.0, right=0.0)
        else:
            if first_mz is None:
                first_mz = mzs
            elif mzs.shape != first_mz.shape or not np.array_equal(mzs, first_mz):
                raise DataError(
                    f"spectra of {path} lie on different m/z arrays; pass mz_grid= to resample"
                )
            values = intensities
        if out is None:
            out = np.empty((index.size, values.size), dtype=np.float32)
        out[row] = values
    mz = grid if grid is not None else first_mz
    if out is None or mz is None:
        raise DataError(f"{path} holds no spectra")
    return out, mz
