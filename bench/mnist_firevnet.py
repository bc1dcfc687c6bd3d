"""Benchmark: a CPU-sized version of the paper's MNIST fi-RevNet (not a test).

Trains with the paper's recipe (appendix D.2: Adamax, weight decay 1e-4, random shifts of up to
3 px, uniform dequantisation, learning rate x0.2 after 30% of the epochs, repeated) and prints:
test accuracy, training wall time, training samples/s, inverse/forward time ratio and
max |x - F^-1(F(x))| over the whole test set (float32).

Targets on 2 CPU cores: test accuracy >= 99.0% within 10 minutes of training; inverse time /
forward time <= 1.2; max reconstruction error <= 1e-4.

    python bench/mnist_firevnet.py                 # the recorded configuration
    python bench/mnist_firevnet.py --epochs 1      # a quick look
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import torch

from preimage.data import load_dataset
from preimage.models import FiRevNet
from preimage.train import TrainConfig, Trainer
from preimage.workflow import inverse_error


def _timed(fn, repeats: int = 3) -> float:
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--blocks-per-stage", type=int, default=2)
    parser.add_argument("--hidden", type=int, default=32)
    parser.add_argument("--coupling", choices=("additive", "affine"), default="additive")
    parser.add_argument("--clamp", type=float, default=2.0, help="Affine log-scale bound.")
    parser.add_argument("--max-shift", type=int, default=3)
    parser.add_argument(
        "--lr-step", type=int, default=None, help="Epochs between x0.2 decays (default 30%%)."
    )
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--out", type=Path, default=None, help="Optional run directory.")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    train = load_dataset("mnist", "train")
    test = load_dataset("mnist", "test")
    model = FiRevNet(
        (1, 28, 28),
        10,
        stages=3,
        blocks_per_stage=args.blocks_per_stage,
        hidden=args.hidden,
        coupling=args.coupling,
        clamp=args.clamp,
    )
    config = TrainConfig(
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        lr_step=args.lr_step or max(1, round(0.3 * args.epochs)),
        max_shift=args.max_shift,
        seed=args.seed,
        device=args.device,
    )
    trainer = Trainer(
        model,
        (train.images, train.labels),
        (test.images, test.labels),
        config,
        out_dir=args.out,
        progress=True,
    )
    start = time.perf_counter()
    final = trainer.fit()
    wall = time.perf_counter() - start
    # The trainer's samples/s counts training steps only; evaluation after each epoch is excluded.
    samples = args.epochs * len(train)
    train_s = sum(len(train) / h["samples_per_s"] for h in trainer.history)

    model.eval()
    device = next(model.parameters()).device
    x = test.images.to(device)
    with torch.no_grad():
        z = torch.cat([model(x[i : i + 500])[0] for i in range(0, len(x), 500)])
        forward_s = _timed(lambda: [model(x[i : i + 500]) for i in range(0, len(x), 500)])
        inverse_s = _timed(lambda: [model.inverse(z[i : i + 500]) for i in range(0, len(z), 500)])
    result = {
        "test_accuracy": final["test_accuracy"],
        "train_wall_s": round(train_s, 1),
        "total_wall_s_incl_eval": round(wall, 1),
        "train_samples_per_s": round(samples / train_s, 1),
        "inverse_over_forward_time": round(inverse_s / forward_s, 3),
        "max_reconstruction_error": inverse_error(model, test.images),
        "parameters": sum(p.numel() for p in model.parameters()),
        "config": {k: v for k, v in vars(args).items() if k != "out"},
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"torch {torch.__version__}, device {device}",
    }
    print(json.dumps(result, indent=2, default=str))
    print(
        f"test accuracy {100 * result['test_accuracy']:.2f}% (target >= 99.0%) in "
        f"{result['train_wall_s']:.0f} s of training (target <= 600 s); inverse/forward "
        f"{result['inverse_over_forward_time']:.2f} (target <= 1.2); max |x - F^-1(F(x))| "
        f"{result['max_reconstruction_error']:.2e} (target <= 1e-4)"
    )


if __name__ == "__main__":
    main()
