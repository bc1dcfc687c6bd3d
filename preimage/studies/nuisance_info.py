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

import io
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch

from preimage.analysis.ice_game import PROBE_LENGTHS, probe_length_curve
from preimage.analysis.invariance import nuisance_features, train_nuisance_classifier
from preimage.data import load_train_test, subset
from preimage.report import plots
from preimage.runs import atomic_write_bytes
from preimage.studies import ce_ice_models as cim
from preimage.studies.kit import StudyRun, study_entry

__all__ = ["PAPER_TABLE_2", "Config", "run"]

Pair = tuple[torch.Tensor, torch.Tensor]

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
        probe_lengths: probe training lengths (epochs) of the probe-length curve.
        probe_n_train: training images of the probe-length curve's probes.
        n_codes_train: MNIST training-split images whose codes go to ``codes.npz``.

    Example:
        >>> Config.for_budget("paper").model.blocks_per_stage
        16
    """

    nuisance_epochs: int = 10
    n_train_error: int = 10_000
    probe_lengths: tuple[int, ...] = PROBE_LENGTHS
    probe_n_train: int = 20_000
    n_codes_train: int = 10_000

    BUDGETS: ClassVar[dict[str, dict[str, Any]]] = {
        "smoke": {
            **cim.IceStudyConfig.BUDGETS["smoke"],
            "nuisance_epochs": 2,
            "n_train_error": 256,
            "probe_lengths": (1, 2),
            "probe_n_train": 256,
        },
        "cpu": {},
        "paper": {**cim.ICE_PAPER, "nuisance_epochs": 30, "n_train_error": 60_000},
    }


@study_entry(
    "nuisance-info",
    title="Label information in the nuisance variables (table 2)",
    check=cim.check_recipe,
)
def run(study: StudyRun, config: Config) -> dict[str, Any]:
    """Run the study into ``out_dir`` and return its metrics."""
    m = config.model
    study.text(
        f"Two fi-RevNets ({m.stages} stages x {m.blocks_per_stage} blocks, {m.hidden} "
        f"filters) trained on MNIST for {config.train.epochs} epochs, with cross-entropy (CE) and "
        f"independence cross-entropy (iCE). A fresh {config.ice.nuisance_hidden}-unit 3-layer "
        "nuisance classifier is then trained on the frozen nuisance variables z_n of each. Low "
        "nuisance error = the classifier ignores class information that is there (excessive "
        "invariance)."
    )
    recipe = cim.study_recipe(config, config.train)
    study.seed()
    train, test = cim.load_mnist(config)
    train_eval = subset(train, config.n_train_error, config.seed + 2)
    metrics: dict[str, Any] = {"n_train": int(train[0].shape[0]), "n_test": int(test[0].shape[0])}
    rows, curves = [], []
    probe_train = subset(train, config.probe_n_train, config.seed + 5)
    codes_train, codes_test = _codes_data(config)
    codes: dict[str, np.ndarray] = {}
    for o, trained in cim.objective_models(study, config, (train, test), recipe):
        for row in probe_length_curve(
            trained.model, probe_train, test, lengths=config.probe_lengths,
            hidden=config.ice.nuisance_hidden, seed=config.seed,
        ):  # fmt: skip
            curves.append({"objective": o.upper(), **row})
        codes.update(_codes(o, trained.model, codes_train, codes_test))
        metrics.update(_errors(study, config, o, trained, (train, test), train_eval))
        rows.append({"objective": o.upper(), **{
            f"{part} {split} error %": 100 * metrics[f"{o}_{part}_{split}_error"]
            for part in ("logit", "nuisance") for split in ("test", "train")
        }})  # fmt: skip
        cim.training_figure(study, o, o.upper(), trained.history)
    buffer = io.BytesIO()
    np.savez(buffer, **codes)
    atomic_write_bytes(study.path / "codes.npz", buffer.getvalue())
    metrics.update(_curve_report(study, config, curves))
    study.heading("Table 2")
    study.table(
        [*rows, *PAPER_TABLE_2],
        title="Errors of the logit classifier and of a post-hoc classifier on z_n",
    )
    gap = 100 * abs(metrics["ice_logit_test_error"] - metrics["ce_logit_test_error"])
    metrics["logit_error_gap_points"] = gap
    study.check("ce_nuisance_test_error", metrics["ce_nuisance_test_error"], "<= 0.05")
    study.check("ice_nuisance_test_error", metrics["ice_nuisance_test_error"], ">= 0.20")
    study.check("logit_error_gap_points", gap, "<= 1.0")
    return study.finish(metrics)


def _codes_data(config: Config) -> tuple[Pair, Pair]:
    """The images of ``codes.npz``: ``n_codes_train`` of the MNIST training split, all 10 000
    test images, embedded like the models' inputs."""
    train, test = load_train_test(
        "mnist", n_train=config.n_codes_train, n_test=None, seed=config.seed + 6,
        data_dir=config.data_dir,
    )  # fmt: skip
    if config.embed:
        return cim.model_inputs(train), cim.model_inputs(test)
    return train, test


def _errors(
    study: StudyRun,
    config: Config,
    objective: str,
    trained: cim.TrainedModel,
    data: tuple[Pair, Pair],
    train_eval: Pair,
) -> dict[str, Any]:
    """Logit errors and the table-2 post-hoc nuisance classifier of one objective."""
    train, test = data
    readout = train_nuisance_classifier(
        trained.model, train, test, hidden=config.ice.nuisance_hidden, depth=3,
        epochs=config.nuisance_epochs, seed=config.seed,
    )  # fmt: skip
    logits = trained.model.logits
    return {
        f"{objective}_logit_test_error": cim.error_on(logits, test, study.device),
        f"{objective}_logit_train_error": cim.error_on(logits, train_eval, study.device),
        f"{objective}_nuisance_test_error": readout.test_error,
        f"{objective}_nuisance_train_error": readout.train_error,
        f"{objective}_model_reused": trained.reused,
    }


def _curve_report(
    study: StudyRun, config: Config, curves: list[dict[str, Any]]
) -> dict[str, float]:
    """The probe-length figure and table; returns each objective's lowest error on it."""
    study.heading("Probe-length curve")
    study.figure(
        plots.line_plot(
            list(config.probe_lengths),
            {
                f"{o.upper()}, {'standardised' if std else 'raw'} z_n": [
                    100 * r["test_error"] for r in curves
                    if r["objective"] == o.upper() and r["standardized"] == std
                ]
                for o in cim.OBJECTIVES for std in (True, False)
            },
            xlabel="probe training epochs", ylabel="nuisance test error %",
            title="Post-hoc nuisance error over probe training length",
        ),
        "probe_length_curve",
        f"Test error of fresh probes on z_n ({config.probe_n_train} training codes) after each "
        "training length, with and without standardised inputs. Error that falls with longer "
        "training was hidden, not removed.",
    )  # fmt: skip
    study.table(
        [{**r, "test_error": 100 * r["test_error"]} for r in curves],
        title="Probe-length curve (test error %)",
    )
    return {
        f"{o}_nuisance_test_error_min": min(
            r["test_error"] for r in curves if r["objective"] == o.upper()
        )
        for o in cim.OBJECTIVES
    }


@torch.no_grad()
def _codes(
    objective: str,
    model: torch.nn.Module,
    train: tuple[torch.Tensor, torch.Tensor],
    test: tuple[torch.Tensor, torch.Tensor],
) -> dict[str, np.ndarray]:
    """The ``codes.npz`` entries of one objective: float32 z_n and logits, int64 labels."""
    logits = torch.cat([model.logits(x) for x in test[0].split(512)])
    return {
        f"{objective}_zn_train": nuisance_features(model, train[0]).float().cpu().numpy(),
        f"{objective}_zn_test": nuisance_features(model, test[0]).float().cpu().numpy(),
        f"{objective}_y_train": train[1].to(torch.int64).cpu().numpy(),
        f"{objective}_y_test": test[1].to(torch.int64).cpu().numpy(),
        f"{objective}_logits_test": logits.float().cpu().numpy(),
    }
