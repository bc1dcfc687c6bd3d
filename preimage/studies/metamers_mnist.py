r"""``preimage run metamers-mnist``: metameric sampling attacks on CE- and iCE-trained fi-RevNets.

For a fully invertible RevNet :math:`F` trained on MNIST, a metamer
:math:`x_{met} = F^{-1}(z_s(a), z_n(b))` has exactly the logits of :math:`a` and the nuisance of
:math:`b`. With the cross-entropy (CE) the nuisance dominates what the metamer looks like: any
digit can be given any logits (figures 5 and 7), an invariance-based adversarial example. With
the independence cross-entropy (iCE) the logits carry the digit, and metamers keep the class of
their logit source.

The study draws metamer grids, nuisance interpolations (figure 7: keep :math:`z_s`, move
:math:`z_n` linearly to the nuisance of a target), and stores ``metamers.npz`` with, for each
objective ``o`` in ``ce``, ``ice``: ``{o}_x_met`` (N, 1, 28, 28), ``{o}_y_semantic`` (class of
the logit source :math:`a`) and ``{o}_y_nuisance`` (class of the nuisance source :math:`b`) for
N pairs of test images with different labels. An oracle classifier trained independently on raw
pixels (the ``cnn`` baseline) judges every metamer: the rate at which it names the nuisance
source's class and the rate at which it names the semantic source's class.

Deviations, and why: metamers are clipped to the pixel range :math:`[0, 1]` before they are
stored and judged (``F^{-1}`` of a mixed code can leave the data range, and an oracle for images
should see images); the fraction of pixels the clipping changed by more than 0.05 is reported as
``{o}_clipped_fraction``, and every figure caption states the share of clamped pixels. The
``cpu`` budget trains CPU-sized networks for a few epochs (see
:mod:`preimage.studies.ce_ice_models`).

References:
    Jacobsen, Behrmann, Zemel, Bethge (2019), *Excessive Invariance Causes Adversarial
    Vulnerability*, section 2.1 ("Attack on MNIST and ImageNet", figure 5), section 4
    ("Robustness under metameric sampling attack", figure 7), definition 3.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch
from torch import Tensor, nn

from preimage.attacks import ClassifierOracle, interpolate_nuisance, metamer_grid, metameric_sample
from preimage.report import plots
from preimage.studies import ce_ice_models as cim
from preimage.studies.kit import StudyRun, study_entry
from preimage.train import TrainConfig

__all__ = ["Config", "run"]


@dataclass(frozen=True)
class Config(cim.IceStudyConfig):
    """Settings of the metamers study (defaults: the ``cpu`` budget).

    The MNIST, ``train``, ``model`` and ``ice`` fields are those of
    :class:`~preimage.studies.ce_ice_models.IceStudyConfig`.

    Attributes:
        oracle_epochs: training epochs of the pixel-space oracle classifier.
        oracle_width: channels of the oracle CNN's first stage (16 at ``cpu``, to fit the
            budget; BENCHMARKS.md).
        n_pairs: metamer pairs with different labels to store and judge.
        grid_size: logit and nuisance sources per metamer grid.
        interpolation_steps: rows of the nuisance interpolation (figure 7).

    Example:
        >>> Config.for_budget("smoke").n_pairs
        64
    """

    oracle_epochs: int = 3
    oracle_width: int = 16
    n_pairs: int = 2000
    grid_size: int = 8
    interpolation_steps: int = 7

    BUDGETS: ClassVar[dict[str, dict[str, Any]]] = {
        "smoke": {
            **cim.IceStudyConfig.BUDGETS["smoke"],
            "oracle_epochs": 1,
            "oracle_width": 8,
            "n_pairs": 64,
            "grid_size": 4,
            "interpolation_steps": 4,
        },
        "cpu": {},
        "paper": {**cim.ICE_PAPER, "oracle_epochs": 10, "n_pairs": 10_000},
    }


def _one_per_class(labels: Tensor, k: int, offset: int) -> Tensor:
    picks = []
    for c in range(k):
        hits = (labels == (c + offset) % 10).nonzero().flatten()
        picks.append(int(hits[min(offset, len(hits) - 1)]) if len(hits) else c)
    return torch.tensor(picks)


def _clamp_note(raw: Tensor) -> str:
    return (
        f"Values were clamped to [0, 1] for display: {100 * plots.clamped_share(raw):.1f}% of "
        f"the metamer pixels lay outside (range {float(raw.min()):.2f} to {float(raw.max()):.2f})."
    )


@torch.no_grad()
def _judge(o: str, model: nn.Module, oracle: ClassifierOracle, pairs: dict[str, Tensor]) -> dict:
    """Metamers of the pairs, judged by the oracle; returns metrics and ``metamers.npz`` arrays."""
    x_sem, x_nui, y_sem, y_nui = pairs["x_sem"], pairs["x_nui"], pairs["y_sem"], pairs["y_nui"]
    chunks = zip(x_sem.split(256), x_nui.split(256), strict=True)
    raw = torch.cat([metameric_sample(model, a, b) for a, b in chunks])
    x_met = raw.clamp(0.0, 1.0)
    judged = oracle(x_met)
    return {
        f"{o}_oracle_nuisance_class_rate": float((judged == y_nui).float().mean()),
        f"{o}_oracle_semantic_class_rate": float((judged == y_sem).float().mean()),
        f"{o}_clipped_fraction": float(((raw - x_met).abs() > 0.05).float().mean()),
        f"{o}_max_logit_change_unclipped": float(
            (model.logits(raw[:256]) - model.logits(x_sem[:256])).abs().max()
        ),
        f"{o}_max_logit_change_clipped": float(
            (model.logits(x_met) - model.logits(x_sem)).abs().max()
        ),
        f"{o}_mean_l2_to_semantic_source": float((x_met - x_sem).flatten(1).norm(dim=1).mean()),
        f"{o}_mean_l2_to_nuisance_source": float((x_met - x_nui).flatten(1).norm(dim=1).mean()),
        "arrays": {
            f"{o}_x_met": x_met.cpu().numpy().astype(np.float32),
            f"{o}_y_semantic": y_sem.cpu().numpy(),
            f"{o}_y_nuisance": y_nui.cpu().numpy(),
        },
    }


@torch.no_grad()
def _figures(study: StudyRun, o: str, model: nn.Module, oracle: ClassifierOracle,
             sem: Tensor, nui: Tensor, steps: int) -> None:  # fmt: skip
    name = o.upper()
    study.heading(f"{name}-trained fi-RevNet")
    raw = metamer_grid(model, sem, nui)
    grid = raw.clamp(0.0, 1.0)
    predicted = oracle(grid.reshape(-1, *grid.shape[2:])).reshape(grid.shape[:2])
    title = f"{name}: metamers (corner: oracle's class; the model predicts the row's class)"
    fig = plots.metamer_grid(
        sem.cpu(), nui.cpu(), grid.cpu(), predicted=predicted.cpu(), title=title
    )
    study.figure(
        fig,
        f"metamers_{o}",
        f"{name} metamers: row = logit source, column = nuisance source; each cell has the "
        "logits of its row. The corner label is the independent oracle's class. "
        + _clamp_note(raw),
    )
    k = min(6, sem.shape[0])
    raw = interpolate_nuisance(model, sem[:k], nui[:1], steps=steps)
    images = torch.cat((raw.clamp(0.0, 1.0), nui[:1].expand(1, k, *nui.shape[1:])), dim=0)
    labels = [f"t={t:.2f}" for t in np.linspace(0, 1, steps)] + ["target"]
    title = f"{name}: z_s kept, z_n interpolated to the target's nuisance (figure 7)"
    study.figure(
        plots.image_grid(images.cpu(), row_labels=labels, title=title),
        f"interpolation_{o}",
        f"{name}: each column keeps the logits of its top image (t=0, the logit source itself) "
        "while z_n moves linearly to the nuisance of the target (last row). " + _clamp_note(raw),
    )


def _pairs(x: Tensor, y: Tensor, n: int, seed: int) -> dict[str, Tensor]:
    """``n`` (semantic, nuisance) source pairs of different labels."""
    i, j = (idx.to(x.device) for idx in cim.different_label_pairs(y.cpu(), n, seed))
    return {"x_sem": x[i], "x_nui": x[j], "y_sem": y[i], "y_nui": y[j]}


def _oracle_table(study: StudyRun, config: Config, metrics: dict[str, Any]) -> None:
    study.heading("Oracle judgement of the metamers")
    study.table(
        [{"objective": o.upper(),
          "logit test error %": 100 * metrics[f"{o}_logit_test_error"],
          "oracle says nuisance class %": 100 * metrics[f"{o}_oracle_nuisance_class_rate"],
          "oracle says semantic class %": 100 * metrics[f"{o}_oracle_semantic_class_rate"]}
         for o in cim.OBJECTIVES],
        title=f"{config.n_pairs} metamer pairs with different labels",
    )  # fmt: skip
    study.text(
        f"Oracle: {cim.BASELINE} on raw pixels, test error "
        f"{100 * metrics['oracle_test_error']:.2f}%. Arrays in metamers.npz."
    )


@study_entry(
    "metamers-mnist",
    title="Metameric sampling on MNIST: CE vs iCE",
    intro="Metamers x_met = F^-1(z_s(a), z_n(b)) have exactly the logits of a (the semantic "
    "source) and the nuisance of b. An oracle trained independently on raw pixels says which "
    "digit each metamer shows. CE-trained networks let the nuisance decide what the metamer "
    "looks like (invariance-based adversarial examples); iCE-trained ones should keep the "
    "semantic class. Metamers are clipped to [0, 1] before they are judged and stored.",
    check=cim.check_recipe,
)
def run(study: StudyRun, config: Config) -> dict[str, Any]:
    """Run the study into ``out_dir`` and return its metrics."""
    recipe = cim.study_recipe(config, config.train)
    study.seed()
    device = study.device
    train, test = cim.load_mnist(config)
    # The oracle has a recipe of its own; the fi-RevNets below keep the study's ``recipe``.
    oracle_recipe = TrainConfig(
        epochs=config.oracle_epochs, seed=config.seed + 11, device=config.device
    )
    oracle_model = cim.obtain_plain_classifier(
        study, "oracle", train, test, recipe=oracle_recipe, width=config.oracle_width,
        progress=config.progress,
    ).model  # fmt: skip
    oracle = ClassifierOracle(oracle_model, batch_size=512)
    metrics: dict[str, Any] = {
        "oracle_architecture": cim.BASELINE,
        "oracle_test_error": cim.error_on(oracle_model, test, device),
    }
    x_test, y_test = test[0].to(device), test[1].to(device)
    pairs = _pairs(x_test, y_test, config.n_pairs, config.seed + 3)
    grid_sem = x_test[_one_per_class(test[1], config.grid_size, 0).to(device)]
    grid_nui = x_test[_one_per_class(test[1], config.grid_size, 5).to(device)]
    arrays: dict[str, np.ndarray] = {}
    for o, trained in cim.objective_models(study, config, (train, test), recipe):
        judged = _judge(o, trained.model, oracle, pairs)
        arrays.update(judged.pop("arrays"))
        metrics.update(judged)
        metrics[f"{o}_logit_test_error"] = cim.error_on(trained.model.logits, test, device)
        metrics[f"{o}_model_reused"] = trained.reused
        _figures(study, o, trained.model, oracle, grid_sem, grid_nui, config.interpolation_steps)
    np.savez_compressed(study.path / "metamers.npz", **arrays)
    _oracle_table(study, config, metrics)
    # "Most metamers": a majority of all pairs, not merely more than the other class (with ten
    # classes an oracle may name a third digit).
    study.check("ce_oracle_nuisance_class_rate", metrics["ce_oracle_nuisance_class_rate"], "> 0.5")
    study.check(
        "ice_oracle_semantic_class_rate", metrics["ice_oracle_semantic_class_rate"], "> 0.5"
    )
    return study.finish(metrics)
