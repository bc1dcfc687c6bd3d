r"""``preimage run relu-preimage-mnist``: how often are ReLU pre-images bounded, by layer width?

MLPs :math:`n \to w \to w \to 10` (:math:`n = 784`) with ReLU are trained on MNIST for
several widths :math:`w`. For test images, the pre-image of the first and of the second layer's
activations (each layer alone, in the space of its own input) is classified by theorem 3.3 with
:func:`~preimage.analysis.relu_preimage.layer_preimages`: the share of singleton, compact and
unbounded pre-images per width, the mean null-space dimension :math:`k` of the active rows and
the wall time per query. The second layer's input is the image of a ReLU, so its pre-image is
taken within :math:`h_1 \ge 0` (remark 3.2); the first layer's input has no prior unless
``input_box`` (pixels in :math:`[0, 1]`, which makes every pre-image bounded).

Targets. The thesis has no experiment of this kind; the targets are what theorem 3.3 implies
for the first layer: a layer narrower than its input (:math:`w < 784`) never has a bounded
pre-image (:math:`k \ge 784 - w` while at most :math:`w` rows remain for omnidirectionality,
which needs :math:`k + 1`), so its pre-images are all unbounded ("pre-images of narrow layers
are unbounded"); a layer with at least twice as many units as inputs has, for most inputs, at
least 784 active rows of full rank, :math:`k = 0`, a singleton; and the share of bounded
pre-images grows with the width.

References:
    Behrmann (thesis), *Invertibility and Domain Knowledge*, section 3.3, theorem 3.3,
    remark 3.2.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import torch.nn.functional as F
from matplotlib.figure import Figure
from torch import Tensor, nn

from preimage.analysis.relu_preimage import KINDS, LayerPreimages, layer_preimages
from preimage.data import load_dataset
from preimage.studies.base import StudyConfig
from preimage.studies.kit import StudyRun, study_entry
from preimage.train import TrainConfig, Trainer

__all__ = ["Config", "mlp", "run"]


@dataclass(frozen=True)
class Config(StudyConfig):
    """Settings of the MNIST pre-image study; defaults are the ``cpu`` budget.

    Attributes:
        train: training of each MLP.
        widths: hidden widths :math:`w` of the two ReLU layers.
        n_train: training images (``None``: all).
        n_queries: test images whose pre-images are classified.
        wide_second_layer: width from which the second layer gets only ``n_wide_queries``
            queries, for budgets that cannot afford its LPs (a problem with
            :math:`k \\approx 0.7 w` unknowns and :math:`\\approx 1.7 w` rows).
        n_wide_queries: second-layer queries at widths :math:`\\ge` ``wide_second_layer``.
        input_box: impose :math:`x \\in [0, 1]^{n}` on the first layer's pre-image.
        image_size: side of the (area-resized) images, :math:`n` = ``image_size**2`` inputs.
    """

    train: TrainConfig = field(
        default_factory=lambda: TrainConfig(
            epochs=2, batch_size=64, lr=1e-3, optimizer="adam", weight_decay=0.0,
            max_shift=0, dequantize=False,
        )
    )  # fmt: skip
    widths: tuple[int, ...] = (64, 256, 1024, 2048)
    n_train: int | None = 20_000
    n_queries: int = 50
    wide_second_layer: int = 2048
    n_wide_queries: int = 50
    input_box: bool = False
    image_size: int = 28

    BUDGETS: ClassVar[dict[str, dict[str, Any]]] = {
        "smoke": {
            "train.epochs": 1,
            "train.max_steps_per_epoch": 3,
            "image_size": 8,
            "widths": (16, 160),
            "n_train": 256,
            "n_queries": 2,
            "wide_second_layer": 160,
            "n_wide_queries": 1,
        },
        "cpu": {},
        "paper": {"train.epochs": 20, "n_train": None, "widths": (64, 128, 256, 512, 1024, 2048),
                  "n_queries": 200, "n_wide_queries": 200},
    }  # fmt: skip


def mlp(width: int, inputs: int = 784) -> nn.Sequential:
    """:math:`n \\to w \\to w \\to 10` with ReLU; children ``1`` and ``3`` are the ReLU layers.

    Example:
        >>> [type(m).__name__ for m in mlp(8)]
        ['Flatten', 'Linear', 'ReLU', 'Linear', 'ReLU', 'Linear']
    """
    return nn.Sequential(
        nn.Flatten(), nn.Linear(inputs, width), nn.ReLU(), nn.Linear(width, width), nn.ReLU(),
        nn.Linear(width, 10),
    )  # fmt: skip


def _resize(images: Tensor, size: int) -> Tensor:
    return images if images.shape[-1] == size else F.interpolate(images, size=size, mode="area")


def _figure(
    widths: Sequence[int], reports: dict[int, list[LayerPreimages]], init: dict[int, LayerPreimages]
) -> Figure:
    fig = Figure(figsize=(17, 4))
    axes = fig.subplots(1, 4)
    labels = [str(w) for w in widths]
    panels = [
        ("layer 1 pre-images at initialisation", [init[w] for w in widths]),
        ("layer 1 pre-images, trained", [reports[w][0] for w in widths]),
        ("layer 2 pre-images, trained", [reports[w][1] for w in widths]),
    ]
    for ax, (title, per_width) in zip(axes[:3], panels, strict=True):
        bottom = np.zeros(len(widths))
        for kind in KINDS[:3]:
            share = np.array([report.shares()[kind] for report in per_width])
            ax.bar(labels, share, bottom=bottom, label=kind)
            bottom += share
        ax.set_title(title)
        ax.set_xlabel("width w")
        ax.set_ylabel("share of test images")
        ax.legend(fontsize=8)
    for layer in range(2):
        seconds = [np.mean(reports[w][layer].seconds) for w in widths]
        axes[3].semilogy(labels, seconds, marker="o", label=f"layer {layer + 1}")
    axes[3].set_title("time per query (rank, LPs), trained")
    axes[3].set_xlabel("width w")
    axes[3].set_ylabel("seconds")
    axes[3].legend(fontsize=8)
    fig.tight_layout()
    return fig


def _layer(config: Config, model: nn.Sequential, queries: Tensor, name: str) -> LayerPreimages:
    # The second layer's prior h >= 0 does not depend on the call (layer_preimages sets it
    # behind a ReLU); the box, when asked for, applies to the image pixels only.
    box = (0.0, 1.0) if config.input_box and name == "1" else (None, None)
    return layer_preimages(
        model.cpu(), queries, layers=[name], lower=box[0], upper=box[1], progress=config.progress
    )[0]


def _preimages(
    config: Config, model: nn.Sequential, width: int, queries: Tensor
) -> list[LayerPreimages]:
    """The first and the second ReLU layer's pre-images of ``queries`` (fewer for a wide
    second layer: one call per layer, so the costly second layer can take fewer queries)."""
    second = config.n_wide_queries if width >= config.wide_second_layer else config.n_queries
    return [
        _layer(config, model, queries[: config.n_queries], "1"),
        _layer(config, model, queries[:second], "3"),
    ]


def _layer_metrics(
    width: int, reports: list[LayerPreimages], init: LayerPreimages
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Metrics and table rows of one width's layer pre-images (``init``: the first layer
    before training)."""
    metrics: dict[str, Any] = {}
    rows = []
    for layer, report in [("1 (init)", init), *enumerate(reports, start=1)]:
        shares = report.shares()
        key = f"w{width}_init_layer1" if report is init else f"w{width}_layer{layer}"
        metrics.update({f"{key}_{kind}": shares[kind] for kind in KINDS})
        metrics[f"{key}_mean_null_dim"] = float(np.mean(report.null_dims))
        metrics[f"{key}_seconds_per_query"] = float(np.mean(report.seconds))
        metrics[f"{key}_lps_per_query"] = float(np.mean(report.n_lps))
        metrics[f"{key}_n_queries"] = len(report.kinds)
        rows.append({"width": width, "layer": layer, "queries": len(report.kinds), **shares,
                     "mean k": metrics[f"{key}_mean_null_dim"],
                     "s / query": metrics[f"{key}_seconds_per_query"]})  # fmt: skip
    return metrics, rows


@study_entry(
    "relu-preimage-mnist",
    title="relu-preimage-mnist: bounded or unbounded ReLU pre-images by width",
)
def run(study: StudyRun, config: Config) -> dict[str, Any]:
    """Train one MLP per width and classify its layers' pre-images on test images."""
    study.text(
        f"MLPs {config.image_size**2}-w-w-10 for w in {list(config.widths)} on MNIST; the "
        f"pre-images of the first and second layer's activations of {config.n_queries} test "
        f"images ({config.n_wide_queries} for the second layer at widths >= "
        f"{config.wide_second_layer}) are classified by theorem 3.3 (second layer within "
        "h >= 0)."
    )
    train = load_dataset("mnist", "train", data_dir=config.data_dir)
    test = load_dataset("mnist", "test", data_dir=config.data_dir)
    size = config.image_size
    train_data = (_resize(train.images[: config.n_train], size), train.labels[: config.n_train])
    test_data = (_resize(test.images[:1000], size), test.labels[:1000])
    queries = _resize(test.images[: config.n_queries], size)
    n = size * size
    reports: dict[int, list[LayerPreimages]] = {}
    inits: dict[int, LayerPreimages] = {}
    metrics: dict[str, Any] = {}
    rows = []
    for offset, width in enumerate(config.widths):
        study.seed(offset)
        model = mlp(width, n)
        init = _layer(config, model, queries, "1")
        trainer = Trainer(model, train_data, test_data, config.train, progress=config.progress)
        metrics[f"w{width}_test_accuracy"] = float(trainer.fit()["test_accuracy"])
        reports[width] = _preimages(config, model, width, queries)
        layer_metrics, layer_rows = _layer_metrics(width, reports[width], init)
        inits[width] = init
        metrics.update(layer_metrics)
        rows += layer_rows
    study.figure(
        _figure(config.widths, reports, inits),
        "preimages",
        "Share of singleton, compact and unbounded pre-images of the first layer before "
        "training, and of the first and second layer after training, per width; the time "
        "per query.",
    )
    study.table(rows, title="Pre-images per width and layer")
    narrow = [w for w in config.widths if w < n]
    wide = [w for w in config.widths if w >= 2 * n]
    if not config.input_box:
        worst = min((metrics[f"w{w}_layer1_unbounded"] for w in narrow), default=float("nan"))
        study.check("narrow_first_layer_unbounded", worst, ">= 1.0")
    bounded = [1.0 - metrics[f"w{w}_layer1_unbounded"] - metrics[f"w{w}_layer1_empty"]
               for w in config.widths]  # fmt: skip
    study.check(
        "bounded_share_grows_with_width", float(np.min(np.diff(bounded), initial=0.0)), ">= 0"
    )
    if wide:
        study.check(
            "wide_first_layer_singleton_at_init",
            metrics[f"w{wide[-1]}_init_layer1_singleton"],
            ">= 0.5",
        )
        study.check(
            "wide_first_layer_singleton", metrics[f"w{wide[-1]}_layer1_singleton"], ">= 0.5"
        )
    return study.finish(metrics)
