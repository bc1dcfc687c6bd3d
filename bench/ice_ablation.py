"""Benchmark: ablation of the independence cross-entropy on MNIST at a fixed CPU budget.

Trains the fi-RevNet of the ablation's first table (3 stages x 2 additive blocks, 32 filters,
the ``cpu`` budget of ``nuisance-info`` until 2026-12-06; the ``-big`` and ``-deep8``
variants set 4 and 8 blocks of 64 filters, and ``-big`` is that budget's network now) with the
paper's Adamax recipe on ``--n-train`` MNIST images for ``--epochs`` epochs with each requested
variant, then reports per variant:

- the logit test error on the 10 000 MNIST test images;
- the post-hoc nuisance test error: a fresh 3-layer, 512-unit probe trained ``--probe-epochs``
  epochs on standardised z_n of 20 000 training images (the strongest of the probe-length
  curve's settings on this budget; ``nuisance-info`` draws the whole curve);
- the game per epoch (``IceGameMonitor``): in-loop adversary error next to a fresh probe's
  error on the current z_n, and the MLE term.

A variant is a set of the study's own dotted options (``ice.*``, ``model.*``, ...), so every
row can be re-run as ``preimage run nuisance-info -o KEY=VALUE ...``. ``--set KEY=VALUE``
adds options to every variant (e.g. ``--set model.readout=center``).

    OMP_NUM_THREADS=1 python bench/ice_ablation.py [--variant NAME ...] [--epochs 3]

Every run is deterministic (fixed seeds, one thread). Reads MNIST from ``$PREIMAGE_DATA``;
prints one JSON line per variant, then a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from typing import Any

import torch

from preimage.analysis.invariance import train_nuisance_classifier
from preimage.data import subset
from preimage.options import parse_assignments
from preimage.runs import RunDir
from preimage.studies import ce_ice_models as cim
from preimage.studies.nuisance_info import Config

AUTHORS = {
    "ice.adversary": "shuffled",
    "ice.nce_weight": 0.05,
    "ice.max_steps": 5,
    "ice.inner_optimizer": "adamax",
}
"""The adversary of the authors' public code: 0.05 x CE to shuffled labels, 5 Adamax steps."""

RAW = {"ice.adversary_input": "raw", "ice.warmup_epochs": 0}
"""The defaults when this ablation was run (the paper's game); every variant starts from it."""
SMALL = {"model.blocks_per_stage": 2, "model.hidden": 32}
"""The network of the first table (the ``cpu`` budget's then); every variant starts from it."""
BIG = {"model.blocks_per_stage": 4, "model.hidden": 64}
STD = {"ice.adversary_input": "standardized"}
LOGIT_PRIOR = {"ice.logit_prior": True}

VARIANTS: dict[str, tuple[str, dict[str, Any]]] = {
    "ce": ("ce", {}),
    "nce": ("ice", {}),
    "nce-std": ("ice", STD),
    "nce-std-lp": ("ice", {**STD, **LOGIT_PRIOR}),
    "nce-std-mle0.1": ("ice", {**STD, "ice.mle_weight": 0.1}),
    "shuffled": ("ice", AUTHORS),
    "shuffled-std": ("ice", {**AUTHORS, **STD}),
    "shuffled-std-lp": ("ice", {**AUTHORS, **STD, **LOGIT_PRIOR}),
    "shuffled-std-w1": ("ice", {**AUTHORS, **STD, "ice.nce_weight": 1.0}),
    "shuffled-std-mle0": ("ice", {**AUTHORS, **STD, "ice.mle_weight": 0.0}),
    "shuffled-std-mle0.1": ("ice", {**AUTHORS, **STD, "ice.mle_weight": 0.1}),
    "shuffled-std-w0.3-mle0": (
        "ice",
        {**AUTHORS, **STD, "ice.nce_weight": 0.3, "ice.mle_weight": 0.0},
    ),
    "shuffled-std-w1-mle0": (
        "ice",
        {**AUTHORS, **STD, "ice.nce_weight": 1.0, "ice.mle_weight": 0.0},
    ),
    "shuffled-std-warm1": ("ice", {**AUTHORS, **STD, "ice.warmup_epochs": 1}),
    "shuffled-std-w0.3-warm1": (
        "ice",
        {**AUTHORS, **STD, "ice.nce_weight": 0.3, "ice.warmup_epochs": 1},
    ),
    "shuffled-std-w1-warm1": (
        "ice",
        {**AUTHORS, **STD, "ice.nce_weight": 1.0, "ice.warmup_epochs": 1},
    ),
    "nce-std-warm1": ("ice", {**STD, "ice.warmup_epochs": 1}),
    "shuffled-std-lp-bn": ("ice", {**AUTHORS, **STD, **LOGIT_PRIOR, "model.logit_norm": True}),
    "ce-bn": ("ce", {"model.logit_norm": True}),
    "nce-std-warm1-dct": ("ice", {**STD, "ice.warmup_epochs": 1, "model.readout": "dct"}),
    "nce-std-warm1-deep1": (
        "ice",
        {**STD, "ice.warmup_epochs": 1, "model.stage_blocks": (4, 2, 2)},
    ),
    "ce-nosplit-center": ("ce", {"model.split": False, "model.readout": "center"}),
    "nce-std-warm1-nosplit-center": (
        "ice",
        {**STD, "ice.warmup_epochs": 1, "model.split": False, "model.readout": "center"},
    ),
    "ce-big": ("ce", BIG),
    "nce-std-warm1-big": ("ice", {**STD, "ice.warmup_epochs": 1, **BIG}),
    "ce-deep8": ("ce", {**BIG, "model.blocks_per_stage": 8}),
    "nce-std-warm1-deep8": (
        "ice",
        {**STD, "ice.warmup_epochs": 1, **BIG, "model.blocks_per_stage": 8},
    ),
    "ce-embed-center": ("ce", {"embed": True, "model.readout": "center"}),
    "nce-std-warm1-embed-center": (
        "ice",
        {**STD, "ice.warmup_epochs": 1, "embed": True, "model.readout": "center"},
    ),
    "ce-center": ("ce", {"model.readout": "center"}),
    "shuffled-std-lp-center": (
        "ice",
        {**AUTHORS, **STD, **LOGIT_PRIOR, "model.readout": "center"},
    ),
    "ce-dct": ("ce", {"model.readout": "dct"}),
    "shuffled-std-lp-dct": ("ice", {**AUTHORS, **STD, **LOGIT_PRIOR, "model.readout": "dct"}),
    "ce-deep1": ("ce", {"model.stage_blocks": (4, 2, 2)}),
    "shuffled-std-lp-deep1": (
        "ice",
        {**AUTHORS, **STD, **LOGIT_PRIOR, "model.stage_blocks": (4, 2, 2)},
    ),
}
"""Variant name -> (objective, the study options it sets)."""

GAME_KEYS = (
    "epoch",
    "train_mle",
    "train_nuisance_acc",
    "test_accuracy",
    "game_adversary_error",
    "game_probe_error",
)
"""History entries kept per epoch in the JSON rows."""


def run_variant(
    name: str,
    objective: str,
    options: dict[str, Any],
    *,
    n_train: int,
    epochs: int,
    probe_epochs: int,
) -> dict[str, Any]:
    """Train one variant as ``nuisance-info`` does, then the post-hoc probe."""
    config = Config.for_budget(
        "cpu",
        device="cpu",
        progress=False,
        n_train=n_train,
        **{"train.epochs": epochs, **RAW, **SMALL, **options},
    )
    train, test = cim.load_mnist(config)
    recipe = cim.study_recipe(config, config.train)
    game = cim.game_data(config, train, test)
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        trained = cim.obtain_firevnet(
            RunDir.open(tmp, kind="ice-ablation", overwrite=True),
            name,
            objective,
            train,
            test,
            model=config.model,
            recipe=recipe,
            ice=config.ice,
            game=game,
        )
    train_s = time.perf_counter() - start
    model = trained.model
    probe = train_nuisance_classifier(
        model, subset(train, 20_000, config.seed + 5), test, epochs=probe_epochs, seed=config.seed
    )
    return {
        "variant": name,
        "objective": objective,
        "options": {k: list(v) if isinstance(v, tuple) else v for k, v in options.items()},
        "logit_test_error": cim.error_on(model.logits, test, torch.device("cpu")),
        "nuisance_test_error": probe.test_error,
        "game": [{k: h[k] for k in GAME_KEYS if k in h} for h in trained.history],
        "train_s": train_s,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variant", action="append", choices=sorted(VARIANTS))
    parser.add_argument("--n-train", type=int, default=30_000)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--probe-epochs", type=int, default=10)
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    extra = parse_assignments(args.set, flag="--set")
    rows = []
    for name in args.variant or list(VARIANTS):
        objective, options = VARIANTS[name]
        row = run_variant(
            name,
            objective,
            {**options, **extra},
            n_train=args.n_train,
            epochs=args.epochs,
            probe_epochs=args.probe_epochs,
        )
        rows.append(row)
        print(json.dumps(row), flush=True)
    print("| variant | logit test error % | post-hoc nuisance test error % | train s |")
    print("| --- | --- | --- | --- |")
    for row in rows:
        print(
            f"| `{row['variant']}` | {100 * row['logit_test_error']:.2f} | "
            f"{100 * row['nuisance_test_error']:.2f} | {row['train_s']:.0f} |"
        )


if __name__ == "__main__":
    main()
