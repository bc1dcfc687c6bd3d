r"""Figures of training runs, image grids, metamers and 2-D decision planes.

Every function returns a :class:`matplotlib.figure.Figure` bound to the non-interactive Agg
canvas directly, without :mod:`matplotlib.pyplot`: no global backend switch, no figure registry,
safe on headless machines and in threads. :func:`save_figure` writes a PNG atomically.

Image inputs are tensors or arrays of shape ``(N, C, H, W)`` (or ``(rows, cols, C, H, W)``) with
``C = 1`` (grayscale, drawn with a colormap) or ``C = 3`` (RGB); values are clamped to
``[vmin, vmax]`` for display only.

References:
    Jacobsen, Behrmann, Zemel, Bethge (2019), *Excessive Invariance Causes Adversarial
    Vulnerability*, section 2.1 with figures 1 and 5 (metamer grids: logits from one input,
    nuisances from another) and figure 4 (decision boundaries in 2-D planes).

Example:
    >>> import torch
    >>> fig = image_grid(torch.rand(6, 1, 8, 8), nrow=3, title="samples")
    >>> png = figure_to_png(fig, dpi=40)
    >>> png[:8] == b"\x89PNG\r\n\x1a\n"
    True
"""

from __future__ import annotations

import io
import math
import os
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from matplotlib import colormaps
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from preimage.errors import ConfigError, ShapeError
from preimage.runs import atomic_write_bytes

__all__ = [
    "clamped_share",
    "decision_plane",
    "figure_to_png",
    "grouped_bars",
    "image_grid",
    "line_plot",
    "metamer_grid",
    "reconstruction_figure",
    "save_figure",
    "training_curves",
]

ArrayLike = torch.Tensor | np.ndarray | Sequence[Any]

_PANEL_WIDTH = 4.2
_PANEL_HEIGHT = 3.2
_FONT_WIDTH = 0.6 / 72
"""Approximate width of one character per point of font size, in inches (DejaVu Sans)."""


def _new_figure(width: float, height: float) -> Figure:
    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def figure_to_png(fig: Figure, *, dpi: float = 100) -> bytes:
    r"""Render ``fig`` to PNG bytes of ``width * dpi`` by ``height * dpi`` pixels (truncated).

    Args:
        fig: the figure.
        dpi: dots per inch.

    Example:
        >>> fig = line_plot([0, 1], {"a": [0.0, 1.0]}, xlabel="x", ylabel="y", title="t")
        >>> figure_to_png(fig, dpi=20)[1:4]
        b'PNG'
    """
    if not dpi > 0:
        raise ConfigError(f"dpi must be positive, got {dpi}")
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi, facecolor="white")
    return buffer.getvalue()


def save_figure(
    fig: Figure, path: str | os.PathLike[str], dpi: float = 100, *, close: bool = True
) -> Path:
    r"""Write ``fig`` as a PNG file atomically and, by default, release it.

    The image has ``width * dpi`` by ``height * dpi`` pixels, truncated to whole pixels (no
    tight cropping, so the size is predictable). With ``close=True`` the figure is cleared
    afterwards (and removed from pyplot's registry if it came from there) to free its memory;
    do not reuse it then.

    Args:
        fig: the figure.
        path: destination; ``.png`` is the only format written. Missing parent folders are
            created.
        dpi: dots per inch.
        close: release the figure after writing.

    Returns:
        ``path`` as a :class:`~pathlib.Path`.

    Example:
        >>> import tempfile
        >>> from pathlib import Path
        >>> fig = line_plot([0, 1], {"a": [1.0, 2.0]}, xlabel="x", ylabel="y", title="t")
        >>> tmp = tempfile.TemporaryDirectory()
        >>> p = save_figure(fig, Path(tmp.name) / "a.png", dpi=20)
        >>> p.stat().st_size > 0
        True
        >>> tmp.cleanup()
    """
    path = Path(path)
    if path.suffix.lower() != ".png":
        raise ConfigError(f"figures are written as PNG; {path} does not end in .png")
    png = figure_to_png(fig, dpi=dpi)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, png)
    if close:
        pyplot = sys.modules.get("matplotlib.pyplot")
        if pyplot is not None:
            pyplot.close(fig)
        fig.clear()
    return path


def clamped_share(x: ArrayLike, vmin: float = 0.0, vmax: float = 1.0) -> float:
    r"""Share of the values of ``x`` outside ``[vmin, vmax]``: what a display clamps.

    Image figures clamp values to their display range; a caption should say how much that
    hides (a metamer :math:`F^{-1}(z_s(a), z_n(b))` can leave the data range).

    Example:
        >>> clamped_share(torch.tensor([-0.5, 0.2, 0.9, 1.5]))
        0.5
    """
    _check_range(vmin, vmax)
    values = np.asarray(x.detach().cpu() if isinstance(x, torch.Tensor) else x, dtype=np.float64)
    if values.size == 0:
        raise ShapeError("clamped_share needs at least one value")
    return float(((values < vmin) | (values > vmax)).mean())


def _scalar(value: Any) -> float | None:
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, torch.Tensor):
        if value.numel() != 1:
            return None
        value = value.item()
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, (int, float)):
        return float(value) if math.isfinite(value) else None
    return None


def _panel_of(key: str) -> str | None:
    low = key.lower()
    if low in ("lr", "learning_rate") or low.endswith(("_lr", "learning_rate")):
        return "lr"
    if "loss" in low:
        return "loss"
    if "acc" in low or "err" in low:
        return "accuracy"
    return None


def training_curves(
    history: Sequence[Mapping[str, Any]], *, x_key: str = "epoch", title: str | None = None
) -> Figure:
    r"""Loss and accuracy (train and test) per epoch, plus the learning rate if it changes.

    Keys are grouped by name: those containing ``loss`` go to the loss panel, those containing
    ``acc`` or ``err`` to the accuracy panel, ``lr`` / ``learning_rate`` (or ``*_lr``) to a
    log-scale learning-rate panel; other keys are not drawn. Records may lack keys and values may
    be ``None`` or NaN: each curve shows the epochs where it has a finite value. The x value is
    ``record[x_key]`` when present, otherwise the 1-based position in ``history``; whole-number
    x values (epochs) get integer ticks. A curve that is constant over two or more points (a
    fixed learning rate) is not drawn; its value is named under the title instead, and a panel
    left without curves is dropped.

    Args:
        history: one mapping per epoch, e.g. ``{"epoch": 1, "train_loss": .3, "test_acc": .9}``.
        x_key: key of the x coordinate.
        title: optional figure title.

    Returns:
        A figure with one panel per group present (one empty panel if nothing is plottable).

    Example:
        >>> hist = [{"train_loss": 1.0, "test_loss": 1.2, "train_acc": 0.5, "lr": 0.1},
        ...         {"train_loss": 0.5, "train_acc": 0.8, "lr": 0.01}]
        >>> [ax.get_ylabel() for ax in training_curves(hist).axes]
        ['loss', 'accuracy', 'learning rate']
        >>> fixed = [{"epoch": 1, "loss": 1.0, "lr": 0.1}, {"epoch": 2, "loss": 0.5, "lr": 0.1}]
        >>> fig = training_curves(fixed)
        >>> [ax.get_ylabel() for ax in fig.axes], fig.get_suptitle()
        (['loss'], 'constant: lr = 0.1')
    """
    series: dict[str, dict[str, tuple[list[float], list[float]]]] = {}
    for index, record in enumerate(history):
        if not isinstance(record, Mapping):
            raise ConfigError(f"history entries must be mappings, entry {index} is not")
        x = _scalar(record.get(x_key))
        x = float(index + 1) if x is None else x
        for key, raw in record.items():
            panel = None if key == x_key else _panel_of(str(key))
            value = _scalar(raw)
            if panel is None or value is None:
                continue
            xs, ys = series.setdefault(panel, {}).setdefault(str(key), ([], []))
            xs.append(x)
            ys.append(value)

    constants: list[str] = []
    for panel in list(series):
        for name, (_, ys) in list(series[panel].items()):
            if len(ys) >= 2 and max(ys) - min(ys) <= 1e-12 * max(1.0, abs(ys[0])):
                constants.append(f"{name} = {ys[0]:.4g}")
                del series[panel][name]
        if not series[panel]:
            del series[panel]
    integer_x = all(
        float(x).is_integer() for curves in series.values() for xs, _ in curves.values() for x in xs
    )
    panels = [p for p in ("loss", "accuracy", "lr") if p in series]
    fig = _new_figure(_PANEL_WIDTH * max(1, len(panels)), _PANEL_HEIGHT)
    axes = fig.subplots(1, max(1, len(panels)), squeeze=False)[0]
    if not panels:
        axes[0].text(0.5, 0.5, "no loss, accuracy or lr values", ha="center", va="center")
        axes[0].set_axis_off()
    ylabels = {"loss": "loss", "accuracy": "accuracy", "lr": "learning rate"}
    if "accuracy" in series:
        errors = ["err" in name.lower() for name in series["accuracy"]]
        ylabels["accuracy"] = (
            "error" if all(errors) else "accuracy / error" if any(errors) else "accuracy"
        )
    for ax, panel in zip(axes, panels, strict=False):
        for name, (xs, ys) in series[panel].items():
            marker = "o" if len(xs) <= 30 else None
            ax.plot(xs, ys, marker=marker, markersize=3, label=name)
        ax.set_xlabel(x_key)
        ax.set_ylabel(ylabels[panel])
        if integer_x:
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        if panel == "lr":
            ax.set_yscale("log", nonpositive="mask")
        epochs = sorted({x for xs, _ in series[panel].values() for x in xs})
        if epochs and all(x.is_integer() for x in epochs):
            if len(epochs) <= 12:
                ax.set_xticks(epochs)  # a locator puts fractional ticks around a single epoch
            else:
                ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        ax.legend(fontsize="small")
    heading = [title] if title else []
    if constants:
        heading.append("constant: " + ", ".join(constants))
    if heading:
        fig.suptitle("\n".join(heading), fontsize=10)
    return fig


def _images(x: ArrayLike, name: str, ndim: int) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        array = x.detach().to("cpu", torch.float32).numpy()
    else:
        array = np.asarray(x, dtype=np.float32)
    if array.ndim != ndim:
        raise ShapeError(f"{name} must have {ndim} dimensions, got shape {tuple(array.shape)}")
    if array.shape[-3] not in (1, 3):
        raise ShapeError(
            f"{name} must have 1 (grayscale) or 3 (RGB) channels, got shape {tuple(array.shape)}"
        )
    if any(s == 0 for s in array.shape):
        raise ShapeError(f"{name} is empty (shape {tuple(array.shape)})")
    return array


def _check_range(vmin: float, vmax: float) -> None:
    if not vmin < vmax:
        raise ConfigError(f"vmin must be smaller than vmax, got vmin={vmin}, vmax={vmax}")


@dataclass(frozen=True)
class _Mosaic:
    """Cells pasted into one array with gaps; ``rows``/``cols`` are each cell's first pixel."""

    array: np.ndarray
    rows: np.ndarray
    cols: np.ndarray
    height: int
    width: int


def _mosaic(
    cells: np.ndarray,
    present: np.ndarray,
    row_gaps: Sequence[int],
    col_gaps: Sequence[int],
    vmin: float,
    vmax: float,
) -> _Mosaic:
    """Paste ``cells`` ``(R, K, C, H, W)`` into ``(H', W')`` (gray) or ``(H', W', 3)`` (RGB).

    Gray values keep their scale, clamped, with NaN gaps (drawn as the colormap's "bad"
    colour); RGB values are mapped to ``[0, 1]`` with white gaps.
    """
    n_rows, n_cols, channels, height, width = cells.shape
    rows = np.concatenate([[0], np.cumsum([height + g for g in row_gaps])]).astype(int)
    cols = np.concatenate([[0], np.cumsum([width + g for g in col_gaps])]).astype(int)
    total = (int(rows[-1]) + height, int(cols[-1]) + width)
    clipped = np.clip(cells, vmin, vmax)
    if channels == 1:
        array = np.full(total, np.nan, dtype=np.float32)
        data = clipped[:, :, 0]
    else:
        array = np.ones((*total, 3), dtype=np.float32)
        data = np.moveaxis((clipped - vmin) / (vmax - vmin), 2, -1)
    for i in range(n_rows):
        for j in range(n_cols):
            if present[i, j]:
                array[rows[i] : rows[i] + height, cols[j] : cols[j] + width] = data[i, j]
    return _Mosaic(array, rows, cols, height, width)


def _gap(height: int, width: int) -> int:
    return max(1, round(0.08 * max(height, width)))


def _cell_inches(n_cols: int, target_width: float = 10.0) -> float:
    return min(1.1, max(0.3, target_width / max(n_cols, 1)))


def _draw_mosaic(
    ax: Axes,
    mosaic: _Mosaic,
    *,
    cmap: str,
    vmin: float,
    vmax: float,
    cell_inches: float,
    row_labels: Sequence[str] | None = None,
    col_labels: Sequence[str] | None = None,
) -> Any:
    if mosaic.array.ndim == 2:
        colormap = colormaps[cmap].with_extremes(bad="white")
        image = ax.imshow(
            mosaic.array, cmap=colormap, vmin=vmin, vmax=vmax, interpolation="antialiased"
        )
    else:
        image = ax.imshow(mosaic.array, interpolation="antialiased")
    for spine in ax.spines.values():
        spine.set_visible(False)
    ax.tick_params(length=0)
    ax.xaxis.set_ticks_position("top")
    ax.xaxis.set_label_position("top")
    if col_labels is not None:
        centers = mosaic.cols + (mosaic.width - 1) / 2
        longest = max((len(s) for s in col_labels), default=0)
        fontsize = 8
        if longest * fontsize * _FONT_WIDTH > 0.95 * cell_inches:
            ax.set_xticks(
                centers, labels=col_labels, rotation=35, ha="left", rotation_mode="anchor"
            )
        else:
            ax.set_xticks(centers, labels=col_labels)
        ax.tick_params(axis="x", labelsize=fontsize)
    else:
        ax.set_xticks([])
    if row_labels is not None:
        ax.set_yticks(mosaic.rows + (mosaic.height - 1) / 2, labels=row_labels)
        ax.tick_params(axis="y", labelsize=8)
    else:
        ax.set_yticks([])
    return image


def _label_cells(
    ax: Axes, mosaic: _Mosaic, labels: np.ndarray, cell_inches: float, offset: tuple[int, int]
) -> None:
    fontsize = max(5.0, min(8.0, 0.2 * cell_inches * 72))
    r0, c0 = offset
    for i in range(labels.shape[0]):
        for j in range(labels.shape[1]):
            text = labels[i, j]
            if text is None or text == "":
                continue
            ax.text(
                mosaic.cols[j + c0] + mosaic.width - 1,
                mosaic.rows[i + r0] + mosaic.height - 1,
                str(text),
                ha="right",
                va="bottom",
                fontsize=fontsize,
                color="white",
                bbox={"boxstyle": "square,pad=0.15", "fc": "black", "ec": "none", "alpha": 0.6},
            )


def _check_labels(labels: Sequence[Any] | None, n: int, what: str) -> list[str] | None:
    if labels is None:
        return None
    labels = [str(s) for s in labels]
    if len(labels) != n:
        raise ConfigError(f"{what} needs {n} labels, got {len(labels)}")
    return labels


def _grid_figsize(
    n_rows: int, n_cols: int, height: int, width: int, extra_width: float, extra_height: float
) -> tuple[float, float]:
    cell = _cell_inches(n_cols)
    aspect = height / width
    return (
        round(n_cols * cell * 1.08 + extra_width, 1),
        round(n_rows * cell * aspect * 1.08 + extra_height, 1),
    )


def _mosaic_figure(
    mosaic: _Mosaic,
    extra_inches: tuple[float, float],
    cmap: str,
    vmin: float,
    vmax: float,
    row_labels: Sequence[str] | None,
    col_labels: Sequence[str] | None,
) -> tuple[Figure, Axes, float]:
    """A figure holding only ``mosaic``, sized to its cells plus ``extra_inches`` (width,
    height) for labels and titles; returns it, its axes and the cell size in inches."""
    n_rows, n_cols = len(mosaic.rows), len(mosaic.cols)
    cell = _cell_inches(n_cols)
    size = _grid_figsize(n_rows, n_cols, mosaic.height, mosaic.width, *extra_inches)
    fig = _new_figure(*size)
    ax = fig.add_subplot()
    _draw_mosaic(
        ax,
        mosaic,
        cmap=cmap,
        vmin=vmin,
        vmax=vmax,
        row_labels=row_labels,
        col_labels=col_labels,
        cell_inches=cell,
    )
    return fig, ax, cell


def image_grid(
    images: ArrayLike,
    *,
    nrow: int | None = None,
    row_labels: Sequence[str] | None = None,
    col_labels: Sequence[str] | None = None,
    cell_labels: Sequence[str] | None = None,
    title: str | None = None,
    vmin: float = 0.0,
    vmax: float = 1.0,
    cmap: str = "gray",
) -> Figure:
    r"""A grid of grayscale or RGB images with optional row, column and per-image labels.

    ``images`` is either ``(N, C, H, W)``, laid out row by row with ``nrow`` images per row
    (as in ``torchvision.utils.make_grid``; default ``min(N, 8)``), or ``(rows, cols, C, H, W)``,
    laid out as given. Values are clamped to ``[vmin, vmax]``; grayscale images use ``cmap``.

    Args:
        images: the images, ``C`` = 1 or 3.
        nrow: images per row for 4-D input; must be ``None`` for 5-D input.
        row_labels: one label per grid row, drawn on the left.
        col_labels: one label per grid column, drawn on top.
        cell_labels: one label per image (e.g. a predicted class), drawn in its corner.
        title: optional figure title.
        vmin: value drawn black (lowest colour).
        vmax: value drawn white (highest colour).
        cmap: matplotlib colormap name for grayscale images.

    Returns:
        The figure.

    Raises:
        ShapeError: for a shape other than the two above or a channel count other than 1 or 3.
        ConfigError: for label counts that do not match the grid, or ``vmin >= vmax``.

    Example:
        >>> import torch
        >>> fig = image_grid(torch.rand(2, 3, 3, 16, 16), row_labels=["a", "b"])
        >>> fig.axes[0].images[0].get_array().shape[-1]
        3
    """
    _check_range(vmin, vmax)
    if np.ndim(images) == 5:
        if nrow is not None:
            raise ConfigError("nrow applies to (N, C, H, W) input; 5-D input is laid out as given")
        cells = _images(images, "images", 5)
        present = np.ones(cells.shape[:2], dtype=bool)
    else:
        flat = _images(images, "images", 4)
        count = flat.shape[0]
        per_row = min(count, 8) if nrow is None else nrow
        if per_row < 1:
            raise ConfigError(f"nrow must be at least 1, got {nrow}")
        n_rows = math.ceil(count / per_row)
        cells = np.zeros((n_rows * per_row, *flat.shape[1:]), dtype=np.float32)
        cells[:count] = flat
        cells = cells.reshape(n_rows, per_row, *flat.shape[1:])
        present = (np.arange(n_rows * per_row) < count).reshape(n_rows, per_row)
    n_rows, n_cols, _, height, width = cells.shape
    rows = _check_labels(row_labels, n_rows, "row_labels")
    cols = _check_labels(col_labels, n_cols, "col_labels")
    per_cell = _check_labels(cell_labels, int(present.sum()), "cell_labels")

    gap = _gap(height, width)
    mosaic = _mosaic(cells, present, [gap] * (n_rows - 1), [gap] * (n_cols - 1), vmin, vmax)
    extra_w = 0.3 + (0.1 * max(len(s) for s in rows) if rows else 0.0)
    extra_h = 0.3 + (0.35 if cols else 0.0) + (0.4 if title else 0.0)
    fig, ax, cell = _mosaic_figure(mosaic, (extra_w, extra_h), cmap, vmin, vmax, rows, cols)
    if per_cell is not None:
        grid = np.full(present.shape, "", dtype=object)
        grid[present] = per_cell
        _label_cells(ax, mosaic, grid, cell, (0, 0))
    if title:
        fig.suptitle(title)
    return fig


def reconstruction_figure(
    x: ArrayLike, x_rec: ArrayLike, *, n: int = 8, vmin: float = 0.0, vmax: float = 1.0
) -> Figure:
    r"""Originals, reconstructions and their absolute difference, one row each.

    The difference row shows :math:`\max_c |x - \hat x|` per pixel on its own colour scale
    ``[0, e_{\max}]`` (with a colour bar), where :math:`e_{\max}` is the largest absolute error
    over the shown images, which the title reports; a perfect inverse gives
    :math:`e_{\max} \approx 10^{-6}`.

    Args:
        x: originals ``(N, C, H, W)``.
        x_rec: reconstructions, same shape.
        n: number of images shown (the first ``min(n, N)``).
        vmin: lowest displayed value of the images.
        vmax: highest displayed value of the images.

    Returns:
        The figure.

    Raises:
        ShapeError: if the shapes differ or are not ``(N, C, H, W)`` with C = 1 or 3.

    Example:
        >>> import torch
        >>> x = torch.rand(4, 1, 8, 8)
        >>> fig = reconstruction_figure(x, x + 1e-3)
        >>> fig.get_suptitle()
        'reconstruction, max |x − x_rec| = 0.001'
    """
    _check_range(vmin, vmax)
    if n < 1:
        raise ConfigError(f"n must be at least 1, got {n}")
    original = _images(x, "x", 4)
    rebuilt = _images(x_rec, "x_rec", 4)
    if original.shape != rebuilt.shape:
        raise ShapeError(
            f"x and x_rec must have the same shape, got {original.shape} and {rebuilt.shape}"
        )
    count = min(n, original.shape[0])
    original, rebuilt = original[:count], rebuilt[:count]
    error = np.abs(original.astype(np.float64) - rebuilt).max(axis=1, keepdims=True)
    max_error = float(np.nanmax(error)) if np.isfinite(error).any() else float("nan")
    scale = max_error if math.isfinite(max_error) and max_error > 0 else 1.0

    _, _, height, width = original.shape
    gap = _gap(height, width)
    present = np.ones((1, count), dtype=bool)
    cell = _cell_inches(count, 9.0)
    fig = _new_figure(*_grid_figsize(3, count, height, width, 1.6, 0.7))
    grid = fig.add_gridspec(3, 2, width_ratios=[count, 0.12])
    rows = (
        ("original", original, vmin, vmax, "gray"),
        ("reconstruction", rebuilt, vmin, vmax, "gray"),
        ("|difference|", error.astype(np.float32), 0.0, scale, "magma"),
    )
    image = None
    for r, (label, data, lo, hi, cmap) in enumerate(rows):
        ax = fig.add_subplot(grid[r, 0])
        mosaic = _mosaic(data[None], present, [], [gap] * (count - 1), lo, hi)
        image = _draw_mosaic(
            ax,
            mosaic,
            cmap=cmap,
            vmin=lo,
            vmax=hi,
            cell_inches=cell,
        )
        ax.set_ylabel(label)
    fig.colorbar(image, cax=fig.add_subplot(grid[2, 1]))
    fig.suptitle(f"reconstruction, max |x − x_rec| = {max_error:.3g}")
    return fig


def metamer_grid(
    x_semantic: ArrayLike,
    x_nuisance: ArrayLike,
    metamers: ArrayLike,
    *,
    semantic_labels: Sequence[str] | None = None,
    nuisance_labels: Sequence[str] | None = None,
    predicted: ArrayLike | None = None,
    title: str | None = None,
    vmin: float = 0.0,
    vmax: float = 1.0,
    cmap: str = "gray",
) -> Figure:
    r"""Metamers :math:`F^{-1}(z_s(a_i), z_n(b_j))` with their logit and nuisance sources.

    The top row shows the nuisance sources :math:`b_j`, the left column the logit (semantic)
    sources :math:`a_i`, and cell :math:`(i, j)` the metamer combining the logits of
    :math:`a_i` with the nuisances of :math:`b_j`: row = logit source, column = nuisance
    source. A metamer has exactly the logits of its row's source, so a classifier that is
    excessively invariant predicts the row's class although the cell looks like the column.

    Args:
        x_semantic: logit sources ``(R, C, H, W)``.
        x_nuisance: nuisance sources ``(K, C, H, W)``.
        metamers: ``(R, K, C, H, W)``.
        semantic_labels: ``R`` labels of the logit sources (e.g. their classes).
        nuisance_labels: ``K`` labels of the nuisance sources.
        predicted: ``(R, K)`` predicted labels of the metamers, drawn in each cell's corner.
        title: figure title; a default explains the layout.
        vmin: lowest displayed value.
        vmax: highest displayed value.
        cmap: colormap for grayscale images.

    Returns:
        The figure.

    Raises:
        ShapeError: if the three image sets do not agree in R, K, C, H and W.
        ConfigError: if a label count does not match.

    References:
        Jacobsen et al. (2019), Excessive Invariance Causes Adversarial Vulnerability,
        section 2.1 (analytic metameric sampling) and figures 1 and 5. The paper stacks logit
        sources, metamers and nuisance sources as three rows; the matrix layout here shows
        every (logit, nuisance) pair at once.

    Example:
        >>> import torch
        >>> fig = metamer_grid(torch.rand(2, 1, 8, 8), torch.rand(3, 1, 8, 8),
        ...                    torch.rand(2, 3, 1, 8, 8), predicted=[[0, 0, 0], [1, 1, 1]])
        >>> [t.get_text() for t in fig.axes[0].texts]
        ['0', '0', '0', '1', '1', '1']
    """
    _check_range(vmin, vmax)
    semantic = _images(x_semantic, "x_semantic", 4)
    nuisance = _images(x_nuisance, "x_nuisance", 4)
    mixed = _images(metamers, "metamers", 5)
    n_rows, n_cols = semantic.shape[0], nuisance.shape[0]
    image_shape = semantic.shape[1:]
    if nuisance.shape[1:] != image_shape or mixed.shape != (n_rows, n_cols, *image_shape):
        raise ShapeError(
            "metamers must have shape (R, K, C, H, W) matching x_semantic (R, C, H, W) and "
            f"x_nuisance (K, C, H, W); got {semantic.shape}, {nuisance.shape}, {mixed.shape}"
        )
    rows = _check_labels(semantic_labels, n_rows, "semantic_labels")
    cols = _check_labels(nuisance_labels, n_cols, "nuisance_labels")
    labels: np.ndarray | None = None
    if predicted is not None:
        if isinstance(predicted, torch.Tensor):
            predicted = predicted.detach().cpu().tolist()
        labels = np.empty((n_rows, n_cols), dtype=object)
        table = [list(r) for r in predicted]  # type: ignore[union-attr]
        if len(table) != n_rows or any(len(r) != n_cols for r in table):
            raise ShapeError(f"predicted must be {n_rows} rows of {n_cols} labels")
        for i, row in enumerate(table):
            for j, value in enumerate(row):
                labels[i, j] = str(value)

    channels, height, width = image_shape
    cells = np.zeros((n_rows + 1, n_cols + 1, channels, height, width), dtype=np.float32)
    cells[0, 1:] = nuisance
    cells[1:, 0] = semantic
    cells[1:, 1:] = mixed
    present = np.ones(cells.shape[:2], dtype=bool)
    present[0, 0] = False
    gap = _gap(height, width)
    # A wider gap separates the sources from the metamers they produce.
    separator = 4 * gap
    mosaic = _mosaic(
        cells,
        present,
        [separator] + [gap] * (n_rows - 1),
        [separator] + [gap] * (n_cols - 1),
        vmin,
        vmax,
    )
    longest_row = max((len(s) for s in rows), default=0) if rows else 0
    extra_w = 0.7 + 0.08 * longest_row
    extra_h = 0.9 + (0.25 if cols else 0.0)
    fig, ax, cell = _mosaic_figure(
        mosaic,
        (extra_w, extra_h),
        cmap,
        vmin,
        vmax,
        None if rows is None else ["", *rows],
        None if cols is None else ["", *cols],
    )
    ax.set_xlabel(r"nuisance source $b_j$ (gives $z_n$) →", fontsize=9)
    ax.set_ylabel(r"← logit source $a_i$ (gives $z_s$)", fontsize=9)
    if labels is not None:
        _label_cells(ax, mosaic, labels, cell, (1, 1))
    fig.suptitle(
        title if title is not None else r"metamers $F^{-1}(z_s(a_i), z_n(b_j))$", fontsize=11
    )
    return fig


def line_plot(
    xs: ArrayLike,
    ys_by_name: Mapping[str, ArrayLike],
    *,
    xlabel: str = "",
    ylabel: str = "",
    title: str | None = None,
    logy: bool = False,
) -> Figure:
    r"""One line per named series over common x values.

    Args:
        xs: x values, length ``n``.
        ys_by_name: series name -> ``n`` y values (NaN leaves a gap).
        xlabel: x-axis label.
        ylabel: y-axis label.
        title: axes title.
        logy: logarithmic y axis (non-positive values are left out).

    Returns:
        The figure.

    Raises:
        ShapeError: if a series does not have ``len(xs)`` values.
        ConfigError: if there is no series.

    Example:
        >>> fig = line_plot([1, 2, 4], {"exact": [1, 2, 3], "estimate": [1.1, 2.2, 2.9]},
        ...                 xlabel="n", ylabel="value", title="t", logy=True)
        >>> fig.axes[0].get_yscale(), len(fig.axes[0].get_lines())
        ('log', 2)
    """
    x = np.asarray(xs.detach().cpu() if isinstance(xs, torch.Tensor) else xs, dtype=np.float64)
    if x.ndim != 1:
        raise ShapeError(f"xs must be one-dimensional, got shape {x.shape}")
    if not ys_by_name:
        raise ConfigError("line_plot needs at least one series")
    fig = _new_figure(5.5, 3.6)
    ax = fig.add_subplot()
    for name, raw in ys_by_name.items():
        y = np.asarray(
            raw.detach().cpu() if isinstance(raw, torch.Tensor) else raw, dtype=np.float64
        )
        if y.shape != x.shape:
            raise ShapeError(f"series {name!r} has shape {y.shape}, xs has {x.shape}")
        ax.plot(x, y, marker="o" if x.size <= 30 else None, markersize=3, label=str(name))
    if logy:
        ax.set_yscale("log", nonpositive="mask")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    return fig


def grouped_bars(
    categories: Sequence[str],
    values_by_series: Mapping[str, Sequence[float]],
    *,
    ylabel: str = "",
    title: str | None = None,
) -> Figure:
    r"""Bars of several named series side by side for each category, each bar labelled.

    Used where a study compares a few numbers across models (e.g. shiftMNIST errors on
    :math:`\mathcal{D}_{Train}` and :math:`\mathcal{D}_{Adv}`). NaN values leave a gap.

    Args:
        categories: the groups along the x axis, length ``n``.
        values_by_series: series name -> ``n`` values.
        ylabel: y-axis label.
        title: axes title.

    Returns:
        The figure.

    Raises:
        ShapeError: if a series does not have ``len(categories)`` values.
        ConfigError: if there is no category or no series.

    Example:
        >>> fig = grouped_bars(["CE", "iCE"], {"test": [1.0, 2.0], "adv": [50.0, 30.0]})
        >>> len(fig.axes[0].patches)
        4
    """
    names = [str(c) for c in categories]
    if not names or not values_by_series:
        raise ConfigError("grouped_bars needs at least one category and one series")
    width = 0.8 / len(values_by_series)
    fig = _new_figure(max(4.5, 0.6 * len(names) * len(values_by_series) + 1.5), 3.6)
    ax = fig.add_subplot()
    centers = np.arange(len(names), dtype=np.float64)
    for k, (series, raw) in enumerate(values_by_series.items()):
        y = np.asarray(raw, dtype=np.float64)
        if y.shape != (len(names),):
            raise ShapeError(f"series {series!r} has shape {y.shape}, expected ({len(names)},)")
        offset = (k - (len(values_by_series) - 1) / 2) * width
        bars = ax.bar(centers + offset, np.nan_to_num(y, nan=0.0), width, label=str(series))
        labels = ["" if np.isnan(v) else f"{v:.3g}" for v in y]
        ax.bar_label(bars, labels=labels, fontsize="x-small", padding=1)
    ax.set_xticks(centers, names)
    # Head room so that the bar labels and the legend do not overlap the tallest bars.
    ax.margins(y=0.15)
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize="small")
    return fig


def decision_plane(
    grid_x: ArrayLike,
    grid_y: ArrayLike,
    values: ArrayLike,
    *,
    points: Mapping[str, Sequence[float]] | ArrayLike | None = None,
    title: str | None = None,
    level: float = 0.5,
    xlabel: str = "",
    ylabel: str = "",
    value_label: str = "p(class 1)",
) -> Figure:
    r"""Heat map of a classifier output over a 2-D plane with its decision contour.

    ``values[i, j]`` is the output at ``(grid_x[j], grid_y[i])`` (``grid_x``/``grid_y`` 1-D, or
    2-D meshgrids shaped like ``values``). Values inside :math:`[0, 1]` use that colour range;
    others a range centred on ``level``. The contour ``values = level`` is drawn when the
    values cross it.

    Args:
        grid_x: ``nx`` x coordinates (or ``(ny, nx)`` meshgrid).
        grid_y: ``ny`` y coordinates (or ``(ny, nx)`` meshgrid).
        values: ``(ny, nx)`` outputs, e.g. probabilities of class 1.
        points: named points ``{"x1": (u, v)}`` (marked and labelled) or an ``(P, 2)`` array.
        title: axes title.
        level: the decision threshold drawn as a contour.
        xlabel: x-axis label.
        ylabel: y-axis label.
        value_label: colour-bar label.

    Returns:
        The figure.

    Raises:
        ShapeError: if the grid and value shapes disagree.

    References:
        Jacobsen et al. (2019), Excessive Invariance Causes Adversarial Vulnerability,
        section 3 and figure 4 (decision boundaries in planes through data points and
        metamers, following Gilmer et al. (2018)).

    Example:
        >>> import numpy as np
        >>> u = np.linspace(-1, 1, 21)
        >>> p = 1 / (1 + np.exp(-8 * (u[None, :] + u[:, None])))
        >>> fig = decision_plane(u, u, p, points={"x": (0.2, 0.3)})
        >>> len(fig.axes)
        2
    """

    def array(a: ArrayLike) -> np.ndarray:
        return np.asarray(a.detach().cpu() if isinstance(a, torch.Tensor) else a, np.float64)

    gx, gy, v = array(grid_x), array(grid_y), array(values)
    if v.ndim != 2:
        raise ShapeError(f"values must be 2-D (ny, nx), got shape {v.shape}")
    if gx.ndim == 1 and gy.ndim == 1:
        if v.shape != (gy.size, gx.size):
            raise ShapeError(f"values must have shape ({gy.size}, {gx.size}), got {v.shape}")
    elif gx.shape != v.shape or gy.shape != v.shape:
        raise ShapeError("grid_x and grid_y must be 1-D or meshgrids shaped like values")

    finite = v[np.isfinite(v)]
    if finite.size and finite.min() >= 0 and finite.max() <= 1 and 0 < level < 1:
        lo, hi = 0.0, 1.0
    else:
        spread = float(np.abs(finite - level).max()) if finite.size else 1.0
        spread = spread if spread > 0 else 1.0
        lo, hi = level - spread, level + spread

    fig = _new_figure(5.2, 4.3)
    ax = fig.add_subplot()
    mesh = ax.pcolormesh(gx, gy, v, shading="nearest", cmap="RdBu_r", vmin=lo, vmax=hi)
    colorbar = fig.colorbar(mesh, ax=ax)
    colorbar.set_label(value_label)
    if finite.size and finite.min() < level < finite.max():
        ax.contour(gx, gy, v, levels=[level], colors="black", linewidths=1.5)
    if points is not None:
        if isinstance(points, Mapping):
            for name, (px, py) in points.items():
                ax.plot([px], [py], marker="o", color="gold", mec="black", ms=7, ls="none")
                ax.annotate(
                    str(name), (px, py), xytext=(5, 5), textcoords="offset points", fontsize=9
                )
        else:
            pts = array(points)
            if pts.ndim != 2 or pts.shape[1] != 2:
                raise ShapeError(f"points must have shape (P, 2), got {pts.shape}")
            ax.plot(pts[:, 0], pts[:, 1], marker="o", color="gold", mec="black", ms=5, ls="none")
    x_span = float(np.ptp(gx)) if gx.size else 0.0
    y_span = float(np.ptp(gy)) if gy.size else 0.0
    if x_span > 0 and y_span > 0 and 0.25 <= x_span / y_span <= 4:
        # The plane's axes share units (distances in input space), so keep angles true.
        ax.set_aspect("equal")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title)
    return fig
