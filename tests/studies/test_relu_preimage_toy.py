"""Smoke and behaviour tests of the relu-preimage-toy study."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from preimage.analysis.relu_preimage import classify_preimage
from preimage.analysis.stability import stability_profile
from preimage.errors import ConfigError
from preimage.studies.relu_preimage_toy import GRID_KINDS, Config, _grid_maps, _Restart, _shown, run


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


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_grid_maps_per_pattern_equal_the_per_point_computation(seed: int) -> None:
    torch.manual_seed(seed)
    net = nn.Sequential(nn.Linear(2, 3), nn.ReLU(), nn.Linear(3, 2)).double()
    axis = torch.linspace(-2.0, 2.0, 9, dtype=torch.float64)
    points = torch.cartesian_prod(axis, axis)
    kinds, cond = _grid_maps(net, points)
    weight, bias = net[0].weight.detach(), net[0].bias.detach()
    for p, kind, c in zip(points, kinds, cond, strict=True):
        y = torch.relu(weight @ p + bias)
        expected = classify_preimage(weight, bias, y, x_ref=p, box=False).kind
        assert GRID_KINDS[kind] == expected
        [record] = stability_profile(net, p[None], layers=["1"])
        assert c == (0.0 if record.rank == 0 else record.condition)


def _restart(accuracy: float, omni: bool) -> _Restart:
    empty = np.zeros((2, 2))
    return _Restart(accuracy, omni, empty, empty.astype(int), empty)


def test_the_figure_shows_the_best_restart_of_each_solution() -> None:
    restarts = [_restart(0.9, True), _restart(0.99, False), _restart(0.95, True)]
    shown = _shown(restarts)
    assert [restart for _, restart in shown] == [restarts[1], restarts[2]]
    assert shown[0][0].startswith("restart 1, normals in a half-plane")
    assert len(_shown([_restart(0.9, True)])) == 1


def test_bad_restarts_exit_before_any_folder(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="restarts"):
        run(Config(restarts=0, progress=False), tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_smoke_run(tmp_path: Path) -> None:
    metrics = run(Config.for_budget("smoke", progress=False), tmp_path)
    for name in ("config.json", "metrics.json", "report.html", "figures/preimages.png"):
        assert (tmp_path / name).is_file(), name
    assert sum(metrics[f"share_{k}"] for k in GRID_KINDS) == 1.0
    # Whatever the net learned: non-singleton pre-images come with condition <= 1 and
    # singletons with condition > 1 (two separately computed quantities).
    assert metrics["target_nonsingleton_condition_le_one_met"]
    assert metrics["target_singleton_condition_gt_one_met"]
    for r in range(2):
        assert (tmp_path / "checkpoints" / f"restart{r}.safetensors").is_file()
        assert sum(metrics[f"restart{r}_share_{k}"] for k in GRID_KINDS) == pytest.approx(1.0)
    assert metrics["test_accuracy"] == max(metrics[f"restart{r}_test_accuracy"] for r in range(2))
