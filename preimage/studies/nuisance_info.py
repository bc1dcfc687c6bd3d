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

from preimage.analysis.invariance import train_nuisance_classifier
from preimage.report import Report, plots
from preimage.studies import _invariance_common as common

__all__ = ["Config", "run"]


@dataclass(frozen=True)
class Config(common.IceStudyConfig):
    """Settings of the nuisance-information study (defaults: the ``cpu`` budget).

    The MNIST, network, schedule and ``nuisance_hidden`` fields are those of
    :class:`~preimage.studies._invariance_common.IceStudyConfig`; ``nuisance_hidden`` sizes the
    post-hoc nuisance classifier too.

    Attributes:
        nuisance_epochs: epochs of the post-hoc nuisance classifier.
        n_train_error: training images the train errors are measured on.
        model_dir: a previous run directory whose ``checkpoints/ce`` and ``ice`` to reuse.
    """

    nuisance_epochs: int = 10
    n_train_error: int = 10_000
    model_dir: str | None = None

    BUDGETS: ClassVar[dict[str, dict[str, Any]]] = {
        "smoke": {
            **common.MNIST_SMOKE,
            "nuisance_hidden": 32,
            "nuisance_epochs": 2,
            "n_train_error": 256,
        },
        "cpu": {},
        "paper": {**common.MNIST_PAPER, "nuisance_epochs": 30, "n_train_error": 60_000},
    }


def run(
    config: Config, out_dir: str | os.PathLike[str], *, argv: Sequence[str] | None = None
) -> dict[str, Any]:
    """Run the study into ``out_dir`` and return its metrics.

    Example:
        >>> Config.for_budget("paper").blocks_per_stage
        16
    """
    run_dir, device = common.start_run(config, "nuisance-info", argv, out_dir)
    train, test = common.load_study_data(config)
    train_eval = common.subset(train, config.n_train_error, config.seed + 2)
    tcfg = common.study_train_config(config)
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
    for objective, trained in common.objective_models(
        run_dir, config, (train, test), tcfg, model_dir=config.model_dir
    ):
        model = trained.model
        logit_test = common.error_on(model.logits, test, device)
        logit_train = common.error_on(model.logits, train_eval, device)
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
            common.add_figure(
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
        common.Target(
            "ce_nuisance_test_error",
            metrics["ce_nuisance_test_error"],
            "<= 0.05",
            metrics["ce_nuisance_test_error"] <= 0.05,
        ),
        common.Target(
            "ice_nuisance_test_error",
            metrics["ice_nuisance_test_error"],
            ">= 0.20",
            metrics["ice_nuisance_test_error"] >= 0.20,
        ),
        common.Target("logit_error_gap_points", 100 * gap, "<= 0.5", 100 * gap <= 0.5),
    ]
    metrics.update(common.target_metrics(targets))
    run_dir.write_metrics(metrics)
    common.finish_report(
        report, run_dir, "nuisance-info: targets", metrics, targets, asdict(config)
    )
    return metrics
