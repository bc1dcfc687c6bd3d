"""Smoke runs of ims-classify: the protocol runs end to end and reacts to the class signal."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from preimage.analysis.ims_protocol import AugmentedLoss, KernelL2Loss, SpectrumAugment
from preimage.data import synthetic_tma, write_imzml
from preimage.errors import ConfigError
from preimage.models import IsotopeNet, count_parameters
from preimage.studies import get_study
from preimage.studies import ims_classify as study


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[float, tuple[Path, dict]]:
    out = {}
    for signal in (1.0, 0.0):
        path = tmp_path_factory.mktemp(f"signal{signal:g}")
        config = study.Config.for_budget("smoke", progress=False, class_signal=signal, seed=0)
        out[signal] = (path, study.run(config, path))
    return out


def test_smoke_run_writes_report_and_figures(runs: dict) -> None:
    path, metrics = runs[1.0]
    for name in (
        "report.html",
        "metrics.json",
        "config.json",
        "figures/folds.png",
        "figures/sensitivity.png",
        "figures/isotope_width.png",
    ):
        assert (path / name).is_file(), name
    assert json.loads((path / "metrics.json").read_text())["n_spots"] == 384
    assert metrics["folds_max_shared_tmas"] == 0 and metrics["target_folds_share_no_tma_met"]
    assert metrics["isotopenet_receptive_field"] == 49
    assert get_study("ims-classify") is study
    for name in ("isotopenet", "residualnet"):
        assert 0.0 <= metrics[f"{name}_spot_median"] <= 1.0
    assert "target_isotopenet_above_roclda_spot_met" in metrics


def test_baseline_follows_the_class_signal(runs: dict) -> None:
    _, on = runs[1.0]
    _, off = runs[0.0]
    # With the planted proteins the ROC bins lie on their peptides and ROC/LDA classifies;
    # without them it falls back towards chance under the TMA-grouped folds.
    assert on["roclda_spot_best"] > 0.8 and on["roclda_core_worst"] > 0.8
    assert off["roclda_spot_worst"] < 0.6
    assert on["roclda_top10_planted_fraction"] > off["roclda_top10_planted_fraction"]
    assert on["roclda_top10_planted_fraction"] > on["planted_bins_fraction"]
    assert "target_null_isotopenet_spot_met" in off
    assert "target_isotopenet_above_roclda_spot_met" not in off


def test_imzml_path_gives_the_synthetic_results(runs: dict, tmp_path: Path) -> None:
    # The same spots through write_imzml / load_imzml must give the same baseline figures.
    imzml, table = write_imzml(synthetic_tma("tiny", seed=0), tmp_path / "data" / "tiny")
    config = study.Config.for_budget(
        "smoke", progress=False, imzml=str(imzml), metadata=str(table), models=("isotopenet",)
    )
    metrics = study.run(config, tmp_path / "run")
    _, synthetic = runs[1.0]
    for key in ("n_spots", "n_cores", "roclda_spot_best", "roclda_core_worst", "roclda_best_k"):
        assert metrics[key] == synthetic[key], key
    assert "roclda_top10_planted_fraction" not in metrics


def test_table_a2_lambda_is_a_kernel_penalty_not_an_optimizer_decay() -> None:
    # Keras' l2(lambda) of table A.2: lambda * sum ||W||^2 over kernels in the loss; torch's
    # weight decay (on every parameter, batch-norm scales included) only when asked for.
    paper = study.Config.for_budget("paper", progress=False)
    assert paper.iso.loss_fn("adsq", "isotopenet").l2 == 0.05
    assert paper.iso.train_config("adsq", "isotopenet", seed=0, device="cpu").weight_decay == 0.0
    assert paper.iso.callbacks() == []  # table A.2: one constant step size
    decay = study.NetSettings(l2_on="all")
    assert decay.loss_fn("lp", "residualnet").l2 == 0.0
    assert decay.train_config("lp", "residualnet", seed=0, device="cpu").weight_decay == 0.002
    cpu = study.Config.for_budget("cpu", progress=False)
    assert [type(cb).__name__ for cb in cpu.iso.callbacks()] == ["CosineLr"]
    with pytest.raises(ConfigError):
        study.NetSettings(lr_schedule="linear")


def test_cpu_budget_shifts_isotopenet_spectra_and_paper_budget_does_not() -> None:
    cpu = study.Config.for_budget("cpu", progress=False)
    loss = cpu.iso.loss_fn("adsq", "isotopenet")
    assert isinstance(loss, AugmentedLoss) and loss.augment == SpectrumAugment(max_shift=1)
    assert loss.loss == KernelL2Loss(0.005)
    assert isinstance(cpu.res.loss_fn("adsq", "residualnet"), KernelL2Loss)  # no augmentation
    paper = study.Config.for_budget("paper", progress=False)
    assert isinstance(paper.iso.loss_fn("adsq", "isotopenet"), KernelL2Loss)
    assert study.Config.for_budget("cpu", progress=False, **{"iso.shift": 0}).iso.shift == 0
    for bad in ({"shift": -1}, {"gain_sd": -0.1}):
        with pytest.raises(ConfigError):
            study.NetSettings(**bad)


def test_first_repeat_splits_the_trainings_across_runs(runs: dict, tmp_path: Path) -> None:
    def spot(name: str, **overrides: object) -> float:
        config = study.Config.for_budget(
            "smoke", progress=False, seed=0, models=("isotopenet",), **overrides
        )
        return study.run(config, tmp_path / name)["isotopenet_spot_median"]

    # The fixture's run is training 0; the median of two trainings is their mean.
    first = runs[1.0][1]["isotopenet_spot_median"]
    second = spot("second", first_repeat=1)
    both = spot("both", repeats=2)
    assert second != first
    assert both == pytest.approx((first + second) / 2)
    with pytest.raises(ConfigError, match="first_repeat"):
        study.Config.for_budget("smoke", first_repeat=-1)


def test_iso_maps_widens_the_trained_isotopenet(runs: dict, tmp_path: Path) -> None:
    base = runs[1.0][1]
    config = study.Config.for_budget(
        "smoke", progress=False, seed=0, models=("isotopenet",), iso_maps=4
    )
    metrics = study.run(config, tmp_path / "maps4")
    narrow = IsotopeNet((1, metrics["n_bins"]), 2, maps=4)
    assert metrics["isotopenet_parameters"] == count_parameters(narrow)
    assert metrics["isotopenet_parameters"] < base["isotopenet_parameters"]
    with pytest.raises(ConfigError, match="iso_maps"):
        study.Config.for_budget("smoke", iso_maps=0)
