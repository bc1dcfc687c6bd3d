"""Tests of the helpers shared by the excessive-invariance studies."""

from __future__ import annotations

import json

import pytest
import torch

from preimage.errors import CheckpointError, ConfigError
from preimage.runs import RunDir
from preimage.studies._invariance_common import (
    MNIST_PAPER,
    MNIST_SMOKE,
    IceStudyConfig,
    MnistStudyConfig,
    Target,
    different_label_pairs,
    error_on,
    load_mnist_subset,
    objective_models,
    obtain_firevnet,
    start_run,
    study_firevnet_options,
    study_train_config,
    subset,
    target_metrics,
    train_config,
)
from preimage.train import read_checkpoint_metadata


def test_subset_draws_distinct_samples_reproducibly() -> None:
    x, y = torch.arange(20.0).reshape(20, 1), torch.arange(20)
    a, b = subset((x, y), 7, seed=3), subset((x, y), 7, seed=3)
    assert torch.equal(a[1], b[1]) and len(set(a[1].tolist())) == 7
    assert torch.equal(a[0][:, 0].long(), a[1])
    assert subset((x, y), None, seed=0)[0] is x
    with pytest.raises(ConfigError):
        subset((x, y), 0, seed=0)


def test_test_split_subsets_are_disjoint(data_root) -> None:
    if not (data_root / "mnist").is_dir():
        pytest.skip("MNIST not available")
    (xa, _), (xb, _) = load_mnist_subset(str(data_root), 50, 40, 0, train_split="test")
    assert xa.shape == (50, 1, 28, 28) and xb.shape == (40, 1, 28, 28)
    flat_a, flat_b = xa.reshape(50, -1), xb.reshape(40, -1)
    assert float(torch.cdist(flat_a, flat_b).min()) > 0
    with pytest.raises(ConfigError):
        load_mnist_subset(str(data_root), None, 40, 0, train_split="test")


def test_targets_become_flags_and_rows() -> None:
    targets = [Target("a", 0.3, ">= 0.2", True), Target("b", 0.1, ">= 0.2", False)]
    assert target_metrics(targets) == {"target_a_met": True, "target_b_met": False}
    assert targets[1].row() == {"target": "b", "value": 0.1, "goal": ">= 0.2", "met": "missed"}


def test_obtain_firevnet_trains_saves_and_reuses(tmp_path) -> None:
    x = torch.rand(32, 1, 8, 8)
    y = torch.arange(32) % 4
    cfg = train_config(1, seed=0, device="cpu", max_steps_per_epoch=2, max_shift=1)
    options = {"stages": 2, "blocks_per_stage": 1, "hidden": 4}
    run = RunDir(tmp_path / "first")
    first = obtain_firevnet(
        run, "ice", "ice", (x, y), None, model_options=options, config=cfg, nuisance_hidden=8,
        ice_nce_weight=0.5, ice_max_steps=3,
    )  # fmt: skip
    assert not first.reused and first.path.is_file() and len(first.history) == 1
    stored = json.loads(read_checkpoint_metadata(first.path)["state"])["ice"]
    assert stored == {"nuisance_hidden": 8, "adversary": "nce", "nce_weight": 0.5, "max_steps": 3}
    again = obtain_firevnet(
        RunDir(tmp_path / "second"), "ice", "ice", (x, y), None, model_options=options,
        config=cfg, model_dir=str(run.path),
    )  # fmt: skip
    assert again.reused and again.history == first.history
    with torch.no_grad():
        assert torch.equal(again.model.logits(x), first.model.logits(x))
    with pytest.raises(CheckpointError, match="inputs"):
        obtain_firevnet(
            RunDir(tmp_path / "third"), "ice", "ice", (torch.rand(8, 1, 4, 4), y[:8]), None,
            model_options=options, config=cfg, model_dir=str(run.path),
        )  # fmt: skip
    with pytest.raises(ConfigError, match="objective"):
        obtain_firevnet(run, "x", "mse", (x, y), None, model_options=options, config=cfg)


def test_different_label_pairs_never_pair_equal_labels() -> None:
    labels = torch.tensor([0, 1, 1, 1, 2, 2])
    i, j = different_label_pairs(labels, 50, seed=1)
    assert len(i) == 50 and bool((labels[i] != labels[j]).all())


def test_error_on_counts_wrong_argmax() -> None:
    logits = torch.tensor([[2.0, 0.0], [0.0, 1.0], [3.0, -1.0], [0.5, 0.4]])
    labels = torch.tensor([0, 0, 1, 0])
    # argmax is [0, 1, 0, 0]: rows 1 and 2 are wrong.
    assert error_on(lambda t: t, (logits, labels), torch.device("cpu")) == pytest.approx(0.5)


def test_study_settings_follow_config() -> None:
    smoke = MnistStudyConfig.for_budget("smoke", **MNIST_SMOKE)
    assert (smoke.n_train, smoke.n_test, smoke.train_split) == (384, 256, "test")
    paper = MnistStudyConfig.for_budget("paper", **MNIST_PAPER)
    assert study_firevnet_options(paper) == {
        "stages": 3,
        "blocks_per_stage": 16,
        "hidden": 128,
        "coupling": "additive",
    }
    tcfg = study_train_config(paper, max_shift=0)
    assert (tcfg.epochs, tcfg.lr_step, tcfg.max_shift, tcfg.seed) == (100, 30, 0, paper.seed)
    assert study_train_config(smoke).max_shift == 3


def test_start_run_writes_the_config(tmp_path) -> None:
    config = MnistStudyConfig(seed=7, device="cpu")
    run, device = start_run(config, "toy-study", ["--seed", "7"], tmp_path / "run")
    assert device == torch.device("cpu")
    written = json.loads(run.config_path.read_text())
    assert written["command"] == "run toy-study" and written["seed"] == 7


def test_objective_models_train_one_objective_per_step(tmp_path) -> None:
    x = torch.rand(16, 1, 8, 8)
    y = torch.arange(16) % 4
    config = IceStudyConfig(
        device="cpu", epochs=1, lr_step=1, stages=2, blocks_per_stage=1, hidden=4, nuisance_hidden=8
    )
    run = RunDir(tmp_path)
    models = objective_models(run, config, ((x, y), (x, y)), study_train_config(config),
                              model_dir=None, prefix="p_")  # fmt: skip
    objective, first = next(models)
    assert objective == "ce" and first.path == run.checkpoint_path("p_ce")
    assert not run.checkpoint_path("p_ice").exists()
    objective, second = next(models)
    assert objective == "ice" and second.path.is_file() and not second.reused
    assert next(models, None) is None
