r"""Seeded samplers of the 2-D toy densities used to compare normalising flows.

Four standard targets of the flow literature (FFJORD, i-ResNet, Residual Flows): two
interleaved half circles (``"moons"``), a mixture of eight Gaussians on a circle
(``"8gaussians"``), a 4x4 checkerboard (``"checkerboard"``) and concentric rings
(``"rings"``). All are scaled to roughly :math:`[-4, 4]^2`, the range of the FFJORD and
Residual Flows toy experiments, so one prior :math:`\mathcal N(0, I)` fits them all.

References:
    Behrmann (thesis), *Invertibility and Domain Knowledge*, figure 5.2 and section 5.4
    (2-D densities of i-ResNet vs Glow). Grathwohl et al. (2019), *FFJORD*, section 5.1 (the
    same toy datasets).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch
from torch import Tensor

from preimage.errors import ConfigError

__all__ = ["TOY2D", "sample_toy2d"]


def _moons(n: int, rng: np.random.Generator) -> np.ndarray:
    upper = rng.random(n) < 0.5
    angle = rng.random(n) * math.pi
    x = np.where(upper, np.cos(angle), 1.0 - np.cos(angle))
    y = np.where(upper, np.sin(angle), 0.5 - np.sin(angle))
    points = np.stack([x, y], axis=1) + 0.08 * rng.standard_normal((n, 2))
    # Centre the pair of moons and stretch it to the common [-4, 4] range.
    return 2.0 * (points - np.array([0.5, 0.25]))


def _eight_gaussians(n: int, rng: np.random.Generator) -> np.ndarray:
    angles = 2.0 * math.pi * rng.integers(0, 8, n) / 8.0
    centres = 2.0 * math.sqrt(2.0) * np.stack([np.cos(angles), np.sin(angles)], axis=1)
    return centres + 0.5 * 0.5 * math.sqrt(2.0) * rng.standard_normal((n, 2))


def _checkerboard(n: int, rng: np.random.Generator) -> np.ndarray:
    x1 = rng.random(n) * 4.0 - 2.0
    x2 = rng.random(n) - rng.integers(0, 2, n) * 2.0
    # Shifting the second coordinate by one cell in every other column makes the board.
    x2 = x2 + np.floor(x1) % 2
    return 2.0 * np.stack([x1, x2], axis=1)


def _rings(n: int, rng: np.random.Generator) -> np.ndarray:
    radii = np.array([1.0, 2.0, 3.0, 4.0])
    ring = rng.integers(0, 4, n)
    angle = rng.random(n) * 2.0 * math.pi
    r = radii[ring] * 0.9 + 0.08 * rng.standard_normal(n)
    return np.stack([r * np.cos(angle), r * np.sin(angle)], axis=1)


TOY2D: dict[str, Callable[[int, np.random.Generator], np.ndarray]] = {
    "moons": _moons,
    "8gaussians": _eight_gaussians,
    "checkerboard": _checkerboard,
    "rings": _rings,
}
"""Name -> sampler ``(n, rng) -> (n, 2)`` NumPy array."""


def sample_toy2d(
    name: str,
    n: int,
    *,
    seed: int = 0,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
) -> Tensor:
    r"""Draw ``n`` points of the named 2-D toy density.

    Args:
        name: ``"moons"``, ``"8gaussians"``, ``"checkerboard"`` or ``"rings"``.
        n: number of points, positive.
        seed: seed of a private NumPy generator (same seed, same points).
        dtype: floating dtype of the result.
        device: device of the result.

    Returns:
        Points of shape ``(n, 2)``.

    Raises:
        ConfigError: unknown name or non-positive ``n``.

    References:
        Behrmann (thesis), *Invertibility and Domain Knowledge*, figure 5.2;
        Grathwohl et al. (2019), *FFJORD*, section 5.1.

    Example:
        >>> x = sample_toy2d("8gaussians", 5, seed=1)
        >>> x.shape, bool(torch.equal(x, sample_toy2d("8gaussians", 5, seed=1)))
        (torch.Size([5, 2]), True)
    """
    if name not in TOY2D:
        raise ConfigError(f"unknown toy density {name!r}; choose one of {', '.join(TOY2D)}")
    if n < 1:
        raise ConfigError(f"need at least one point, got n={n}")
    rng = np.random.default_rng(seed)
    points = TOY2D[name](int(n), rng)
    return torch.as_tensor(points, dtype=dtype, device=device)
