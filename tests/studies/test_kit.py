"""Tests of the study kit's targets (moved from the invariance helpers' tests)."""

from __future__ import annotations

import json

import pytest

from preimage.errors import ConfigError
from preimage.studies.base import StudyConfig
from preimage.studies.kit import StudyRun, Target, study_entry


def test_targets_become_flags_and_rows(tmp_path) -> None:
    study = StudyRun("toy-study", StudyConfig(seed=7, device="cpu"), tmp_path, echo=False)
    study.check("a", 0.3, ">= 0.2")
    missed = study.check("b", 0.1, ">= 0.2")
    assert missed == Target("b", 0.1, ">= 0.2", False)
    assert missed.row() == {"target": "b", "value": 0.1, "goal": ">= 0.2", "met": "missed"}
    metrics = study.finish({"x": 1.0})
    assert metrics == {"x": 1.0, "target_a_met": True, "target_b_met": False}
    written = json.loads((tmp_path / "config.json").read_text())
    assert written["command"] == "run toy-study" and written["seed"] == 7
    with pytest.raises(ConfigError):
        study.finish({})


def _toy_entry(checked: list[int]):
    def refuse_odd_seeds(config: StudyConfig) -> None:
        checked.append(config.seed)
        if config.seed % 2:
            raise ConfigError(f"odd seed {config.seed}")

    @study_entry("toy-entry", title="Toy entry", intro="Static intro.", check=refuse_odd_seeds)
    def run(study: StudyRun, config: StudyConfig) -> dict:
        """The toy body."""
        study.text(f"Seed {config.seed}.")
        study.check("seed_even", config.seed, "== 0")
        return study.finish({"seed": config.seed})

    return run


def test_study_entry_opens_the_run_and_checks_before_it(tmp_path) -> None:
    checked: list[int] = []
    run = _toy_entry(checked)
    assert run.__name__ == "run" and run.__doc__ == "The toy body."
    metrics = run(StudyConfig(device="cpu"), tmp_path / "a", argv=["preimage", "run", "toy"])
    assert metrics == {"seed": 0, "target_seed_even_met": True}
    written = json.loads((tmp_path / "a" / "config.json").read_text())
    assert written["command"] == "run toy-entry" and written["argv"] == ["preimage", "run", "toy"]
    html = (tmp_path / "a" / "report.html").read_text()
    assert "Toy entry" in html and html.index("Static intro.") < html.index("Seed 0.")
    with pytest.raises(ConfigError, match="odd seed"):
        run(StudyConfig(seed=1, device="cpu"), tmp_path / "b")
    assert checked == [0, 1] and not (tmp_path / "b").exists()


def test_compare_checks_one_metric_against_another(tmp_path) -> None:
    study = StudyRun("toy-compare", StudyConfig(device="cpu"), tmp_path, echo=False)
    metrics = {"a": 0.3, "b": 0.1, "gap": float("nan")}
    assert study.compare("b_below_a", metrics, "b", "<", "a", "< A") == Target(
        "b_below_a", 0.1, "< A", True
    )
    assert not study.compare("a_below_b", metrics, "a", "<=", "b", "<= B").met
    # A NaN on either side meets no goal, not even one that NaN comparisons would satisfy.
    assert not study.compare("gap_differs", metrics, "gap", "!=", "a", "!= A").met
    assert not study.compare("a_differs", metrics, "a", "!=", "gap", "!= gap").met
    with pytest.raises(ConfigError, match="unknown comparison"):
        study.compare("bad", metrics, "a", "<<", "b", "<< B")
    with pytest.raises(KeyError):
        study.compare("missing", metrics, "a", "<", "c", "< C")
