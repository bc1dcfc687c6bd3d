r"""``preimage run nuisance-info``: how much label information hides in :math:`z_n` (table 2).

Two fully invertible RevNets are trained on MNIST with the same architecture and recipe, one
with the cross-entropy (CE) and one with the independence cross-entropy (iCE). Each is frozen,
and a fresh nuisance classifier (3-layer ReLU MLP, 512 units) is trained on its nuisance
variables :math:`z_n`. Its test error measures the label information the logit classifier
ignores: the paper reports 0.34% for CE (the ignored part alone classifies digits better than
the logits) and 27.70% for iCE, at logit test errors of 0.39% and 0.38%.

Deviations, and why: the ``cpu`` budget trains a CPU-sized network for a few epochs (see
:mod:`preimage.studies.ce_ice_models`); the nuisance classifier sees standardised
:math:`z_n` (see :mod:`preimage.analysis.invariance`). The paper does not say how long the
post-hoc nuisance classifier is trained; we train it with Adam for ``nuisance_epochs`` epochs.

References:
    Jacobsen, Behrmann, Zemel, Bethge (2019), *Excessive Invariance Causes Adversarial
    Vulnerability*, section 4 and table 2, appendix D.2.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from preimage.analysis.invariance import train_nuisance_classifier
from preimage.data import subset
from preimage.studies import ce_ice_models as cim
from preimage.studies.kit import StudyRun

__all__ = ["PAPER_TABLE_2", "Config", "run"]

PAPER_TABLE_2: list[dict[str, Any]] = [
    {"objective": "paper CE", "logit test error %": 0.39, "nuisance test error %": 0.34},
    {"objective": "paper iCE", "logit test error %": 0.38, "nuisance test error %": 27.70},
]
"""Table 2 of the paper: MNIST test errors of the logits and of a classifier on :math:`z_n`."""


@dataclass(frozen=True)
class Config(cim.IceStudyConfig):
    """Settings of the nuisance-information study (defaults: the ``cpu`` budget).

    The MNIST, ``train``, ``model`` and ``ice`` fields are those of
    :class:`~preimage.studies.ce_ice_models.IceStudyConfig`; ``ice.nuisance_hidden`` sizes the
    post-hoc nuisance classifier too.

    Attributes:
        nuisance_epochs: epochs of the post-hoc nuisance classifier.
        n_train_error: training images the train errors are measured on.

    Example:
        >>> Config.for_budget("paper").model.blocks_per_stage
        16
    """

    nuisance_epochs: int = 10
    n_train_error: int = 10_000

    BUDGETS: ClassVar[dict[str, dict[str, Any]]] = {
        "smoke": {
            **cim.IceStudyConfig.BUDGETS["smoke"],
            "nuisance_epochs": 2,
            "n_train_error": 256,
        },
        "cpu": {},
        "paper": {**cim.MNIST_PAPER, "nuisance_epochs": 30, "n_train_error": 60_000},
    }


def run(
    config: Config, out_dir: str | os.PathLike[str], *, argv: Sequence[str] | None = None
) -> dict[str, Any]:
    """Run the study into ``out_dir`` and return its metrics."""
    recipe = cim.study_recipe(config, config.train)  # validated before the run opens
    m = config.model
    study = StudyRun(
        "nuisance-info", config, out_dir, argv=argv,
        title="Label information in the nuisance variables (table 2)",
        intro=f"Two fi-RevNets ({m.stages} stages x {m.blocks_per_stage} blocks, {m.hidden} "
        f"filters) trained on MNIST for {config.train.epochs} epochs, with cross-entropy (CE) and "
        f"independence cross-entropy (iCE). A fresh {config.ice.nuisance_hidden}-unit 3-layer "
        "nuisance classifier is then trained on the frozen nuisance variables z_n of each. Low "
        "nuisance error = the classifier ignores class information that is there (excessive "
        "invariance).",
    )  # fmt: skip
    study.seed()
    train, test = cim.load_mnist(config)
    train_eval = subset(train, config.n_train_error, config.seed + 2)
    metrics: dict[str, Any] = {"n_train": int(train[0].shape[0]), "n_test": int(test[0].shape[0])}
    rows = []
    for o, trained in cim.objective_models(study, config, (train, test), recipe):
        readout = train_nuisance_classifier(
            trained.model, train, test, hidden=config.ice.nuisance_hidden, depth=3,
            epochs=config.nuisance_epochs, seed=config.seed,
        )  # fmt: skip
        metrics.update(
            {
                f"{o}_logit_test_error": cim.error_on(trained.model.logits, test, study.device),
                f"{o}_logit_train_error": cim.error_on(
                    trained.model.logits, train_eval, study.device
                ),
                f"{o}_nuisance_test_error": readout.test_error,
                f"{o}_nuisance_train_error": readout.train_error,
                f"{o}_model_reused": trained.reused,
            }
        )
        rows.append({"objective": o.upper(), **{
            f"{part} {split} error %": 100 * metrics[f"{o}_{part}_{split}_error"]
            for part in ("logit", "nuisance") for split in ("test", "train")
        }})  # fmt: skip
        cim.training_figure(study, o, o.upper(), trained.history)
    study.heading("Table 2")
    study.table(
        [*rows, *PAPER_TABLE_2],
        title="Errors of the logit classifier and of a post-hoc classifier on z_n",
    )
    gap = 100 * abs(metrics["ice_logit_test_error"] - metrics["ce_logit_test_error"])
    metrics["logit_error_gap_points"] = gap
    study.check("ce_nuisance_test_error", metrics["ce_nuisance_test_error"], "<= 0.05")
    study.check("ice_nuisance_test_error", metrics["ice_nuisance_test_error"], ">= 0.20")
    study.check("logit_error_gap_points", gap, "<= 0.5")
    return study.finish(metrics)
