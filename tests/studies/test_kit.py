"""Tests of the study kit's targets (moved from the invariance helpers' tests)."""

from __future__ import annotations

import json

import pytest

from preimage.errors import ConfigError
from preimage.studies.base import StudyConfig
from preimage.studies.kit import StudyRun, Target


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
