"""Smoke test of the metamers-mnist study (figures 5 and 7)."""

from __future__ import annotations

import json

import numpy as np

from preimage.studies import metamers_mnist
from preimage.train import read_checkpoint_metadata


def test_metamers_mnist_smoke(tmp_path, data_root, ice_trained_ice) -> None:
    config = metamers_mnist.Config.for_budget("smoke", progress=False, data_dir=str(data_root))
    metrics = metamers_mnist.run(config, tmp_path)
    arrays = np.load(tmp_path / "metamers.npz")
    for o in ("ce", "ice"):
        x = arrays[f"{o}_x_met"]
        assert x.shape == (config.n_pairs, 1, 28, 28)
        assert x.min() >= 0.0 and x.max() <= 1.0
        assert np.all(arrays[f"{o}_y_semantic"] != arrays[f"{o}_y_nuisance"])
        # Unclipped metamers keep the logits of their semantic source (exact pre-images).
        assert metrics[f"{o}_max_logit_change_unclipped"] < 1e-3
        # They take the nuisance of the other source, which is most of the 784 dimensions: a
        # metamer looks like its nuisance source, not like its logit source (figure 5).
        near, far = (metrics[f"{o}_mean_l2_to_{s}_source"] for s in ("nuisance", "semantic"))
        assert near < 0.25 * far
        for fig in (f"metamers_{o}", f"interpolation_{o}"):
            assert (tmp_path / "figures" / f"{fig}.png").stat().st_size > 1000
    report = (tmp_path / "report.html").read_text()
    assert "clamped to [0, 1] for display" in report and "Smoke budget" in report
    ckpt = tmp_path / "checkpoints"
    assert (ckpt / "oracle.safetensors").is_file()
    ice_trained_ice(ckpt / "ce.safetensors", ckpt / "ice.safetensors")
    # The fi-RevNets follow the study's recipe, not the oracle's (seed + 11, oracle_epochs).
    for o in ("ce", "ice"):
        state = json.loads(read_checkpoint_metadata(ckpt / f"{o}.safetensors")["state"])
        assert state["train"]["seed"] == config.seed
        assert state["train"]["epochs"] == config.train.epochs
