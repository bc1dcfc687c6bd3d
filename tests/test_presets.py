"""Tests of preimage.presets: one table of per-dataset defaults for the CLI and the studies."""

from __future__ import annotations

import pytest

from preimage.errors import ConfigError
from preimage.presets import DATASET_PRESETS, model_preset, train_preset
from preimage.studies import spheres
from preimage.workflow import DATASET_PRESETS as WORKFLOW_PRESETS


def test_the_cli_and_the_studies_share_one_table() -> None:
    assert WORKFLOW_PRESETS is DATASET_PRESETS
    config = spheres.Config()
    assert config.model == model_preset("spheres")
    assert config.train == train_preset("spheres", epochs=4, batch_size=128)
    assert (config.train.optimizer, config.train.lr, config.model.batch_norm) == (
        "adam",
        1e-4,
        False,
    )


def test_presets_apply_changes_and_refuse_unknown_names() -> None:
    assert model_preset("mnist", coupling="additive").blocks_per_stage == 2
    assert train_preset("digits").batch_size == 32
    with pytest.raises(ConfigError, match="no preset"):
        model_preset("cifar")
    with pytest.raises(ConfigError, match="model preset"):
        model_preset("mnist", width=3)
