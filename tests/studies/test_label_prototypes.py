from __future__ import annotations

from pathlib import Path

import torch

from preimage.studies.label_prototypes import Config, prototype_match_rate, run


def test_match_rate_of_class_means_and_of_a_shuffle() -> None:
    gen = torch.Generator().manual_seed(0)
    images = torch.rand(500, 1, 4, 4, generator=gen)
    labels = torch.arange(500) % 10
    images.view(500, -1)[torch.arange(500), labels] += 3.0  # class c lights pixel c
    means = torch.stack([images[labels == c].mean(0) for c in range(10)])
    assert prototype_match_rate(means, images, labels) == 1.0
    shuffled = means[torch.tensor([1, 2, 3, 4, 5, 6, 7, 8, 9, 0])]
    assert prototype_match_rate(shuffled, images, labels) < 0.5


def test_smoke_run(tmp_path: Path, mnist_root: Path) -> None:
    config = Config.for_budget("smoke", progress=False, data_dir=str(mnist_root), dataset="mnist")
    metrics = run(config, tmp_path)
    assert (tmp_path / "figures" / "prototypes.png").is_file()
    for model in ("A", "B"):
        # Descending each label's loss makes the model predict that label.
        assert metrics[f"{model}_classified_as_label"] == 1.0
        assert 0 < metrics[f"{model}_mean_steps"] <= config.max_steps
    assert metrics["target_B_more_prototypical_than_A_met"] == (
        metrics["B_prototype_match_rate"] > metrics["A_prototype_match_rate"]
    )
