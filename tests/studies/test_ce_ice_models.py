"""Tests of preimage.studies.ce_ice_models: CE/iCE fi-RevNets of the invariance studies."""

from __future__ import annotations

import json
from dataclasses import asdict, replace

import pytest
import torch

from preimage.errors import CheckpointError, ConfigError
from preimage.losses import IceConfig
from preimage.models import FiRevNetConfig
from preimage.runs import RunDir
from preimage.studies.ce_ice_models import (
    BASELINE,
    IceStudyConfig,
    MnistStudyConfig,
    different_label_pairs,
    error_on,
    objective_models,
    obtain_firevnet,
    obtain_plain_classifier,
    study_recipe,
)
from preimage.studies.kit import StudyRun
from preimage.train import TrainConfig, read_checkpoint_metadata

TINY = FiRevNetConfig(stages=2, blocks_per_stage=1, hidden=4, coupling="additive")
RECIPE = TrainConfig(epochs=1, device="cpu", max_steps_per_epoch=2, max_shift=1)


def _data(n: int = 32) -> tuple[torch.Tensor, torch.Tensor]:
    """Noise images whose label is the brightest of four quadrants: readable from z_n."""
    gen = torch.Generator().manual_seed(0)
    x = 0.5 * torch.rand(n, 1, 8, 8, generator=gen)
    y = torch.arange(n) % 4
    for k in range(4):
        rows, cols = slice(4 * (k // 2), 4 * (k // 2) + 4), slice(4 * (k % 2), 4 * (k % 2) + 4)
        x[y == k, :, rows, cols] += 0.5
    return x, y


def test_obtain_firevnet_trains_saves_and_reuses(tmp_path) -> None:
    x, y = _data()
    run = RunDir(tmp_path / "first")
    ice = IceConfig(nuisance_hidden=8, nce_weight=0.5, max_steps=3)
    first = obtain_firevnet(run, "ice", "ice", (x, y), None, model=TINY, recipe=RECIPE, ice=ice)
    assert not first.reused and first.path.is_file() and len(first.history) == 1
    assert first.loss is not None and first.loss.max_steps == 3
    stored = json.loads(read_checkpoint_metadata(first.path)["state"])
    assert stored["ice"] == asdict(ice) and stored["objective"] == "ice"
    again = obtain_firevnet(
        RunDir(tmp_path / "second"), "ice", "ice", (x, y), None, model=TINY, recipe=RECIPE,
        model_dir=str(run.path),
    )  # fmt: skip
    assert again.reused and again.history == first.history
    with torch.no_grad():
        assert torch.equal(again.model.logits(x), first.model.logits(x))
    with pytest.raises(CheckpointError, match="inputs"):
        obtain_firevnet(
            RunDir(tmp_path / "third"), "ice", "ice", (torch.rand(8, 1, 4, 4), y[:8]), None,
            model=TINY, recipe=RECIPE, model_dir=str(run.path),
        )  # fmt: skip
    (run.path / "checkpoints" / "ice.safetensors").rename(
        run.path / "checkpoints" / "ce.safetensors"
    )
    with pytest.raises(CheckpointError, match="trained with 'ice'"):
        obtain_firevnet(RunDir(tmp_path / "fourth"), "ce", "ce", (x, y), None, model=TINY,
                        recipe=RECIPE, model_dir=str(run.path))  # fmt: skip
    with pytest.raises(ConfigError, match="objective"):
        obtain_firevnet(run, "x", "mse", (x, y), None, model=TINY, recipe=RECIPE)


def test_ice_objective_trains_the_independence_cross_entropy(tmp_path) -> None:
    # CE and iCE start from the same weights and batches. CE's reference is the same in-loop
    # adversary trained alongside but with no say in the network's objective (weights 0), so
    # the only difference is the min objective: iCE must move its prior (beta, gamma) away
    # from the initial standard normal and leave the adversary a clearly lower likelihood of
    # the labels (higher cross-entropy on z_n) than CE does.
    x, y = _data(128)
    recipe = replace(
        RECIPE, max_steps_per_epoch=None, epochs=6, batch_size=32, max_shift=0, lr=1e-2
    )
    # The paper's game (raw z_n, no warm-up); the defaults' are tested in tests/losses.
    ice = IceConfig(nuisance_hidden=32, lr_nuisance=1e-2, adversary_input="raw", warmup_epochs=0)
    observer = replace(ice, nce_weight=0.0, mle_weight=0.0)
    run = RunDir(tmp_path)
    trained = obtain_firevnet(run, "ice", "ice", (x, y), None, model=TINY, recipe=recipe, ice=ice)
    plain = obtain_firevnet(run, "obs", "ice", (x, y), None, model=TINY, recipe=recipe,
                            ice=observer)  # fmt: skip
    assert trained.loss is not None
    moved = float((trained.loss.beta.abs().max() + trained.loss.gamma.abs().max()).detach())
    assert moved > 1e-2
    ice_nce = sum(h["train_nce"] for h in trained.history[-3:]) / 3
    ce_nce = sum(h["train_nce"] for h in plain.history[-3:]) / 3
    assert ice_nce > ce_nce + 0.25 and ice_nce > 50 * ce_nce, (ice_nce, ce_nce)
    # The "ce" objective is plain cross-entropy: no adversary, no prior.
    ce = obtain_firevnet(run, "ce", "ce", (x, y), None, model=TINY, recipe=recipe)
    assert ce.loss is None and "train_nce" not in ce.history[-1]


def test_objective_models_train_one_objective_per_step(tmp_path) -> None:
    x, y = _data(16)
    config = IceStudyConfig(
        device="cpu", train=replace(TrainConfig(epochs=1, lr_step=1), max_steps_per_epoch=1),
        model=TINY, ice=IceConfig(nuisance_hidden=8), progress=False,
    )  # fmt: skip
    study = StudyRun("toy", config, tmp_path, echo=False)
    models = objective_models(study, config, ((x, y), (x, y)), study_recipe(config, config.train),
                              prefix="p_")  # fmt: skip
    objective, first = next(models)
    assert objective == "ce" and first.path == study.checkpoint_path("p_ce")
    assert not study.checkpoint_path("p_ice").exists()
    objective, second = next(models)
    assert objective == "ice" and second.path.is_file() and not second.reused
    assert second.loss is not None and second.loss.nuisance_dim == 64 - 4
    assert next(models, None) is None


def test_plain_classifier_is_the_cnn_baseline(tmp_path) -> None:
    x, y = _data(16)
    trained = obtain_plain_classifier(RunDir(tmp_path), "oracle", (x, y), None, recipe=RECIPE,
                                      width=4)  # fmt: skip
    state = json.loads(read_checkpoint_metadata(trained.path)["state"])
    assert state["architecture"] == BASELINE == "cnn" and type(trained.model).__name__ == "CNN"
    assert trained.model(x).shape == (16, 4)


def test_different_label_pairs_never_pair_equal_labels() -> None:
    labels = torch.tensor([0, 1, 1, 1, 2, 2])
    i, j = different_label_pairs(labels, 50, seed=1)
    assert len(i) == 50 and bool((labels[i] != labels[j]).all())
    with pytest.raises(ConfigError):
        different_label_pairs(torch.zeros(4, dtype=torch.long), 3, seed=0)


def test_error_on_counts_wrong_argmax() -> None:
    logits = torch.tensor([[2.0, 0.0], [0.0, 1.0], [3.0, -1.0], [0.5, 0.4]])
    labels = torch.tensor([0, 0, 1, 0])
    # argmax is [0, 1, 0, 0]: rows 1 and 2 are wrong.
    assert error_on(lambda t: t, (logits, labels), torch.device("cpu")) == pytest.approx(0.5)


def test_study_settings_follow_config() -> None:
    smoke = IceStudyConfig.for_budget("smoke")
    assert (smoke.n_train, smoke.n_test, smoke.train_split) == (384, 256, "test")
    assert (smoke.train.epochs, smoke.model.hidden, smoke.ice.nuisance_hidden) == (1, 8, 32)
    paper = MnistStudyConfig.for_budget("paper", seed=4)
    assert paper.model == FiRevNetConfig(stages=3, blocks_per_stage=16, hidden=128,
                                         coupling="additive")  # fmt: skip
    recipe = study_recipe(paper, paper.train)
    assert (recipe.epochs, recipe.lr_step, recipe.max_shift, recipe.seed) == (100, 30, 3, 4)
    cli = IceStudyConfig.for_budget("cpu", **{"train.epochs": "3", "model.hidden": "128",
                                              "ice.nce_weight": "0.05"})  # fmt: skip
    assert (cli.train.epochs, cli.model.hidden, cli.ice.nce_weight) == (3, 128, 0.05)
    with pytest.raises(ConfigError, match=r"train\.seed follows"):
        study_recipe(paper, replace(paper.train, seed=9))


def test_paper_budgets_play_the_papers_game_and_cpu_budgets_the_measured_defaults() -> None:
    from preimage.studies import metamers_mnist, nuisance_info, shiftmnist

    for config_class in (nuisance_info.Config, shiftmnist.BinaryConfig, metamers_mnist.Config):
        paper = config_class.for_budget("paper")
        assert (paper.ice.adversary_input, paper.ice.warmup_epochs) == ("raw", 0)
        assert (paper.model.blocks_per_stage, paper.model.hidden) == (16, 128)
        cpu = config_class.for_budget("cpu")
        assert (cpu.ice.adversary_input, cpu.ice.warmup_epochs) == ("standardized", 1)
        # The iCE studies' cpu network is the ablation's "-big" one; the others keep 2 x 32.
        assert (cpu.model.blocks_per_stage, cpu.model.hidden, cpu.model.coupling) == (
            4, 64, "additive")  # fmt: skip
    plain = MnistStudyConfig.for_budget("cpu").model
    assert (plain.blocks_per_stage, plain.hidden) == (2, 32)
