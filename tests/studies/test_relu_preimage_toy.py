"""Smoke and behaviour tests of the relu-preimage-toy study."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from preimage.studies.relu_preimage_toy import GRID_KINDS, Config, _grid_maps, run


def _net(normals: list[list[float]], bias: list[float]) -> nn.Sequential:
    net = nn.Sequential(nn.Linear(2, 3), nn.ReLU(), nn.Linear(3, 2)).double()
    with torch.no_grad():
        net[0].weight.copy_(torch.tensor(normals))
        net[0].bias.copy_(torch.tensor(bias))
    return net


def test_grid_maps_follow_theorem_3_3() -> None:
    # Outward normals of a triangle around the origin: every unit off at 0 -> a compact
    # triangle (condition 0); two units on -> a singleton (condition > 1).
    outward = _net([[1.0, 0.0], [-0.5, 0.9], [-0.5, -0.9]], [-1.0, -1.0, -1.0])
    kinds, cond = _grid_maps(outward, torch.tensor([[0.0, 0.0], [2.0, 3.0], [3.0, 0.0]]))
    assert [GRID_KINDS[k] for k in kinds] == ["compact", "singleton", "compact"]
    assert cond[0] == 0.0 and cond[1] > 1.0 and cond[2] == 1.0
    # Normals in one half-plane: the pre-image of "all off" is unbounded.
    half = _net([[1.0, 0.0], [0.5, 0.9], [0.5, -0.9]], [-1.0, -1.0, -1.0])
    kinds, _ = _grid_maps(half, torch.tensor([[0.0, 0.0]]))
    assert GRID_KINDS[kinds[0]] == "unbounded"


def test_smoke_run(tmp_path: Path) -> None:
    metrics = run(Config.for_budget("smoke", progress=False), tmp_path)
    for name in ("config.json", "metrics.json", "report.html", "figures/preimages.png"):
        assert (tmp_path / name).is_file(), name
    assert sum(metrics[f"share_{k}"] for k in GRID_KINDS) == 1.0
    # Whatever the net learned: non-singleton pre-images come with condition <= 1 and
    # singletons with condition > 1 (two separately computed quantities).
    assert metrics["target_nonsingleton_condition_le_one_met"]
    assert metrics["target_singleton_condition_gt_one_met"]
