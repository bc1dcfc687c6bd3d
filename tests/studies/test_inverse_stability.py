"""Smoke and behaviour tests of the inverse-stability study."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest

from preimage.errors import ConfigError
from preimage.studies.inverse_stability import LAYERS, Config, run


@pytest.mark.parametrize("channels", [3, 1])
def test_smoke_run(tmp_path: Path, data_root: Path, channels: int) -> None:
    if not (data_root / "mnist").is_dir():
        pytest.skip("MNIST not available")
    config = Config.for_budget("smoke", progress=False, data_dir=str(data_root), channels=channels)
    metrics = run(config, tmp_path)
    inputs = channels * 8 * 8
    assert metrics["inputs"] == inputs
    for name in ("config.json", "metrics.json", "report.html", "figures/spectra.png"):
        assert (tmp_path / name).is_file(), name
    for variant in ("wide", "thin"):
        assert (tmp_path / "checkpoints" / f"{variant}.safetensors").is_file()
        ranks = [metrics[f"{variant}_{layer}_rank"] for layer in LAYERS]
        # The first convolution (32 maps) is injective on the 8x8 input: full rank, no
        # invariant direction; later layers multiply the linearisation by more matrices, so
        # the rank can only fall, and ReLU (a row projection) never raises sigma_max.
        assert ranks[0] == inputs
        assert all(b <= a for a, b in itertools.pairwise(ranks))
        for i in range(1, 7):
            assert (
                metrics[f"{variant}_relu{i}_sigma_max"] <= metrics[f"{variant}_conv{i}_sigma_max"]
            )
    assert metrics["wide_conv2_units"] == 64 * 4 * 4 and metrics["thin_conv2_units"] == 32 * 4 * 4
    spectra = np.load(tmp_path / "spectra.npz")
    assert spectra["wide_relu1"].shape == (inputs,)


def test_bad_channels_exit_before_any_folder(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="channels"):
        run(Config(channels=2, progress=False), tmp_path / "run")
    assert not (tmp_path / "run").exists()
