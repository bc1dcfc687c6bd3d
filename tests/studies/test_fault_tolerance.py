from __future__ import annotations

from pathlib import Path

import numpy as np

from preimage.studies.fault_tolerance import Config, run


def test_smoke_run(tmp_path: Path, mnist_root: Path) -> None:
    config = Config.for_budget("smoke", progress=False, data_dir=str(mnist_root), dataset="mnist")
    metrics = run(config, tmp_path)
    for name in ("report.html", "figures/information_vs_snr.png", "figures/accuracy_vs_snr.png"):
        assert (tmp_path / name).is_file(), name
    curves = np.load(tmp_path / "curves.npz")
    for model in ("B", "C"):
        for noise in ("L2", "Linf"):
            snr = curves[f"{model}_{noise}_snr_db"]
            # Unbounded steps only ever add noise: the SNR falls along the trajectory.
            assert snr.size == config.attack_steps // config.record_every
            assert np.all(np.diff(snr) < 0)
            # The attack drives accuracy to 0, below the clean accuracy.
            assert metrics[f"{model}_{noise}_final_accuracy"] == 0.0
        gauss = curves[f"{model}_Gauss_snr_db"]
        np.testing.assert_allclose(gauss, config.gauss_snrs, atol=1e-4)
        # At 40 dB Gaussian noise changes (almost) no decision.
        clean = metrics[f"{model}_test_accuracy"]
        assert abs(curves[f"{model}_Gauss_accuracy"][0] - clean) <= 0.05
    assert metrics["target_B_minus_C_L2_information_bits_met"] == (
        metrics["B_minus_C_L2_information_bits"] > 0
    )
