r"""``preimage run relu-preimage-toy``: pre-images and conditioning of a 3-neuron net (figure 3.1).

A one-hidden-layer ReLU network with 3 neurons is trained to tell two concentric circles apart
(scikit-learn's ``make_circles``). Over a grid of the plane the study shows (thesis figure 3.1)
the prediction, the kind of the pre-image of the first layer's activations
(:func:`~preimage.analysis.relu_preimage.classify_preimage`: singleton, compact or unbounded)
and the condition number of the first layer's linearisation :math:`D_I A_1`
(:func:`~preimage.analysis.stability.stability_profile`; 0 where every unit is off, as in the
figure).

Targets (thesis section 3.1): the net separates the circles; "regions with infinite/finite
preimages correspond to regions with condition number of one or zero, while singleton
preimages link to condition numbers larger than one" (checked on every grid point, two
separately computed quantities); the three kinds occur, as in the figure's middle panel.

Deviation: the thesis does not give the data or training set-up of figure 3.1; here circles of
radius 1 and 0.4 with noise 0.08, Adam, a cross-entropy head of 2 logits.

References:
    Behrmann (thesis), *Invertibility and Domain Knowledge*, section 3.1 and figure 3.1,
    theorem 3.3, definition 3.4.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import torch
from matplotlib.colors import ListedColormap
from matplotlib.figure import Figure
from sklearn.datasets import make_circles
from torch import Tensor, nn

from preimage.analysis.relu_preimage import classify_preimage
from preimage.analysis.stability import stability_profile
from preimage.studies.base import StudyConfig
from preimage.studies.kit import StudyRun, study_entry
from preimage.train import TrainConfig, Trainer

__all__ = ["GRID_KINDS", "Config", "run"]

GRID_KINDS: tuple[str, ...] = ("unbounded", "compact", "singleton")
"""Kinds a pre-image of a point's own activations can have (never empty), in plot order."""


@dataclass(frozen=True)
class Config(StudyConfig):
    """Settings of the toy study (thesis figure 3.1); defaults are the ``cpu`` budget.

    Attributes:
        train: training of the 2-3-2 network.
        hidden: hidden ReLU units (3 in the thesis).
        n_train: training points.
        n_test: test points.
        noise: standard deviation of the circles' noise.
        factor: radius of the inner circle (outer: 1).
        grid: grid points per axis over :math:`[-1.5, 1.5]^2`.
    """

    train: TrainConfig = field(
        default_factory=lambda: TrainConfig(
            epochs=60, batch_size=64, lr=1e-2, optimizer="adam", weight_decay=0.0,
            max_shift=0, dequantize=False, lr_step=40, lr_decay=0.1,
        )
    )  # fmt: skip
    hidden: int = 3
    n_train: int = 2000
    n_test: int = 1000
    noise: float = 0.08
    factor: float = 0.4
    grid: int = 120

    BUDGETS: ClassVar[dict[str, dict[str, Any]]] = {
        "smoke": {"train.epochs": 2, "n_train": 256, "n_test": 128, "grid": 16},
        "cpu": {},
        "paper": {"grid": 300},
    }


def _circles(n: int, config: Config, seed: int) -> tuple[Tensor, Tensor]:
    x, y = make_circles(n, noise=config.noise, factor=config.factor, random_state=seed)
    return torch.as_tensor(x, dtype=torch.float32), torch.as_tensor(y, dtype=torch.int64)


def _grid_maps(model: nn.Sequential, points: Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Pre-image kind (index into GRID_KINDS) and first-layer condition number per point."""
    net = model.double()
    weight, bias = net[0].weight.detach(), net[0].bias.detach()
    kinds, conditions = [], []
    for p in points.double():
        y = torch.relu(weight @ p + bias)
        kinds.append(GRID_KINDS.index(classify_preimage(weight, bias, y, x_ref=p, box=False).kind))
        [record] = stability_profile(net, p[None], layers=["1"])
        conditions.append(0.0 if record.rank == 0 else record.condition)
    return np.array(kinds), np.array(conditions)


def _figure(
    axis: np.ndarray, prob: np.ndarray, kinds: np.ndarray, cond: np.ndarray, data: Tensor,
    labels: Tensor,
) -> Figure:  # fmt: skip
    fig = Figure(figsize=(13, 4.2))
    axes = fig.subplots(1, 3)
    extent = (axis[0], axis[-1], axis[0], axis[-1])
    im = axes[0].imshow(prob, origin="lower", extent=extent, cmap="coolwarm", vmin=0, vmax=1)
    axes[0].scatter(*data[:300].T, c=labels[:300], cmap="coolwarm", s=4, edgecolors="k", lw=0.2)
    axes[0].set_title("prediction p(inner circle)")
    fig.colorbar(im, ax=axes[0], fraction=0.046)
    cmap = ListedColormap(["#d62728", "#ff7f0e", "#2ca02c"])
    im = axes[1].imshow(kinds, origin="lower", extent=extent, cmap=cmap, vmin=-0.5, vmax=2.5)
    bar = fig.colorbar(im, ax=axes[1], fraction=0.046, ticks=[0, 1, 2])
    bar.ax.set_yticklabels(list(GRID_KINDS))
    axes[1].set_title("pre-image of the first layer")
    im = axes[2].imshow(cond, origin="lower", extent=extent, cmap="viridis")
    fig.colorbar(im, ax=axes[2], fraction=0.046)
    axes[2].set_title("condition number of $D_I A_1$ (0: all units off)")
    for ax in axes:
        ax.set_xlabel("$x_1$")
        ax.set_ylabel("$x_2$")
    fig.tight_layout()
    return fig


@study_entry(
    "relu-preimage-toy",
    title="relu-preimage-toy: pre-images and conditioning of a 3-neuron ReLU net",
)
def run(study: StudyRun, config: Config) -> dict[str, Any]:
    """Train the 2-3-2 ReLU net, map pre-image kinds and conditioning over the plane."""
    study.text(
        f"A 2-{config.hidden}-2 ReLU network trained on two circles (thesis figure 3.1). "
        "For every point of a grid: the prediction, the kind of the pre-image of its "
        "first-layer activations (theorem 3.3) and the condition number of the first "
        "layer's exact linearisation (definition 3.4)."
    )
    study.seed()
    train_data = _circles(config.n_train, config, config.seed)
    test_data = _circles(config.n_test, config, config.seed + 1)
    model = nn.Sequential(nn.Linear(2, config.hidden), nn.ReLU(), nn.Linear(config.hidden, 2))
    trainer = Trainer(model, train_data, test_data, config.train, progress=config.progress)
    accuracy = float(trainer.fit()["test_accuracy"])
    model = model.cpu().double()
    axis = np.linspace(-1.5, 1.5, config.grid)
    gx, gy = np.meshgrid(axis, axis)
    points = torch.as_tensor(np.stack([gx.ravel(), gy.ravel()], 1))
    with torch.no_grad():
        prob = torch.softmax(model(points), 1)[:, 1].numpy().reshape(gx.shape)
    kinds, cond = _grid_maps(model, points)
    shares = {kind: float(np.mean(kinds == i)) for i, kind in enumerate(GRID_KINDS)}
    singleton = kinds == GRID_KINDS.index("singleton")
    low_cond = cond <= 1.0 + 1e-9
    shape = gx.shape
    study.figure(
        _figure(axis, prob, kinds.reshape(shape), cond.reshape(shape), *train_data),
        "preimages",
        "Left: prediction of the 3-neuron ReLU net with training points. Middle: kind of the "
        "pre-image of the first layer's activations. Right: condition number of the first "
        "layer's linearisation over its non-zero singular values.",
    )
    study.table(
        [{"kind": k, "share of grid": v} for k, v in shares.items()], title="Pre-image kinds"
    )
    study.check("test_accuracy", accuracy, ">= 0.9")
    study.check(
        "nonsingleton_condition_le_one", float(np.mean(low_cond[~singleton])) if (~singleton).any()
        else 1.0, ">= 1.0",
    )  # fmt: skip
    study.check(
        "singleton_condition_gt_one",
        float(np.mean(~low_cond[singleton])) if singleton.any() else 0.0,
        ">= 1.0",
    )
    study.check("kinds_present", int(sum(v > 0 for v in shares.values())), ">= 3")
    metrics = {
        "test_accuracy": accuracy,
        **{f"share_{k}": v for k, v in shares.items()},
        "max_condition": float(cond.max()),
    }
    return study.finish(metrics)
