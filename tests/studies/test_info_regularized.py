"""Smoke test of the information-regularised ResNet study (tables 1-2)."""

from __future__ import annotations

from preimage.studies import get_study, info_regularized


def test_info_regularized_smoke(tmp_path) -> None:
    config = info_regularized.Config.for_budget("smoke", progress=False)
    metrics = info_regularized.run(config, tmp_path)
    for name in ("config.json", "metrics.json", "report.html", "figures/constrain.png"):
        assert (tmp_path / name).is_file(), name
    keys = [s.key for s in info_regularized.settings(config)]
    assert len(keys) == 8 and "resnet_naive_0.002" in keys and "plainnet_proposed_0.3" in keys
    for key in keys:
        assert len(metrics[f"{key}_accuracy"]) == config.seeds
        assert min(metrics[f"{key}_constrain"]) >= 0.0
    # Seeds give different runs, and a strong regulariser compresses the predictions.
    assert (
        len(set(metrics["resnet_proposed_0_accuracy"] + metrics["resnet_proposed_0_constrain"])) > 2
    )
    for arch in ("resnet", "plainnet"):
        strong = metrics[f"{arch}_proposed_0.3_constrain_mean"]
        assert strong < 0.5 * metrics[f"{arch}_proposed_0_constrain_mean"]
    assert get_study("info-regularized") is info_regularized
