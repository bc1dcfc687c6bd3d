"""Benchmark: short ablation of the independence cross-entropy on MNIST (not a test).

Trains the ``cpu``-budget fi-RevNet of the MNIST invariance studies (3 stages x 2 additive
blocks, 32 filters, the paper's Adamax recipe) for a few epochs with each requested objective,
then trains a fresh post-hoc nuisance classifier (3-layer ReLU MLP, 512 units) on the frozen
:math:`z_n` of 20 000 training images and prints, per objective, the logit test error and the
nuisance classifier's test error on the 10 000 MNIST test images. It answers "which iCE
settings remove label information from z_n without costing the logits" at a fraction of a
full ``nuisance-info`` run.

Objectives (``--variant``, repeatable; default: all):

- ``ce``: plain cross-entropy;
- ``mle-only``: iCE with the nuisance term switched off (L_sCE + L_MLE_n);
- ``nce``: iCE with the paper's -L_nCE at weight 1 (the studies' default);
- ``nce-dim``: -L_nCE at weight 1/(d - C) (the other reading of appendix D.2's
  normalisation: the network's signal rather than the classifier's step);
- ``nce-ms5``: -L_nCE at weight 1 with five nuisance-classifier steps per batch;
- ``uniform-0.01``: the confusion adversary at weight 0.01;
- ``uniform-0.1-ms5``: the confusion adversary at weight 0.1 with five classifier steps.

    OMP_NUM_THREADS=1 python bench/ice_ablation.py [--epochs 3] [--variant nce ...]

Reads MNIST from ``$PREIMAGE_DATA``.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from dataclasses import replace
from typing import Any

import torch

from preimage.analysis.invariance import train_nuisance_classifier
from preimage.data import load_train_test, subset
from preimage.losses import IceConfig
from preimage.runs import RunDir
from preimage.studies import ce_ice_models as cim
from preimage.studies.nuisance_info import Config

CLASSES = 10
NUISANCE_DIM = 28 * 28 - CLASSES

VARIANTS: dict[str, dict[str, Any] | None] = {
    "ce": None,
    "mle-only": {"adversary": "nce", "nce_weight": 0.0},
    "nce": {"adversary": "nce", "nce_weight": 1.0},
    "nce-dim": {"adversary": "nce", "nce_weight": 1.0 / NUISANCE_DIM},
    "nce-ms5": {"adversary": "nce", "nce_weight": 1.0, "max_steps": 5},
    "uniform-0.01": {"adversary": "uniform", "nce_weight": 0.01},
    "uniform-0.1-ms5": {"adversary": "uniform", "nce_weight": 0.1, "max_steps": 5},
}


def run_variant(
    name: str,
    train: tuple[torch.Tensor, torch.Tensor],
    test: tuple[torch.Tensor, torch.Tensor],
    *,
    epochs: int,
    readout_epochs: int,
) -> dict[str, Any]:
    """Train one objective as the studies do, then the post-hoc nuisance classifier."""
    options = VARIANTS[name]
    study = Config(device="cpu")  # the cpu budget's network, recipe and iCE defaults
    recipe = replace(cim.study_recipe(study, study.train), epochs=epochs)
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        trained = cim.obtain_firevnet(
            RunDir(tmp),
            name,
            "ce" if options is None else "ice",
            train,
            test,
            model=study.model,
            recipe=recipe,
            ice=replace(IceConfig(), **(options or {})),
        )
    train_s = time.perf_counter() - start
    model = trained.model
    readout = train_nuisance_classifier(
        model, subset(train, 20_000, 1), test, epochs=readout_epochs
    )
    return {
        "variant": name,
        "logit_test_error": cim.error_on(model.logits, test, torch.device("cpu")),
        "nuisance_test_error": readout.test_error,
        "nuisance_train_error": readout.train_error,
        "train_s": train_s,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--readout-epochs", type=int, default=4)
    parser.add_argument("--variant", action="append", choices=sorted(VARIANTS))
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    train, test = load_train_test("mnist", n_train=None, n_test=None, seed=0)
    print(f"{'variant':<16} {'logit err %':>11} {'nuisance err %':>14} {'train s':>8}")
    for name in args.variant or list(VARIANTS):
        row = run_variant(name, train, test, epochs=args.epochs, readout_epochs=args.readout_epochs)
        print(
            f"{name:<16} {100 * row['logit_test_error']:>11.2f} "
            f"{100 * row['nuisance_test_error']:>14.2f} {row['train_s']:>8.0f}",
            flush=True,
        )
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
