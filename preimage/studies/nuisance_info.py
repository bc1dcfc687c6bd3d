r"""``preimage run nuisance-info``: how much label information hides in :math:`z_n` (table 2).

Two fully invertible RevNets are trained on MNIST with the same architecture and recipe, one
with the cross-entropy (CE) and one with the independence cross-entropy (iCE). Each is frozen,
and a fresh nuisance classifier (3-layer ReLU MLP, 512 units) is trained on its nuisance
variables :math:`z_n`. Its test error measures the label information the logit classifier
ignores: the paper reports 0.34% for CE (the ignored part alone classifies digits better than
the logits) and 27.70% for iCE, at logit test errors of 0.39% and 0.38%.

Deviations, and why: the ``cpu`` budget trains a CPU-sized network for a few epochs (see
:mod:`preimage.studies._invariance_common`); the nuisance classifier sees standardised
:math:`z_n` (see :mod:`preimage.analysis.invariance`). The paper does not say how long the
post-hoc nuisance classifier is trained; we train it with Adam for ``nuisance_epochs`` epochs.

References:
    Jacobsen, Behrmann, Zemel, Bethge (2019), *Excessive Invariance Causes Adversarial
    Vulnerability*, section 4 and table 2, appendix D.2.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any, ClassVar

from preimage.analysis.invariance import classification_error, train_nuisance_classifier
from preimage.report import Report, plots
from preimage.runs import RunDir
from preimage.studies._invariance_common import (
    OBJECTIVES,
    Target,
    add_figure,
    finish_report,
    firevnet_options,
    load_mnist_subset,
    obtain_firevnet,
    subset,
    target_metrics,
    train_config,
)
from preimage.studies.base import StudyConfig
from preimage.train import resolve_device

__all__ = ["Config", "run"]


@dataclass(frozen=True)
class Config(StudyConfig):
    """Settings of the nuisance-information study (defaults: the ``cpu`` budget).

    Attributes:
        n_train: MNIST training images (``None``: all 60k).
        n_test: MNIST test images (``None``: all 10k).
        train_split: ``"train"``; the smoke budget trains on part of the test split (see
            :func:`~preimage.studies._invariance_common.load_mnist_subset`).
        epochs: training epochs of each fi-RevNet (paper: 100).
        lr_step: epochs between learning-rate decays (paper: 30).
        stages: fi-RevNet stages (paper: 3).
        blocks_per_stage: RevNet blocks per stage (paper: 16).
        hidden: filters per coupling layer (paper: 128).
        nuisance_hidden: units of the nuisance classifiers (paper: 512).
        nuisance_epochs: epochs of the post-hoc nuisance classifier.
        n_train_error: training images the train errors are measured on.
        model_dir: a previous run directory whose ``checkpoints/ce`` and ``ice`` to reuse.
    """

    n_train: int | None = None
    n_test: int | None = None
    train_split: str = "train"
    epochs: int = 10
    lr_step: int = 4
    stages: int = 3
    blocks_per_stage: int = 2
    hidden: int = 32
    nuisance_hidden: int = 512
    nuisance_epochs: int = 10
    n_train_error: int = 10_000
    model_dir: str | None = None

    BUDGETS: ClassVar[dict[str, dict[str, Any]]] = {
        "smoke": {
            "n_train": 384,
            "n_test": 256,
            "train_split": "test",
            "epochs": 1,
            "lr_step": 1,
            "blocks_per_stage": 1,
            "hidden": 8,
            "nuisance_hidden": 32,
            "nuisance_epochs": 2,
            "n_train_error": 256,
        },
        "cpu": {},
        "paper": {
            "epochs": 100,
            "lr_step": 30,
            "blocks_per_stage": 16,
            "hidden": 128,
            "nuisance_epochs": 30,
            "n_train_error": 60_000,
        },
    }


def run(
    config: Config, out_dir: str | os.PathLike[str], *, argv: Sequence[str] | None = None
) -> dict[str, Any]:
    """Run the study into ``out_dir`` and return its metrics.

    Example:
        >>> Config.for_budget("paper").blocks_per_stage
        16
    """
    run_dir = RunDir(out_dir)
    run_dir.write_config(asdict(config), argv=argv, seed=config.seed, command="run nuisance-info")
    device = resolve_device(config.device)
    train, test = load_mnist_subset(
        config.data_dir,
        config.n_train,
        config.n_test,
        config.seed,
        train_split=config.train_split,
    )
    train_eval = subset(train, config.n_train_error, config.seed + 2)
    tcfg = train_config(
        config.epochs, seed=config.seed, device=config.device, lr_step=config.lr_step
    )
    options = firevnet_options(config.stages, config.blocks_per_stage, config.hidden)
    report = Report("Label information in the nuisance variables (table 2)")
    report.add_text(
        f"Two fi-RevNets ({config.stages} stages x {config.blocks_per_stage} blocks, "
        f"{config.hidden} filters) trained on {train[0].shape[0]} MNIST images for "
        f"{config.epochs} epochs, with cross-entropy (CE) and independence cross-entropy (iCE). "
        f"A fresh {config.nuisance_hidden}-unit 3-layer nuisance classifier is then trained on "
        "the frozen nuisance variables z_n of each. Low nuisance error = the classifier ignores "
        "class information that is there (excessive invariance)."
    )
    metrics: dict[str, Any] = {"n_train": int(train[0].shape[0]), "n_test": int(test[0].shape[0])}
    rows = []
    for objective in OBJECTIVES:
        trained = obtain_firevnet(
            run_dir,
            objective,
            objective,
            train,
            test,
            model_options=options,
            config=tcfg,
            nuisance_hidden=config.nuisance_hidden,
            model_dir=config.model_dir,
            progress=config.progress,
        )
        model = trained.model
        logit_test = classification_error(model.logits, test[0].to(device), test[1].to(device))
        logit_train = classification_error(
            model.logits, train_eval[0].to(device), train_eval[1].to(device)
        )
        readout = train_nuisance_classifier(
            model,
            train,
            test,
            hidden=config.nuisance_hidden,
            depth=3,
            epochs=config.nuisance_epochs,
            seed=config.seed,
        )
        metrics.update(
            {
                f"{objective}_logit_test_error": logit_test,
                f"{objective}_logit_train_error": logit_train,
                f"{objective}_nuisance_test_error": readout.test_error,
                f"{objective}_nuisance_train_error": readout.train_error,
                f"{objective}_model_reused": trained.reused,
            }
        )
        rows.append(
            {
                "objective": objective.upper(),
                "logit test error %": 100 * logit_test,
                "logit train error %": 100 * logit_train,
                "nuisance test error %": 100 * readout.test_error,
                "nuisance train error %": 100 * readout.train_error,
            }
        )
        if trained.history:
            fig = plots.training_curves(trained.history)
            add_figure(
                report, run_dir, fig, f"training_{objective}", f"{objective.upper()} training."
            )
    report.add_heading("Table 2")
    paper = [
        {"objective": "paper CE", "logit test error %": 0.39, "nuisance test error %": 0.34},
        {"objective": "paper iCE", "logit test error %": 0.38, "nuisance test error %": 27.70},
    ]
    report.add_table(
        [*rows, *paper],
        title="Errors of the logit classifier and of a post-hoc classifier on z_n",
    )
    gap = abs(metrics["ice_logit_test_error"] - metrics["ce_logit_test_error"])
    metrics["logit_error_gap_points"] = 100 * gap
    targets = [
        Target(
            "ce_nuisance_test_error",
            metrics["ce_nuisance_test_error"],
            "<= 0.05",
            metrics["ce_nuisance_test_error"] <= 0.05,
        ),
        Target(
            "ice_nuisance_test_error",
            metrics["ice_nuisance_test_error"],
            ">= 0.20",
            metrics["ice_nuisance_test_error"] >= 0.20,
        ),
        Target("logit_error_gap_points", 100 * gap, "<= 0.5", 100 * gap <= 0.5),
    ]
    metrics.update(target_metrics(targets))
    run_dir.write_metrics(metrics)
    finish_report(report, run_dir, "nuisance-info: targets", metrics, targets, asdict(config))
    return metrics
