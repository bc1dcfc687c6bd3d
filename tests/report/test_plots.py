from __future__ import annotations

import warnings
from collections.abc import Callable
from pathlib import Path

import matplotlib.image as mpimg
import numpy as np
import pytest
import torch
from matplotlib.contour import ContourSet
from matplotlib.figure import Figure

from preimage.errors import ConfigError, ShapeError
from preimage.report.plots import (
    clamped_share,
    decision_plane,
    figure_to_png,
    grouped_bars,
    image_grid,
    line_plot,
    metamer_grid,
    reconstruction_figure,
    save_figure,
    training_curves,
)

H, W = 6, 5


def _constant_images(values: list[float], channels: int = 1) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float32).view(-1, 1, 1, 1).repeat(1, channels, H, W)


def _shown(fig: Figure, axes: int = 0) -> np.ndarray:
    image = fig.axes[axes].images[0].get_array()
    return np.ma.filled(np.ma.asarray(image, dtype=np.float64), np.nan)


def _cell(fig: Figure, array: np.ndarray, i: int, j: int) -> np.ndarray:
    """The pixels of cell (i, j), located from the tick positions at the cell centres."""
    ax = fig.axes[0]
    cx, cy = ax.get_xticks()[j], ax.get_yticks()[i]
    r0, c0 = round(cy - (H - 1) / 2), round(cx - (W - 1) / 2)
    return array[r0 : r0 + H, c0 : c0 + W]


def _history() -> list[dict[str, float | None]]:
    return [
        {"epoch": 1, "train_loss": 2.0, "test_loss": 2.5, "train_acc": 0.3, "lr": 0.1},
        {"epoch": 2, "train_loss": 1.0, "train_acc": 0.6, "test_acc": 0.5, "lr": 0.1},
        {"epoch": 3, "train_loss": float("nan"), "test_loss": 0.9, "test_acc": None, "lr": 0.01},
    ]


FACTORIES: dict[str, Callable[[], Figure]] = {
    "curves": lambda: training_curves(_history()),
    "grid": lambda: image_grid(torch.rand(5, 1, 8, 8), nrow=3),
    "grid_rgb": lambda: image_grid(torch.rand(2, 2, 3, 8, 8), col_labels=["a", "b"]),
    "recon": lambda: reconstruction_figure(torch.rand(3, 1, 8, 8), torch.rand(3, 1, 8, 8)),
    "metamers": lambda: metamer_grid(
        torch.rand(2, 1, 8, 8), torch.rand(3, 1, 8, 8), torch.rand(2, 3, 1, 8, 8)
    ),
    "line": lambda: line_plot([1, 2], {"a": [1, 2]}, xlabel="x", ylabel="y", title="t"),
    "plane": lambda: decision_plane(
        np.linspace(-1, 1, 9), np.linspace(-1, 1, 7), np.random.default_rng(0).random((7, 9))
    ),
}


@pytest.mark.parametrize("name", sorted(FACTORIES))
def test_png_has_expected_pixel_size_and_content(name: str, tmp_path: Path) -> None:
    fig = FACTORIES[name]()
    dpi = 40
    width, height = fig.get_size_inches()
    path = save_figure(fig, tmp_path / "sub" / f"{name}.png", dpi=dpi)
    pixels = mpimg.imread(path)
    # Matplotlib truncates the canvas size to whole pixels.
    assert abs(pixels.shape[0] - height * dpi) < 1 and abs(pixels.shape[1] - width * dpi) < 1
    assert pixels[..., :3].std() > 0.01
    assert fig.axes == []
    assert [p.name for p in path.parent.iterdir()] == [f"{name}.png"]


def test_save_figure_refuses_other_formats(tmp_path: Path) -> None:
    fig = FACTORIES["line"]()
    with pytest.raises(ConfigError, match="PNG"):
        save_figure(fig, tmp_path / "a.pdf")
    with pytest.raises(ConfigError, match="dpi"):
        figure_to_png(fig, dpi=0)
    path = save_figure(fig, tmp_path / "a.png", dpi=20, close=False)
    assert fig.axes and path.read_bytes() == figure_to_png(fig, dpi=20)


def test_image_grid_places_images_row_major_and_clamps() -> None:
    values = [0.1, 0.2, 0.3, 0.4, 1.7]
    fig = image_grid(
        _constant_images(values), nrow=2, row_labels=["r0", "r1", "r2"], col_labels=["c0", "c1"]
    )
    shown = _shown(fig)
    for k, value in enumerate(values):
        i, j = divmod(k, 2)
        np.testing.assert_allclose(_cell(fig, shown, i, j), min(value, 1.0), rtol=1e-6)
    assert np.isnan(_cell(fig, shown, 2, 1)).all()
    assert [t.get_text() for t in fig.axes[0].get_yticklabels()] == ["r0", "r1", "r2"]
    gaps = shown[:, : int(fig.axes[0].get_xticks()[1] - (W - 1) / 2)][:, W:]
    assert gaps.size and np.isnan(gaps).all()


def test_image_grid_rgb_normalises_to_unit_range() -> None:
    images = torch.stack(
        [torch.full((3, H, W), -1.0), torch.tensor([0.0, 0.5, 2.0]).view(3, 1, 1).expand(3, H, W)]
    )
    fig = image_grid(images[None], vmin=-1, vmax=1, col_labels=["a", "b"], row_labels=["x"])
    shown = _shown(fig)
    assert shown.shape[-1] == 3
    np.testing.assert_allclose(_cell(fig, shown, 0, 0), 0.0)
    np.testing.assert_allclose(_cell(fig, shown, 0, 1)[0, 0], [0.5, 0.75, 1.0])


def test_image_grid_edge_cases() -> None:
    one = image_grid(torch.rand(1, 1, H, W), title="one", cell_labels=["7"])
    assert _shown(one).shape == (H, W)
    assert [t.get_text() for t in one.axes[0].texts] == ["7"]
    assert one.get_suptitle() == "one"
    assert _shown(image_grid(np.random.rand(3, 1, H, W), nrow=1)).shape[0] > 3 * H
    assert _shown(image_grid(np.random.rand(1, 3, 1, H, W))).shape[1] > 3 * W
    with pytest.raises(ShapeError, match="channels"):
        image_grid(torch.rand(2, 2, H, W))
    with pytest.raises(ShapeError, match="dimensions"):
        image_grid(torch.rand(H, W))
    with pytest.raises(ShapeError, match="empty"):
        image_grid(torch.rand(0, 1, H, W))
    with pytest.raises(ConfigError, match="row_labels"):
        image_grid(torch.rand(4, 1, H, W), nrow=2, row_labels=["a"])
    with pytest.raises(ConfigError, match="cell_labels"):
        image_grid(torch.rand(4, 1, H, W), cell_labels=["a"])
    with pytest.raises(ConfigError, match="nrow"):
        image_grid(torch.rand(1, 2, 1, H, W), nrow=2)
    with pytest.raises(ConfigError, match="nrow"):
        image_grid(torch.rand(2, 1, H, W), nrow=0)
    with pytest.raises(ConfigError, match="vmin"):
        image_grid(torch.rand(2, 1, H, W), vmin=1, vmax=0)


def test_metamer_grid_layout() -> None:
    semantic = _constant_images([0.1, 0.2])
    nuisance = _constant_images([0.5, 0.6, 0.7])
    metamers = torch.stack(
        [_constant_images([0.01 * (10 * i + j) for j in range(3)]) for i in range(2)]
    )
    fig = metamer_grid(
        semantic,
        nuisance,
        metamers,
        semantic_labels=["a0", "a1"],
        nuisance_labels=["b0", "b1", "b2"],
        predicted=torch.tensor([[3, 3, 3], [4, 4, 4]]),
    )
    shown = _shown(fig)
    assert np.isnan(_cell(fig, shown, 0, 0)).all()
    for j in range(3):
        np.testing.assert_allclose(_cell(fig, shown, 0, j + 1), nuisance[j, 0], rtol=1e-6)
    for i in range(2):
        np.testing.assert_allclose(_cell(fig, shown, i + 1, 0), semantic[i, 0], rtol=1e-6)
        for j in range(3):
            np.testing.assert_allclose(
                _cell(fig, shown, i + 1, j + 1), metamers[i, j, 0], rtol=1e-6
            )
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["", "b0", "b1", "b2"]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["", "a0", "a1"]
    assert sorted(t.get_text() for t in ax.texts) == ["3"] * 3 + ["4"] * 3
    assert "nuisance" in ax.get_xlabel() and "logit" in ax.get_ylabel()


def test_metamer_grid_rejects_mismatches() -> None:
    a, b = torch.rand(2, 1, H, W), torch.rand(3, 1, H, W)
    with pytest.raises(ShapeError):
        metamer_grid(a, b, torch.rand(3, 2, 1, H, W))
    with pytest.raises(ShapeError):
        metamer_grid(a, torch.rand(3, 3, H, W), torch.rand(2, 3, 1, H, W))
    with pytest.raises(ShapeError, match="predicted"):
        metamer_grid(a, b, torch.rand(2, 3, 1, H, W), predicted=[[1, 2], [3, 4]])
    with pytest.raises(ConfigError, match="nuisance_labels"):
        metamer_grid(a, b, torch.rand(2, 3, 1, H, W), nuisance_labels=["x"])


def test_reconstruction_figure_reports_exact_error() -> None:
    rng = np.random.default_rng(1)
    x = rng.random((5, 3, H, W)).astype(np.float32)
    x_rec = x + rng.normal(0, 1e-3, x.shape).astype(np.float32)
    fig = reconstruction_figure(torch.from_numpy(x), torch.from_numpy(x_rec), n=4)
    expected = np.abs(x[:4].astype(np.float64) - x_rec[:4]).max(axis=1)
    assert fig.get_suptitle().endswith(f"{expected.max():.3g}")
    diff = _shown(fig, 2)
    np.testing.assert_allclose(diff[:, :W], expected[0], rtol=1e-5)
    assert fig.axes[2].images[0].get_clim() == pytest.approx((0.0, expected.max()), rel=1e-5)
    assert [ax.get_ylabel() for ax in fig.axes[:3]] == [
        "original",
        "reconstruction",
        "|difference|",
    ]
    assert _shown(fig, 0).shape[1] == _shown(fig, 2).shape[1] > 4 * W
    with pytest.raises(ShapeError, match="same shape"):
        reconstruction_figure(torch.rand(2, 1, H, W), torch.rand(3, 1, H, W))
    with pytest.raises(ConfigError):
        reconstruction_figure(torch.rand(2, 1, H, W), torch.rand(2, 1, H, W), n=0)


def test_reconstruction_figure_perfect_inverse() -> None:
    x = torch.rand(2, 1, H, W)
    fig = reconstruction_figure(x, x.clone())
    assert fig.get_suptitle().endswith("= 0")
    assert fig.axes[2].images[0].get_clim() == (0.0, 1.0)


def test_training_curves_tolerates_missing_values() -> None:
    fig = training_curves(_history(), title="run")
    loss, acc, lr = fig.axes[:3]
    assert (loss.get_ylabel(), acc.get_ylabel(), lr.get_ylabel()) == (
        "loss",
        "accuracy",
        "learning rate",
    )
    data = {line.get_label(): line.get_xydata().tolist() for line in loss.get_lines()}
    assert data == {"train_loss": [[1, 2.0], [2, 1.0]], "test_loss": [[1, 2.5], [3, 0.9]]}
    data = {line.get_label(): line.get_xydata().tolist() for line in acc.get_lines()}
    assert data == {"train_acc": [[1, 0.3], [2, 0.6]], "test_acc": [[2, 0.5]]}
    assert lr.get_yscale() == "log"


def test_training_curves_without_epoch_key_and_lr() -> None:
    fig = training_curves([{"loss": 1.0}, {"loss": torch.tensor(0.5), "note": "x"}])
    assert len(fig.axes) == 1
    assert fig.axes[0].get_lines()[0].get_xydata().tolist() == [[1, 1.0], [2, 0.5]]
    assert training_curves([{"test_error": 0.1}]).axes[0].get_ylabel() == "error"
    mixed = training_curves([{"train_acc": 0.9, "test_error": 0.1}])
    assert mixed.axes[0].get_ylabel() == "accuracy / error"
    empty = training_curves([])
    assert len(empty.axes) == 1 and empty.axes[0].texts
    with pytest.raises(ConfigError):
        training_curves([1.0])  # type: ignore[list-item]


def test_line_plot() -> None:
    fig = line_plot(
        torch.arange(3), {"a": [1.0, 2.0, 3.0], "b": np.array([0.0, 1.0, 2.0])}, logy=True
    )
    ax = fig.axes[0]
    assert [line.get_label() for line in ax.get_lines()] == ["a", "b"]
    np.testing.assert_allclose(ax.get_lines()[1].get_ydata(), [0.0, 1.0, 2.0])
    assert ax.get_yscale() == "log"
    with pytest.raises(ShapeError):
        line_plot([1, 2], {"a": [1.0]})
    with pytest.raises(ConfigError):
        line_plot([1, 2], {})


def test_grouped_bars() -> None:
    fig = grouped_bars(["a", "b", "c"], {"x": [1.0, 2.0, 3.0], "y": [4.0, float("nan"), 6.0]})
    ax = fig.axes[0]
    heights = [patch.get_height() for patch in ax.patches]
    assert heights == [1.0, 2.0, 3.0, 4.0, 0.0, 6.0]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["a", "b", "c"]
    with pytest.raises(ShapeError):
        grouped_bars(["a"], {"x": [1.0, 2.0]})
    with pytest.raises(ConfigError):
        grouped_bars([], {"x": []})


def _contours(fig: Figure) -> list[ContourSet]:
    return [c for c in fig.axes[0].get_children() if isinstance(c, ContourSet)]


def test_decision_plane_contour_at_level() -> None:
    u = np.linspace(-2, 2, 41)
    radius = np.hypot(u[None, :], u[:, None])
    p = 1 / (1 + np.exp(-5 * (radius - 1)))
    fig = decision_plane(u, u, p, points={"x1": (1.0, 0.0)}, title="spheres")
    contours = _contours(fig)
    assert len(contours) == 1 and list(contours[0].levels) == [0.5]
    # The 0.5 contour of this field is the unit circle.
    vertices = np.concatenate([path.vertices for path in contours[0].get_paths()])
    np.testing.assert_allclose(np.hypot(vertices[:, 0], vertices[:, 1]), 1.0, atol=0.02)
    assert len(fig.axes[0].images) == 0 and len(fig.axes[0].collections) > 0
    assert fig.axes[0].collections[0].get_clim() == (0.0, 1.0)
    assert [t.get_text() for t in fig.axes[0].texts] == ["x1"]


def test_decision_plane_without_crossing_and_logits() -> None:
    u = np.linspace(0, 1, 5)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fig = decision_plane(u, u, np.full((5, 5), 0.9), points=np.zeros((2, 2)))
    assert _contours(fig) == []
    gx, gy = np.meshgrid(u, u)
    logits = decision_plane(gx, gy, gx - 0.5, level=0.0)
    assert logits.axes[0].collections[0].get_clim() == pytest.approx((-0.5, 0.5))
    assert len(_contours(logits)) == 1
    with pytest.raises(ShapeError):
        decision_plane(u, u[:3], np.zeros((5, 5)))
    with pytest.raises(ShapeError):
        decision_plane(u, u, np.zeros(5))
    with pytest.raises(ShapeError):
        decision_plane(u, u, np.zeros((5, 5)), points=np.zeros(3))


def test_image_grid_takes_float64_tensors_with_grad() -> None:
    x = torch.rand(2, 1, H, W, dtype=torch.float64, requires_grad=True)
    fig = image_grid(x * 1.0, col_labels=["a", "b"], row_labels=["r"])
    shown = _shown(fig)
    for j in range(2):
        np.testing.assert_allclose(_cell(fig, shown, 0, j), x[j, 0].detach().numpy(), rtol=1e-6)


def test_training_curves_omit_a_constant_learning_rate_and_tick_whole_epochs() -> None:
    history = [{"epoch": e, "train_loss": 1.0 / e, "lr": 0.003} for e in (1, 2, 3)]
    fig = training_curves(history)
    assert [ax.get_ylabel() for ax in fig.axes] == ["loss"]
    ticks = fig.axes[0].xaxis.get_major_locator()()
    assert all(float(t).is_integer() for t in ticks)
    single = training_curves(history[:1]).axes[0]
    assert list(single.get_xticks()) == [1.0]
    many = training_curves([{"epoch": e, "train_loss": 1.0 / e} for e in range(1, 41)]).axes[0]
    assert all(float(t).is_integer() for t in many.xaxis.get_major_locator()())
    decayed = training_curves([dict(h, lr=0.1 * 0.2**i) for i, h in enumerate(history)])
    assert [ax.get_ylabel() for ax in decayed.axes] == ["loss", "learning rate"]


def test_training_curves_integer_epoch_ticks_and_constant_curves_named_not_drawn() -> None:
    history = [
        {"epoch": e, "train_loss": 1.0 / e, "train_acc": 1.0, "lr": 1e-3} for e in range(1, 8)
    ]
    fig = training_curves(history, title="run")
    # The constant accuracy and learning rate are named under the title, not drawn.
    assert [ax.get_ylabel() for ax in fig.axes] == ["loss"]
    assert fig.get_suptitle() == "run\nconstant: train_acc = 1, lr = 0.001"
    ax = fig.axes[0]
    fig.canvas.draw()
    ticks = [t for t in ax.get_xticks() if 1 <= t <= 7]
    assert ticks and all(float(t).is_integer() for t in ticks)
    # A changing learning rate keeps its panel; fractional x values keep default ticks.
    stepped = [{"step": 0.5 * i, "loss": float(i), "lr": 0.1 / (i + 1)} for i in range(4)]
    fig = training_curves(stepped, x_key="step")
    assert [ax.get_ylabel() for ax in fig.axes] == ["loss", "learning rate"]
    assert fig.get_suptitle() == ""


def test_clamped_share_counts_values_outside_the_display_range() -> None:
    x = torch.tensor([[-2.0, 0.0, 0.5], [1.0, 1.5, 0.25]])
    assert clamped_share(x) == pytest.approx(2 / 6)
    assert clamped_share(x, vmin=-3.0, vmax=2.0) == 0.0
    assert clamped_share(np.array([0.5, 3.0])) == 0.5
    with pytest.raises(ShapeError):
        clamped_share(torch.empty(0))
    with pytest.raises(ConfigError):
        clamped_share(x, vmin=1.0, vmax=0.0)
