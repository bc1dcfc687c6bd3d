r"""``preimage run shiftmnist-binary``: binary shiftMNIST, CE vs iCE under distribution shift.

In binary shiftMNIST a single pixel on the left border codes the class; D_adv removes it. A CNN
baseline and a fi-RevNet trained with cross-entropy, and a fi-RevNet trained with the independence
cross-entropy, are compared on D_train and D_adv (figure 8 (a)); target: the iCE D_adv error is at
least 15 points below the CE fi-RevNet's. See :mod:`preimage.studies.shiftmnist_common` for the
procedure and deviations.

References:
    Jacobsen, Behrmann, Zemel, Bethge (2019), *Excessive Invariance Causes Adversarial
    Vulnerability*, section 4 ("shiftMNIST") and figure 8 (a).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from preimage.studies.shiftmnist_common import ShiftConfig, run_shift

__all__ = ["MIN_GAIN_POINTS", "Config", "run"]

MIN_GAIN_POINTS = 15.0
"""Target: how many points lower the iCE D_adv error must be than the CE fi-RevNet's."""


@dataclass(frozen=True)
class Config(ShiftConfig):
    """Settings of binary shiftMNIST (defaults: the ``cpu`` budget); see :class:`ShiftConfig`.

    Example:
        >>> Config.for_budget("smoke").epochs, Config.for_budget("paper").blocks_per_stage
        (1, 16)
    """


def run(
    config: Config, out_dir: str | os.PathLike[str], *, argv: Sequence[str] | None = None
) -> dict[str, Any]:
    """Run binary shiftMNIST into ``out_dir`` and return its metrics."""
    return run_shift(config, out_dir, variant="binary", min_gain_points=MIN_GAIN_POINTS, argv=argv)
