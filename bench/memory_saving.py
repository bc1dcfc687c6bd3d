"""Benchmark: peak training memory and time per step of fi-RevNet, with and without memory saving.

An MNIST-shaped fi-RevNet (two stages, affine couplings with batch norm, ``--hidden`` filters) with
4, 8, 16 and 32 blocks in all, trained for a few Adam steps on random inputs in each mode. Every
configuration runs in its own subprocess, so that one's memory cannot hide in another's. Prints,
per configuration:

- ``saved MB``: the peak bytes autograd held for the backward pass (``SavedTensorMeter``:
  deterministic, parameters excluded);
- ``peak RSS MB``: the process's peak resident memory during the steps minus its resident memory
  before them (``/proc/self/clear_refs`` resets the high-water mark; Linux only); it includes
  Adam's state and the gradients, which do not depend on the mode;
- ``s/step``: the median wall time of forward + backward + optimiser step, the two modes taking
  turns step by step in one process (so that a change in machine load lands on both).

    python bench/memory_saving.py [--hidden 64] [--batch-size 64] [--rounds 5] [--threads 1]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

from preimage.models import FiRevNet
from preimage.nn.memory_saving import SavedTensorMeter

BLOCKS = (4, 8, 16, 32)


def _status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def _model_and_step(
    blocks: int, memory_saving: bool, hidden: int, batch: int
) -> tuple[torch.nn.Module, Callable[[], None]]:
    torch.manual_seed(0)
    model = FiRevNet(
        (1, 28, 28),
        10,
        stages=2,
        blocks_per_stage=blocks // 2,
        hidden=hidden,
        coupling="affine",
        memory_saving=memory_saving,
    ).train()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    x = torch.rand(batch, 1, 28, 28)
    labels = torch.randint(0, 10, (batch,))

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        z, logdet = model(x)
        loss = torch.nn.functional.cross_entropy(z[:, :10], labels) - 1e-4 * logdet.mean()
        loss.backward()
        opt.step()

    return model, step


def measure_memory(blocks: int, memory_saving: bool, hidden: int, batch: int) -> dict:
    """One configuration, in this process: saved bytes and peak RSS increase of two steps."""
    model, step = _model_and_step(blocks, memory_saving, hidden, batch)
    # The first step counts: the allocator keeps what it freed, so later steps reuse it and only
    # the first one raises the resident high-water mark.
    Path("/proc/self/clear_refs").write_text("5")
    before = _status_kib("VmRSS")
    with SavedTensorMeter(exclude=model.parameters()) as meter:
        step()  # also ActNorm's data-dependent initialisation and Adam's state
    step()
    return {"saved_mb": meter.peak / 2**20, "rss_mb": (_status_kib("VmHWM") - before) / 1024}


def measure_time(blocks: int, hidden: int, batch: int, rounds: int) -> tuple[float, float]:
    """Median seconds per step, ordinary and memory-saving, taking turns step by step."""
    steps = [_model_and_step(blocks, ms, hidden, batch)[1] for ms in (False, True)]
    times: list[list[float]] = [[], []]
    for step in steps:
        step()
    for _ in range(rounds):
        for i, step in enumerate(steps):
            start = time.perf_counter()
            step()
            times[i].append(time.perf_counter() - start)
    return statistics.median(times[0]), statistics.median(times[1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hidden", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=5, help="timed steps per mode")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--one", help=argparse.SUPPRESS)  # "blocks,mode": run one, print JSON
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.one:
        blocks, mode = args.one.split(",")
        result = measure_memory(int(blocks), mode == "saving", args.hidden, args.batch_size)
        print(json.dumps(result))
        return
    print(f"{platform.node()}  load average {os.getloadavg()}  torch {torch.__version__}")
    print(f"hidden {args.hidden}, batch {args.batch_size}, {args.threads} thread(s)")
    print(f"{'blocks':>6} {'mode':>9} {'saved MB':>9} {'peak RSS MB':>12} {'s/step':>8}")
    for blocks in BLOCKS:
        seconds = measure_time(blocks, args.hidden, args.batch_size, args.rounds)
        for mode, sec in zip(("ordinary", "saving"), seconds, strict=True):
            cmd = [sys.executable, __file__, "--one", f"{blocks},{mode}"]
            cmd += ["--hidden", str(args.hidden), "--batch-size", str(args.batch_size)]
            cmd += ["--threads", str(args.threads)]
            out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
            r = json.loads(out.splitlines()[-1])
            print(
                f"{blocks:>6} {mode:>9} {r['saved_mb']:>9.1f} {r['rss_mb']:>12.1f} {sec:>8.3f}",
                flush=True,
            )


if __name__ == "__main__":
    main()
