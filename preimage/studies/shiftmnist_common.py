r"""The shiftMNIST experiment shared by ``shiftmnist-binary`` and ``shiftmnist-texture``.

Three classifiers are trained on :math:`\mathcal{D}_{Train}` (MNIST plus a planted feature that
predicts the label perfectly) and tested on :math:`\mathcal{D}_{Adv}` (the planted feature
removed or randomised): the non-invertible ``cnn`` baseline with cross-entropy (the paper's CE
ResNet), a fully invertible RevNet with cross-entropy and the same fi-RevNet with the
independence cross-entropy. A cross-entropy model may use the planted feature alone and become
invariant to the digit (excessive invariance); under :math:`\mathcal{D}_{Adv}` it then fails.
iCE removes label information from :math:`z_n`, so the digit evidence must reach the logits
(theorem 6), and the :math:`\mathcal{D}_{Adv}` error drops (figure 8: by 38.33 points on binary
and 27.84 on textured shiftMNIST).

Deviations, and why: no random-shift augmentation (appendix D.2 uses shifts of 3 pixels on
MNIST): a shift moves the binary code to another class's row and crops it at the border, which
would destroy the planted feature the experiment is about; to treat both variants alike the
texture variant is trained without shifts too. The ``cpu`` budget trains CPU-sized networks for
a few epochs.

References:
    Jacobsen, Behrmann, Zemel, Bethge (2019), *Excessive Invariance Causes Adversarial
    Vulnerability*, section 3 (theorem 6), section 4 ("shiftMNIST") and figure 8.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor

from preimage.data import load_textures, make_shiftmnist
from preimage.report import Report, plots
from preimage.studies import _invariance_common as common

__all__ = ["PAPER", "PAPER_RESULTS", "SMOKE", "ShiftConfig", "load_shift_splits", "run_shift"]

PAPER_RESULTS: dict[str, dict[str, tuple[float, float]]] = {
    "binary": {"cnn": (0.00, 73.80), "ce": (0.00, 57.09), "ice": (0.02, 34.73)},
    "texture": {"cnn": (0.00, 87.83), "ce": (0.18, 73.71), "ice": (0.53, 59.99)},
}
"""Figure 8: (D_train error %, D_adv error %) of the CE ResNet, CE and iCE fi-RevNets."""

SMOKE: dict[str, Any] = {
    **common.MNIST_SMOKE,
    "nuisance_hidden": 32,
    "cnn_width": 8,
    "n_train_error": 256,
}
"""Overrides of the ``smoke`` budget shared by both variants."""
PAPER: dict[str, Any] = {**common.MNIST_PAPER, "n_train_error": 60_000}
"""Overrides of the ``paper`` budget (appendix D.2 architecture and schedule)."""


@dataclass(frozen=True)
class ShiftConfig(common.IceStudyConfig):
    """Settings shared by both shiftMNIST studies (defaults: the ``cpu`` budget).

    The MNIST, network, schedule and ``nuisance_hidden`` fields are those of
    :class:`~preimage.studies._invariance_common.IceStudyConfig` (``n_test`` images make both
    the held-out and the adversarial split); the budgets are :data:`SMOKE` and :data:`PAPER`.

    Attributes:
        cnn_width: channels of the baseline CNN's first stage (16 at ``cpu``: the width-32
            CNN trained at about 130 samples/s on one shared core, too slow for the budget).
        n_train_error: training images the D_train error is measured on.
        texture_dir: a Describable Textures Dataset folder (texture variant; ``None``: the
            textures bundled with scikit-image).
        model_dir: a previous run directory whose checkpoints to reuse.
    """

    epochs: int = 8
    lr_step: int = 3
    cnn_width: int = 16
    n_train_error: int = 10_000
    texture_dir: str | None = None
    model_dir: str | None = None

    BUDGETS: ClassVar[dict[str, dict[str, Any]]] = {"smoke": SMOKE, "cpu": {}, "paper": PAPER}


def load_shift_splits(config: ShiftConfig, variant: str) -> dict[str, tuple[Tensor, Tensor]]:
    """``train``, ``test`` (held-out :math:`\\mathcal{D}_{Train}`) and ``adv`` splits."""
    (x_tr, y_tr), (x_te, y_te) = common.load_study_data(config)
    bank = load_textures(config.texture_dir, seed=config.seed) if variant == "texture" else None
    out = {}
    for split, (x, y) in (("train", (x_tr, y_tr)), ("test", (x_te, y_te)), ("adv", (x_te, y_te))):
        out[split] = make_shiftmnist(
            x, y, variant=variant, split=split, seed=config.seed, textures=bank
        )  # type: ignore[arg-type]
    return out


def run_shift(
    config: ShiftConfig,
    out_dir: str | os.PathLike[str],
    *,
    variant: str,
    min_gain_points: float,
    argv: Sequence[str] | None = None,
) -> dict[str, Any]:
    """Train the three models on shiftMNIST ``variant`` and measure D_train / D_adv errors."""
    run_dir, device = common.start_run(config, f"shiftmnist-{variant}", argv, out_dir)
    splits = load_shift_splits(config, variant)
    train, test = splits["train"], splits["test"]
    tcfg = common.study_train_config(config, max_shift=0)
    report = Report(f"{variant.capitalize()} shiftMNIST (figure 8)")
    report.add_text(
        f"Models are trained on D_train ({train[0].shape[0]} images with the planted "
        f"{'binary pixel code' if variant == 'binary' else 'class-coupled background texture'}) "
        "and tested on D_adv, where the planted feature "
        f"{'is removed' if variant == 'binary' else 'is paired with digits at random'}. "
        "An excessively invariant classifier ignores the digit and fails on D_adv."
    )
    ex = torch.stack([splits["train"][0][:8], splits["adv"][0][:8]])
    fig = plots.image_grid(ex, row_labels=["D_train", "D_adv"], title="shiftMNIST examples")
    common.add_figure(
        report, run_dir, fig, "examples", "Examples of D_train (top) and D_adv (bottom)."
    )

    train_eval = common.subset(train, config.n_train_error, config.seed + 2)
    models: dict[str, Any] = {}
    histories: dict[str, list[dict[str, Any]]] = {}
    cnn, arch, histories["cnn"] = common.obtain_plain_classifier(
        run_dir,
        f"shift_{variant}_cnn",
        train,
        test,
        config=tcfg,
        model_options={"width": config.cnn_width},
        progress=config.progress,
    )
    models["cnn"] = cnn
    for objective, trained in common.objective_models(
        run_dir, config, (train, test), tcfg, model_dir=config.model_dir, prefix=f"shift_{variant}_"
    ):
        models[objective] = trained.model.logits
        histories[objective] = trained.history
    metrics: dict[str, Any] = {"baseline_architecture": arch}
    rows = []
    labels = {"cnn": f"CE {arch}", "ce": "CE fi-RevNet", "ice": "iCE fi-RevNet"}
    for key, fn in models.items():
        errors = {
            split: common.error_on(fn, data, device)
            for split, data in (("train", train_eval), ("test", test), ("adv", splits["adv"]))
        }
        for split, err in errors.items():
            metrics[f"{key}_{split}_error"] = err
        paper = PAPER_RESULTS[variant][key]
        rows.append(
            {
                "model": labels[key],
                "D_train error %": 100 * errors["train"],
                "D_train held-out error %": 100 * errors["test"],
                "D_adv error %": 100 * errors["adv"],
                "paper D_train %": paper[0],
                "paper D_adv %": paper[1],
            }
        )
    gain = 100 * (metrics["ce_adv_error"] - metrics["ice_adv_error"])
    metrics["ice_gain_points"] = gain
    report.add_heading("Errors")
    fig = plots.grouped_bars(
        [row["model"] for row in rows],
        {
            "D_train held-out": [row["D_train held-out error %"] for row in rows],
            "D_adv": [row["D_adv error %"] for row in rows],
            "D_adv, paper": [row["paper D_adv %"] for row in rows],
        },
        ylabel="error %",
        title=f"{variant} shiftMNIST",
    )
    common.add_figure(
        report, run_dir, fig, "errors", "Errors of the three models, with the paper's D_adv."
    )
    report.add_table(rows, title=f"{variant} shiftMNIST: errors (figure 8)")
    targets = [
        common.Target("ice_gain_points", gain, f">= {min_gain_points:g}", gain >= min_gain_points),
    ]
    metrics.update(common.target_metrics(targets))
    # Reused checkpoints may carry no history; there is nothing to draw for them.
    drawn = {key: history for key, history in histories.items() if history}
    if drawn:
        report.add_heading("Training")
    for key, history in drawn.items():
        common.add_figure(
            report,
            run_dir,
            plots.training_curves(history),
            f"training_{key}",
            f"{labels[key]}: training and held-out D_train curves per epoch.",
        )
    run_dir.write_metrics(metrics)
    common.finish_report(
        report, run_dir, f"shiftmnist-{variant}: targets", metrics, targets, asdict(config)
    )
    return metrics
