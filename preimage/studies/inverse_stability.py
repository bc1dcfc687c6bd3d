r"""``preimage run inverse-stability``: singular values of WideCIFAR vs ThinCIFAR (figure 3.4).

The two strided CNNs of thesis table 3.1 (:func:`~preimage.models.strided_cnn.strided_cnn`) are
trained, then linearised exactly at test inputs (:func:`~preimage.analysis.stability.
stability_profile`, float64, all singular values). For every convolution and every ReLU after
it the study reports the median over the inputs of the spectrum, of the number of non-zero
singular values (the rank; inputs minus rank are the invariant directions) and of the condition
number over the non-zero values, Wide vs Thin, as in figure 3.4.

Targets (thesis section 3.4.2): over the conv+ReLU layers of WideCIFAR "the largest singular
value grows" (layer 5 vs 1) and "the small singular values decrease significantly" (the
condition number after layer 6 exceeds that after layer 1); for ThinCIFAR "the number of
singular values decreases in layer 5, which cuts off the smallest singular values, resulting in
a lower condition number. Yet, there are more invariant directions" (Thin has fewer non-zero
singular values and a lower condition number than Wide after layer 5); both nets are trained
(test accuracy).

Deviations: CIFAR-10 is not available offline, so the default data are MNIST padded to 32x32
with its grey level copied into three channels (``channels=3``): the networks keep table 3.1's
three input maps and the linearisation its 3072 inputs, which is what decides where ReLU can
lower the rank (a layer cuts it only when fewer units are active than there are inputs).
``channels=1`` analyses 1024 inputs instead; then every layer up to 5 has at least 4096 units
and the cut moves to layer 6. ``dataset=cifar10`` uses the standard binary batches when they
are under the data root. The thesis trains with the Keras ``cifar10_cnn`` set-up; here Adam on
a subset for a few epochs (CPU budget), and the ``cpu`` budget takes the medians over 6 inputs
instead of 50 (``paper``: 50), because every input costs two full SVDs per layer of matrices
with 3072 columns.

References:
    Behrmann (thesis), *Invertibility and Domain Knowledge*, section 3.4.2, table 3.1,
    figure 3.4.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import torch.nn.functional as F
from matplotlib.figure import Figure
from torch import Tensor

from preimage.analysis.stability import LayerStability, stability_profile
from preimage.data import load_dataset
from preimage.errors import ConfigError
from preimage.models.strided_cnn import STRIDED_CNN_MAPS, strided_cnn
from preimage.studies.base import StudyConfig
from preimage.studies.kit import StudyRun, study_entry
from preimage.train import TrainConfig, Trainer
from preimage.train.checkpoint import save_checkpoint

__all__ = ["LAYERS", "Config", "median_summary", "run"]

LAYERS: tuple[str, ...] = tuple(f"{kind}{i}" for i in range(1, 7) for kind in ("conv", "relu"))
"""The analysed layers in order: each convolution and the ReLU after it."""


@dataclass(frozen=True)
class Config(StudyConfig):
    """Settings of the inverse-stability study (thesis section 3.4.2); defaults: ``cpu``.

    ``cpu`` estimate (2-core box, one thread): training about 1 min, linearisation and SVDs
    3-4.5 min per input for both nets, 20-30 minutes.

    Attributes:
        train: training of each network.
        dataset: ``"mnist"`` (padded to 32x32) or ``"cifar10"`` (local binary batches).
        image_size: side of the network's input (MNIST is padded to 32 and resized to this).
        channels: input maps for MNIST: its grey level copied into 1 or 3 channels (3: a grey
            digit as an RGB image, table 3.1's input layer, so the linearisation has 3072
            inputs as for CIFAR-10). CIFAR-10 always has 3.
        n_train: training images (``None``: all).
        n_test: test images for the accuracy.
        n_inputs: test inputs the medians are taken over (50 in the thesis).
    """

    train: TrainConfig = field(
        default_factory=lambda: TrainConfig(
            epochs=2, batch_size=64, lr=1e-3, optimizer="adam", weight_decay=0.0,
            max_shift=0, dequantize=False, lr_step=30,
        )
    )  # fmt: skip
    dataset: str = "mnist"
    image_size: int = 32
    channels: int = 3
    n_train: int | None = 12_000
    n_test: int = 1000
    n_inputs: int = 6

    BUDGETS: ClassVar[dict[str, dict[str, Any]]] = {
        "smoke": {
            "train.epochs": 1,
            "train.max_steps_per_epoch": 3,
            "image_size": 8,
            "n_train": 256,
            "n_test": 64,
            "n_inputs": 2,
        },
        "cpu": {},
        "paper": {"train.epochs": 50, "n_train": None, "n_test": 10_000, "n_inputs": 50},
    }


def _check(config: Config) -> None:
    if config.dataset not in ("mnist", "cifar10"):
        raise ConfigError(f"dataset must be mnist or cifar10, got {config.dataset!r}")
    if config.channels not in (1, 3):
        raise ConfigError(f"channels must be 1 or 3, got {config.channels!r}")


def _images(config: Config, split: str, limit: int | None) -> tuple[Tensor, Tensor]:
    data = load_dataset(config.dataset, split, data_dir=config.data_dir)  # type: ignore[arg-type]
    x, y = data.images[:limit], data.labels[:limit]
    if x.shape[-1] == 28:
        x = F.pad(x, (2, 2, 2, 2))
    if config.dataset == "mnist" and config.channels != 1:
        x = x.expand(-1, config.channels, -1, -1).contiguous()
    if x.shape[-1] != config.image_size:
        x = F.interpolate(x, size=config.image_size, mode="area")
    return x, y


def median_summary(records: Sequence[Sequence[LayerStability]]) -> list[dict[str, Any]]:
    """Per layer, the medians over inputs of rank, condition, largest and smallest non-zero
    singular value, and the index-wise median spectrum.

    Args:
        records: one :func:`stability_profile` list per input (same layers).

    Example:
        >>> import torch
        >>> from preimage.analysis.stability import LayerStability
        >>> r = [[LayerStability("a", 2, 2, torch.tensor([s, 0.0]), True, 1, 1, 1.0)]
        ...      for s in (1.0, 2.0, 4.0)]
        >>> row = median_summary(r)[0]
        >>> row["rank"], row["sigma_max"], row["spectrum"].tolist()
        (1.0, 2.0, [2.0, 0.0])
    """
    rows = []
    for per_input in zip(*records, strict=True):
        spectra = np.stack([r.singular_values.cpu().numpy() for r in per_input])
        ranks = np.array([r.rank for r in per_input], dtype=np.float64)
        smallest = [r.singular_values[r.rank - 1].item() if r.rank else 0.0 for r in per_input]
        rows.append(
            {
                "layer": per_input[0].layer,
                "units": per_input[0].outputs,
                "rank": float(np.median(ranks)),
                "condition": float(np.nanmedian([r.condition for r in per_input])),
                "sigma_max": float(np.median(spectra[:, 0])),
                "sigma_min_nonzero": float(np.median(smallest)),
                "spectrum": np.median(spectra, axis=0),
            }
        )
    return rows


def _figure(summaries: dict[str, list[dict[str, Any]]]) -> Figure:
    fig = Figure(figsize=(13, 7.5))
    grid = fig.add_gridspec(3, 3)
    colours = {"wide": "C0", "thin": "C3"}
    for column, (variant, rows) in enumerate(summaries.items()):
        ax = fig.add_subplot(grid[:, column])
        for row in rows:
            if row["layer"].startswith("relu"):
                positive = row["spectrum"][row["spectrum"] > 0]
                ax.semilogy(positive, label=f"layer {row['layer'][4:]}")
        ax.set_title(f"{variant.capitalize()}: median singular values after conv+ReLU")
        ax.set_xlabel("index")
        ax.set_ylabel("singular value")
        ax.legend(fontsize=8)
    labels = [row["layer"] for row in next(iter(summaries.values()))]
    for index, (key, title) in enumerate(
        [("units", "output units"), ("rank", "non-zero singular values"),
         ("condition", "condition number")]
    ):  # fmt: skip
        ax = fig.add_subplot(grid[index, 2])
        for variant, rows in summaries.items():
            ax.plot([row[key] for row in rows], marker="o", color=colours[variant], label=variant)
        if key != "rank":
            ax.set_yscale("log")
        ax.set_title(title, fontsize=9)
        ax.set_xticks(range(len(labels)), labels if index == 2 else [], rotation=60, fontsize=7)
        ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


@study_entry(
    "inverse-stability",
    title="inverse-stability: singular values of WideCIFAR vs ThinCIFAR (figure 3.4)",
    check=_check,
)
def run(study: StudyRun, config: Config) -> dict[str, Any]:
    """Train WideCIFAR and ThinCIFAR, linearise them at test inputs, compare their spectra."""
    maps = 3 if config.dataset == "cifar10" else config.channels
    study.text(
        f"The strided CNNs of table 3.1 trained on {config.dataset} "
        f"({maps}x{config.image_size}x{config.image_size}); every convolution and ReLU is analysed "
        f"through the exact linearisation of the network up to it, at {config.n_inputs} "
        "test inputs (medians)."
    )
    train_data = _images(config, "train", config.n_train)
    x_test, y_test = _images(config, "test", config.n_test)
    summaries: dict[str, list[dict[str, Any]]] = {}
    metrics: dict[str, Any] = {"inputs": int(x_test[0].numel())}
    for offset, variant in enumerate(STRIDED_CNN_MAPS):
        study.seed(offset)
        model = strided_cnn(variant, in_channels=x_test.shape[1], image_size=config.image_size)  # type: ignore[arg-type]
        trainer = Trainer(
            model, train_data, (x_test, y_test), config.train, progress=config.progress
        )
        metrics[f"{variant}_test_accuracy"] = float(trainer.fit()["test_accuracy"])
        save_checkpoint(study.checkpoint_path(variant), model=model)
        model = model.cpu().double().eval()
        records = [
            stability_profile(model, x[None].double(), layers=LAYERS)
            for x in x_test[: config.n_inputs]
        ]
        summaries[variant] = median_summary(records)
        for row in summaries[variant]:
            for key in ("units", "rank", "condition", "sigma_max", "sigma_min_nonzero"):
                metrics[f"{variant}_{row['layer']}_{key}"] = row[key]
    np.savez(
        study.path / "spectra.npz",
        **{f"{v}_{r['layer']}": r["spectrum"] for v, rows in summaries.items() for r in rows},
    )
    study.figure(
        _figure(summaries),
        "spectra",
        "Left, middle: median singular values of the linearisation after each conv+ReLU layer. "
        "Right: output units, non-zero singular values and condition number per layer "
        "(conv and ReLU separately), Wide (blue) vs Thin (red); medians over the test inputs.",
    )
    study.table(
        [{"net": v, **{k: r[k] for k in r if k != "spectrum"}} for v, rows in summaries.items()
         for r in rows],
        title="Per-layer medians",
    )  # fmt: skip
    m = metrics
    study.check(
        "wide_sigma_max_grows", m["wide_relu5_sigma_max"] / m["wide_relu1_sigma_max"], "> 1"
    )
    study.check(
        "wide_condition_grows", m["wide_relu6_condition"] / m["wide_relu1_condition"], "> 1"
    )
    study.check("thin_fewer_nonzero_layer5", m["thin_relu5_rank"] - m["wide_relu5_rank"], "< 0")
    study.check(
        "thin_lower_condition_layer5", m["thin_relu5_condition"] / m["wide_relu5_condition"], "< 1"
    )
    for variant in STRIDED_CNN_MAPS:
        study.check(f"{variant}_test_accuracy", m[f"{variant}_test_accuracy"], ">= 0.9")
    return study.finish(metrics)
