"""Training-step time with glibc's default malloc and with `preimage.allocator.tune_allocator`.

Each round starts one fresh process per setting, in turns, that times ``--steps`` training steps
(Adam, cross-entropy, random data) of each model after a warm-up; the table gives the median
step time over the rounds. A fresh process per setting because the allocator's thresholds are
state of the whole process.

Usage::

    OMP_NUM_THREADS=1 PYTHONPATH=. python bench/allocator.py --rounds 5
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys

_MODELS = {
    # name: (registry name, input shape, batch)
    "isotopenet-lp": ("isotopenet", (1, 2454), 32),
    "fi-revnet-mnist": ("fi-revnet", (1, 28, 28), 64),
    "cnn-mnist": ("cnn", (1, 28, 28), 128),
}

_CHILD = """
import json, sys, time
import torch
from preimage.allocator import tune_allocator
from preimage.models.registry import build_model
mode, steps, models = sys.argv[1], int(sys.argv[2]), json.loads(sys.argv[3])
if mode == "tuned":
    assert tune_allocator(environ={})
out = {}
for label, (name, shape, batch) in models.items():
    torch.manual_seed(0)
    net = build_model(name, shape, 10)
    opt = torch.optim.Adam(net.parameters(), 1e-3)
    x, y = torch.randn(batch, *shape), torch.randint(0, 10, (batch,))
    def step():
        opt.zero_grad()
        out = net(x)
        logits = out[0] if isinstance(out, tuple) else out
        torch.nn.functional.cross_entropy(logits, y).backward()
        opt.step()
    for _ in range(3):
        step()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    out[label] = (time.perf_counter() - start) / steps * 1e3
print(json.dumps(out))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=20)
    args = parser.parse_args()
    times: dict[str, dict[str, list[float]]] = {"default": {}, "tuned": {}}
    env_models = json.dumps(_MODELS)
    for _ in range(args.rounds):
        for mode in times:
            done = subprocess.run(
                [sys.executable, "-c", _CHILD, mode, str(args.steps), env_models],
                capture_output=True,
                text=True,
                check=True,
            )
            for label, ms in json.loads(done.stdout).items():
                times[mode].setdefault(label, []).append(ms)
    print("| model | batch | default malloc (ms/step) | tuned (ms/step) | speed-up |")
    print("| --- | --- | --- | --- | --- |")
    for label, (_, _, batch) in _MODELS.items():
        a = statistics.median(times["default"][label])
        b = statistics.median(times["tuned"][label])
        print(f"| {label} | {batch} | {a:.1f} | {b:.1f} | {a / b:.2f}x |")


if __name__ == "__main__":
    main()
