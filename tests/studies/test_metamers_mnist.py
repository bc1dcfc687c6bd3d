"""Smoke test of the metamers-mnist study (figures 5 and 7)."""

from __future__ import annotations

import numpy as np
import pytest

from preimage.studies import metamers_mnist


def test_metamers_mnist_smoke(tmp_path, data_root) -> None:
    if not (data_root / "mnist").is_dir():
        pytest.skip("MNIST not available")
    config = metamers_mnist.Config.for_budget("smoke", progress=False, data_dir=str(data_root))
    metrics = metamers_mnist.run(config, tmp_path)
    arrays = np.load(tmp_path / "metamers.npz")
    for o in ("ce", "ice"):
        x = arrays[f"{o}_x_met"]
        assert x.shape == (config.n_pairs, 1, 28, 28)
        assert x.min() >= 0.0 and x.max() <= 1.0
        assert np.all(arrays[f"{o}_y_semantic"] != arrays[f"{o}_y_nuisance"])
        nuis, sem = (
            metrics[f"{o}_oracle_nuisance_class_rate"],
            metrics[f"{o}_oracle_semantic_class_rate"],
        )
        # Sources have different labels, so the oracle cannot name both for one metamer.
        assert nuis >= 0.0 and sem >= 0.0 and nuis + sem <= 1.0
        # Unclipped metamers keep the logits of their semantic source (exact pre-images).
        assert metrics[f"{o}_max_logit_change_unclipped"] < 1e-3
        for fig in (f"metamers_{o}", f"interpolation_{o}"):
            assert (tmp_path / "figures" / f"{fig}.png").stat().st_size > 1000
    assert (tmp_path / "report.html").is_file()
    assert (tmp_path / "checkpoints" / "oracle.safetensors").is_file()
