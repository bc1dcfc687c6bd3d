r"""``preimage run relu-preimage-toy``: pre-images and conditioning of a 3-neuron net (figure 3.1).

A one-hidden-layer ReLU network with 3 neurons is trained to tell two concentric circles apart
(scikit-learn's ``make_circles``). Over a grid of the plane the study shows (thesis figure 3.1)
the prediction, the kind of the pre-image of the first layer's activations
(:func:`~preimage.analysis.relu_preimage.classify_preimage`: singleton, compact or unbounded)
and the condition number of the first layer's linearisation :math:`D_I A_1`
(:func:`~preimage.analysis.stability.stability_profile`; 0 where every unit is off, as in the
figure).

The kind of a pre-image depends on the trained weights, not only on the method: when the three
normals of the first layer are omnidirectional (definition 3.1: they positively span the plane)
every pre-image is a point or a compact polytope; when they lie in one half-plane, the cells
where at most one unit is on have unbounded pre-images. Both solutions separate the circles,
and which one training finds depends on the initialisation, so the study trains ``restarts``
networks from different initialisations on the same data and reports each (accuracy,
omnidirectional normals, shares of the kinds). The figure shows the most accurate network of
each kind of solution found.

Targets (thesis section 3.1): the nets separate the circles; "regions with infinite/finite
preimages correspond to regions with condition number of one or zero, while singleton
preimages link to condition numbers larger than one" (checked on every grid point of every
restart, two separately computed quantities); the three kinds occur in one trained network,
as in the figure's middle panel (among the restarts that reach 90% test accuracy); with 3
units, nets whose normals are omnidirectional have no unbounded pre-image (a consequence of
theorem 3.3 for three normals in the plane, checked against the grid).

Kinds and conditions are functions of the activation pattern (theorem 3.3 and definition 3.4
use only which units are on), so the grid is evaluated once per pattern that occurs on it and
broadcast to its points.

Deviations: the thesis does not give the data or training set-up of figure 3.1; here circles of
radius 1 and 0.4 with noise 0.08, Adam, a cross-entropy head of 2 logits. The restarts are
ours: the thesis shows one network.

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

from preimage.analysis.relu_preimage import classify_preimage, is_omnidirectional
from preimage.analysis.stability import stability_profile
from preimage.data.subsets import Pair
from preimage.errors import require_int
from preimage.studies.base import StudyConfig
from preimage.studies.kit import StudyRun, study_entry
from preimage.train import TrainConfig, Trainer
from preimage.train.checkpoint import save_checkpoint

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
        restarts: networks trained from different initialisations (seeds ``seed + r``) on the
            same data.
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
    restarts: int = 10

    BUDGETS: ClassVar[dict[str, dict[str, Any]]] = {
        "smoke": {"train.epochs": 2, "n_train": 256, "n_test": 128, "grid": 16, "restarts": 2},
        "cpu": {},
        "paper": {"grid": 300, "restarts": 20},
    }


def _circles(n: int, config: Config, seed: int) -> tuple[Tensor, Tensor]:
    x, y = make_circles(n, noise=config.noise, factor=config.factor, random_state=seed)
    return torch.as_tensor(x, dtype=torch.float32), torch.as_tensor(y, dtype=torch.int64)


def _grid_maps(model: nn.Sequential, points: Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Pre-image kind (index into GRID_KINDS) and first-layer condition number per point.

    Both depend on the point only through its activation pattern, so each pattern is solved
    once, at its first point, and the result is given to every point with that pattern.
    """
    net = model.double()
    weight, bias = net[0].weight.detach(), net[0].bias.detach()
    points = points.double()
    patterns = (points @ weight.T + bias > 0).numpy()
    _, first, index = np.unique(patterns, axis=0, return_index=True, return_inverse=True)
    kinds, conditions = [], []
    for i in first:
        p = points[i]
        y = torch.relu(weight @ p + bias)
        kinds.append(GRID_KINDS.index(classify_preimage(weight, bias, y, x_ref=p, box=False).kind))
        [record] = stability_profile(net, p[None], layers=["1"])
        conditions.append(0.0 if record.rank == 0 else record.condition)
    index = index.reshape(-1)
    return np.array(kinds)[index], np.array(conditions)[index]


@dataclass(frozen=True)
class _Restart:
    """One trained network and its maps over the grid."""

    accuracy: float
    omnidirectional: bool
    prob: np.ndarray
    kinds: np.ndarray
    cond: np.ndarray

    def shares(self) -> dict[str, float]:
        return {kind: float(np.mean(self.kinds == i)) for i, kind in enumerate(GRID_KINDS)}


def _train_restart(
    config: Config, data: tuple[Pair, Pair], points: Tensor, shape: tuple[int, ...]
) -> tuple[nn.Sequential, _Restart]:
    model = nn.Sequential(nn.Linear(2, config.hidden), nn.ReLU(), nn.Linear(config.hidden, 2))
    trainer = Trainer(model, data[0], data[1], config.train, progress=False)
    accuracy = float(trainer.fit()["test_accuracy"])
    model = model.cpu().double()
    with torch.no_grad():
        prob = torch.softmax(model(points), 1)[:, 1].numpy().reshape(shape)
    kinds, cond = _grid_maps(model, points)
    omni = is_omnidirectional(model[0].weight.detach().numpy())
    return model, _Restart(accuracy, omni, prob, kinds.reshape(shape), cond.reshape(shape))


def _figure(
    axis: np.ndarray, shown: list[tuple[str, _Restart]], data: Tensor, labels: Tensor
) -> Figure:
    fig = Figure(figsize=(13, 4.2 * len(shown)))
    extent = (axis[0], axis[-1], axis[0], axis[-1])
    cmap = ListedColormap(["#d62728", "#ff7f0e", "#2ca02c"])
    for row, (title, restart) in enumerate(shown):
        axes = [fig.add_subplot(len(shown), 3, 3 * row + column + 1) for column in range(3)]
        im = axes[0].imshow(
            restart.prob, origin="lower", extent=extent, cmap="coolwarm", vmin=0, vmax=1
        )
        axes[0].scatter(*data[:300].T, c=labels[:300], cmap="coolwarm", s=4, edgecolors="k", lw=0.2)
        axes[0].set_title(f"{title}\nprediction p(inner circle)", fontsize=9)
        fig.colorbar(im, ax=axes[0], fraction=0.046)
        im = axes[1].imshow(
            restart.kinds, origin="lower", extent=extent, cmap=cmap, vmin=-0.5, vmax=2.5
        )
        bar = fig.colorbar(im, ax=axes[1], fraction=0.046, ticks=[0, 1, 2])
        bar.ax.set_yticklabels(list(GRID_KINDS))
        axes[1].set_title("pre-image of the first layer", fontsize=9)
        im = axes[2].imshow(restart.cond, origin="lower", extent=extent, cmap="viridis")
        fig.colorbar(im, ax=axes[2], fraction=0.046)
        axes[2].set_title("condition number of $D_I A_1$ (0: all units off)", fontsize=9)
        for ax in axes:
            ax.set_xlabel("$x_1$")
            ax.set_ylabel("$x_2$")
    fig.tight_layout()
    return fig


def _shown(restarts: list[_Restart]) -> list[tuple[str, _Restart]]:
    """The most accurate restart of each kind of solution, the more accurate one first."""
    shown = []
    for omni, label in ((True, "omnidirectional normals"), (False, "normals in a half-plane")):
        group = [(r.accuracy, -i, i) for i, r in enumerate(restarts) if r.omnidirectional == omni]
        if group:
            _, _, i = max(group)
            shown.append((f"restart {i}, {label}", restarts[i]))
    return sorted(shown, key=lambda item: -item[1].accuracy)


def _check(config: Config) -> None:
    require_int("restarts", config.restarts)
    require_int("hidden", config.hidden)
    require_int("grid", config.grid, 2)


@study_entry(
    "relu-preimage-toy",
    title="relu-preimage-toy: pre-images and conditioning of a 3-neuron ReLU net",
    check=_check,
)
def run(study: StudyRun, config: Config) -> dict[str, Any]:
    """Train the 2-3-2 ReLU nets, map pre-image kinds and conditioning over the plane."""
    study.text(
        f"{config.restarts} 2-{config.hidden}-2 ReLU networks trained on two circles from "
        "different initialisations (thesis figure 3.1). For every point of a grid: the "
        "prediction, the kind of the pre-image of its first-layer activations (theorem "
        "3.3) and the condition number of the first layer's exact linearisation "
        "(definition 3.4)."
    )
    train_data = _circles(config.n_train, config, config.seed)
    test_data = _circles(config.n_test, config, config.seed + 1)
    axis = np.linspace(-1.5, 1.5, config.grid)
    gx, gy = np.meshgrid(axis, axis)
    points = torch.as_tensor(np.stack([gx.ravel(), gy.ravel()], 1))
    restarts = []
    for r in range(config.restarts):
        study.seed(r)
        model, restart = _train_restart(config, (train_data, test_data), points, gx.shape)
        save_checkpoint(study.checkpoint_path(f"restart{r}"), model=model)
        restarts.append(restart)
    shown = _shown(restarts)
    study.figure(
        _figure(axis, shown, *train_data),
        "preimages",
        "One row per kind of solution found (the most accurate restart of each). Left: "
        "prediction of the 3-neuron ReLU net with training points. Middle: kind of the "
        "pre-image of the first layer's activations. Right: condition number of the first "
        "layer's linearisation over its non-zero singular values.",
    )
    study.table(
        [
            {"restart": i, "test accuracy": r.accuracy, "omnidirectional": r.omnidirectional,
             **{f"share {k}": v for k, v in r.shares().items()}}
            for i, r in enumerate(restarts)
        ],
        title="Restarts: pre-image kinds over the grid",
    )  # fmt: skip
    return study.finish(_checks(study, config, restarts, shown[0][1]))


def _checks(
    study: StudyRun, config: Config, restarts: list[_Restart], best: _Restart
) -> dict[str, Any]:
    singleton = np.concatenate([r.kinds.ravel() == GRID_KINDS.index("singleton") for r in restarts])
    low_cond = np.concatenate([r.cond.ravel() <= 1.0 + 1e-9 for r in restarts])
    accurate = [r for r in restarts if r.accuracy >= 0.9]
    kinds_present = max((sum(v > 0 for v in r.shares().values()) for r in accurate), default=0)
    study.check("test_accuracy", best.accuracy, ">= 0.9")
    study.check(
        "nonsingleton_condition_le_one",
        float(np.mean(low_cond[~singleton])) if (~singleton).any() else 1.0,
        ">= 1.0",
    )
    study.check(
        "singleton_condition_gt_one",
        float(np.mean(~low_cond[singleton])) if singleton.any() else 0.0,
        ">= 1.0",
    )
    study.check("kinds_present", int(kinds_present), ">= 3")
    omni = [r for r in restarts if r.omnidirectional]
    if config.hidden == 3 and omni:
        study.check(
            "omnidirectional_nets_bounded",
            float(np.mean([r.shares()["unbounded"] == 0.0 for r in omni])),
            ">= 1.0",
        )
    return {
        "test_accuracy": best.accuracy,
        **{f"share_{k}": v for k, v in best.shares().items()},
        "max_condition": float(best.cond.max()),
        "kinds_present": int(kinds_present),
        "n_accurate": len(accurate),
        "n_omnidirectional": len(omni),
        **{f"restart{i}_test_accuracy": r.accuracy for i, r in enumerate(restarts)},
        **{f"restart{i}_omnidirectional": r.omnidirectional for i, r in enumerate(restarts)},
        **{
            f"restart{i}_share_{k}": v
            for i, r in enumerate(restarts)
            for k, v in r.shares().items()
        },
    }
