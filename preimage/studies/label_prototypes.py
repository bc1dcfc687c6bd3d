r"""``preimage run label-prototypes``: transmitting from :math:`Y` to :math:`X` (figure 4(b)).

A model trained with weight decay (the paper's B+) is run "in the reverse direction": for each
label, an input drawn from :math:`N(\mu, \sigma^2)` around the population mean is moved down
that label's cross-entropy until the model is confident to 0.9995
(:func:`~preimage.attacks.unbounded.class_prototypes`). The paper recovers *prototypical*
digits, unlike the fooling images of unregularised models (Nguyen et al. 2015), "because we
have reduced the excess rate of the channel". The same is done for the unregularised model A.

Prototypicality is measured as the fraction of labels whose prototype, minus the population
mean, has the highest cosine similarity with its own class's mean image (minus the population
mean) among the ten classes. Targets: model B's prototypes are prototypical for at least half of
the labels and more often than model A's.

Deviations: the ``cpu`` budget uses a gradient step of 0.1 (the paper: 1e-2 on ZCA-whitened
SVHN, ``paper`` budget); MNIST at 32 x 32 replaces SVHN when its files are absent.

References:
    Galloway et al. (2018), *A Rate-Distortion Theory of Adversarial Examples*, section 4.4,
    figure 4. Nguyen, Yosinski, Clune (2015), *Deep Neural Networks are Easily Fooled*.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F

from preimage.attacks.unbounded import class_prototypes
from preimage.report.plots import image_grid
from preimage.studies._rate_distortion_common import WeightDecayCNNConfig, fit_table3_cnn
from preimage.studies.kit import StudyRun, study_entry

__all__ = ["Config", "prototype_match_rate", "run"]


def prototype_match_rate(
    prototypes: torch.Tensor, images: torch.Tensor, labels: torch.Tensor
) -> float:
    """Fraction of labels ``c`` whose ``prototypes[c] - mean`` is most cosine-similar to class
    ``c``'s mean image minus the population mean.

    Example:
        >>> imgs = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
        >>> prototype_match_rate(torch.tensor([[3.0, 0.5], [0.2, 2.0]]), imgs, torch.tensor([0, 1]))
        1.0
    """
    mean = images.mean(0)
    centres = torch.stack([images[labels == c].mean(0) for c in range(prototypes.shape[0])])
    a = (prototypes - mean).flatten(1)
    b = (centres - mean).flatten(1)
    sim = F.normalize(a, dim=1) @ F.normalize(b, dim=1).T
    return float((sim.argmax(1) == torch.arange(prototypes.shape[0])).float().mean())


@dataclass(frozen=True)
class Config(WeightDecayCNNConfig):
    """Settings of the label-prototypes study (defaults: the ``cpu`` budget).

    ``train`` (of both models; B adds ``weight_decay``), ``weight_decay``, ``dataset`` and
    ``n_train`` are those of
    :class:`~preimage.studies._rate_distortion_common.WeightDecayCNNConfig`.

    Attributes:
        step: prototype gradient step.
        max_steps: give up after this many steps.
        confidence: the stopping confidence (the paper: 0.9995).
    """

    step: float = 0.1
    max_steps: int = 2000
    confidence: float = 0.9995

    BUDGETS: ClassVar[dict[str, dict[str, Any]]] = {
        "smoke": {**WeightDecayCNNConfig.BUDGETS["smoke"], "max_steps": 50, "step": 1.0},
        "cpu": {},
        "paper": {**WeightDecayCNNConfig.BUDGETS["paper"], "step": 1e-2},
    }


@study_entry(
    "label-prototypes",
    title="Label prototypes: from Y back to X",
    intro=(
        "Galloway et al. (2018), figure 4(b): descending each label's loss from noise around "
        "the mean image gives prototypical digits for the weight-decay model."
    ),
)
def run(study: StudyRun, config: Config) -> dict[str, Any]:
    gen = study.seed()
    (x, y), test, dataset = config.digits(1000)
    metrics: dict[str, Any] = {"dataset": dataset}
    rows, labels = [], []
    for name, wd in (("A", 0.0), ("B", config.weight_decay)):
        model, _, final = fit_table3_cnn(
            study, config.train, (x, y), test, weight_decay=wd, progress=config.progress
        )
        protos, steps, conf = class_prototypes(
            model,
            x.mean(0).to(study.device),
            x.std(0).to(study.device),
            10,
            step=config.step,
            confidence=config.confidence,
            max_steps=config.max_steps,
            generator=gen,
        )
        with torch.no_grad():
            predicted = model(protos).argmax(1).cpu()
        protos = protos.cpu()
        metrics[f"{name}_classified_as_label"] = float(
            (predicted == torch.arange(10)).float().mean()
        )
        metrics[f"{name}_test_accuracy"] = final["test_accuracy"]
        metrics[f"{name}_prototype_match_rate"] = prototype_match_rate(protos, x, y)
        metrics[f"{name}_mean_steps"] = float(steps.float().mean())
        metrics[f"{name}_reached_confidence"] = int((conf >= config.confidence).sum())
        rows.append(protos)
        labels += [f"{c}: {p:.4f}" for c, p in enumerate(conf.tolist())]
    grid = torch.stack(rows)
    lo, hi = float(grid.min()), float(grid.max())
    study.figure(
        image_grid(
            grid, row_labels=["A (no decay)", "B (decay)"], cell_labels=labels, vmin=lo, vmax=hi
        ),
        "prototypes",
        "One prototype per label (columns 0-9) for model A (top) and B (bottom), with the "
        "model's confidence in the label (figure 4(b)).",
    )
    study.check("B_prototype_match_rate", metrics["B_prototype_match_rate"], ">= 0.5")
    study.compare(
        "B_more_prototypical_than_A",
        metrics,
        "B_prototype_match_rate",
        ">",
        "A_prototype_match_rate",
        "> A's match rate",
    )
    return study.finish(metrics)
