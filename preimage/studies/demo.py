r"""``preimage demo``: a small fi-RevNet on the embedded 8x8 digits, end to end in minutes.

It trains a fully invertible RevNet on scikit-learn's bundled digits (no download), measures test
accuracy and the reconstruction error :math:`\max|x - F^{-1}(F(x))|`, and writes a report with
reconstructions and a grid of metameric samples :math:`x^* = F^{-1}(z_s(a), z_n(b))`
(rows: logits source :math:`a`, columns: nuisance source :math:`b`).

References:
    Jacobsen et al. (2019), *Excessive Invariance Causes Adversarial Vulnerability*, section 2.1
    and figure 1 (metameric sampling).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from preimage.train import TrainConfig
from preimage.workflow import DATASET_PRESETS, train_run

__all__ = ["DemoConfig", "run"]


@dataclass(frozen=True)
class DemoConfig:
    """Settings of the demo; the defaults finish in about a minute on 2 CPU cores.

    Attributes:
        epochs: training epochs on the 1347 training digits.
        seed: random seed.
        device: ``auto``, ``cpu``, ``cuda`` ...
        progress: show progress bars.
        model_options: FiRevNet options (default: the ``digits`` preset).
    """

    epochs: int = 20
    seed: int = 0
    device: str = "auto"
    progress: bool = True
    model_options: dict[str, Any] = field(
        default_factory=lambda: dict(DATASET_PRESETS["digits"]["model"])
    )


def run(
    config: DemoConfig,
    out_dir: str | os.PathLike[str],
    *,
    argv: Sequence[str] | None = None,
    overwrite: bool = False,
) -> dict[str, Any]:
    """Train the demo model into ``out_dir`` and return its metrics.

    ``overwrite`` replaces an earlier run in ``out_dir`` (``make demo`` passes it, so that it
    can run again).

    Example:
        >>> import tempfile
        >>> from dataclasses import replace
        >>> tiny = {"stages": 2, "blocks_per_stage": 1, "hidden": 8}
        >>> config = replace(DemoConfig(), epochs=1, progress=False, model_options=tiny)
        >>> metrics = run(config, tempfile.mkdtemp())
        >>> 0.0 <= metrics["test_accuracy"] <= 1.0
        True
    """
    preset = DATASET_PRESETS["digits"]["train"]
    train = TrainConfig(
        **{
            **preset,
            "epochs": config.epochs,
            "seed": config.seed,
            "device": config.device,
            "lr_step": max(1, (2 * config.epochs) // 3),
        }
    )
    return train_run(
        out_dir,
        dataset="digits",
        model_options=config.model_options,
        train=train,
        argv=argv,
        progress=config.progress,
        title="preimage demo: a fully invertible RevNet on 8x8 digits",
        extra_config={"demo": asdict(config)},
        overwrite=overwrite,
    )
