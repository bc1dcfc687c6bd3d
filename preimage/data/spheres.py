r"""Adversarial Spheres: two concentric spheres whose only semantic variable is the radius.

Class 0 lives uniformly on the sphere of radius :math:`r_1`, class 1 on the sphere of radius
:math:`r_2 > r_1`, both in :math:`\mathbb{R}^d`. In spherical coordinates :math:`(r, \varphi)`
every change of :math:`\varphi` is a nuisance and every change of :math:`r` is semantic, so the
oracle is analytic: the max-margin rule
:math:`o(x) = \mathbb{1}[\lVert x \rVert_2 \ge (r_1 + r_2)/2]` (:func:`sphere_label`).

A uniform point on a sphere is a standard normal vector scaled to the radius,
:math:`x = r\, z / \lVert z \rVert_2` with :math:`z \sim \mathcal{N}(0, I_d)`, because the
standard normal is rotation invariant.

References:
    Gilmer et al. (2018), Adversarial Spheres, section 2 (the data set);
    Jacobsen et al. (2019), Excessive Invariance Causes Adversarial Vulnerability, section 2
    and appendix A (semantic vs. nuisance on the spheres, the max-margin oracle), section 4
    "Attack on adversarial spheres" and appendix D.1 (:math:`d = 100`, :math:`R_1 = 1`,
    :math:`R_2 = 10`, the defaults here).
"""

from __future__ import annotations

import torch
from torch import Tensor

from preimage.errors import ConfigError, ShapeError

__all__ = ["sample_spheres", "sphere_label"]


def _check_radii(r1: float, r2: float) -> None:
    if not 0.0 < r1 < r2:
        raise ConfigError(f"radii must satisfy 0 < r1 < r2, got r1={r1}, r2={r2}")


def sample_spheres(
    n: int,
    *,
    d: int = 100,
    r1: float = 1.0,
    r2: float = 10.0,
    seed: int = 0,
    dtype: torch.dtype = torch.float32,
) -> tuple[Tensor, Tensor]:
    r"""Sample ``n`` labelled points uniformly from the two spheres.

    Half of the points (``n // 2``) lie on the inner sphere (label 0) and the rest on the outer
    sphere (label 1; it gets the extra point when ``n`` is odd), in shuffled order. Sampling
    uses a private :class:`torch.Generator` on the CPU in float64 and casts at the end, so a
    seed gives the same points on every machine, device and dtype; move them with ``.to()``.

    Args:
        n: Number of points, at least 1.
        d: Ambient dimension, at least 2.
        r1: Radius of the inner sphere (label 0).
        r2: Radius of the outer sphere (label 1), larger than ``r1``.
        seed: Seed of the private generator, in :math:`[0, 2^{64})`.
        dtype: Floating-point dtype of the returned points.

    Returns:
        ``(x, y)``: points of shape ``(n, d)`` and ``dtype``, labels int64 of shape ``(n,)``.

    Raises:
        ConfigError: For ``n < 1``, ``d < 2``, radii not satisfying :math:`0 < r_1 < r_2`, a
            seed out of range or a non-floating ``dtype``.

    Example:
        >>> x, y = sample_spheres(6, d=3, seed=1)
        >>> x.shape, y.tolist().count(0), y.tolist().count(1)
        (torch.Size([6, 3]), 3, 3)
        >>> bool(torch.equal(sphere_label(x, r1=1.0, r2=10.0), y))
        True
    """
    if n < 1:
        raise ConfigError(f"n must be at least 1, got {n}")
    if d < 2:
        raise ConfigError(f"d must be at least 2, got {d}")
    _check_radii(r1, r2)
    if not 0 <= seed < 2**64:
        raise ConfigError(f"seed must lie in [0, 2**64), got {seed}")
    if not dtype.is_floating_point:
        raise ConfigError(f"dtype must be a floating-point dtype, got {dtype}")
    generator = torch.Generator(device="cpu").manual_seed(seed)
    n_inner = n // 2
    labels = torch.cat(
        [torch.zeros(n_inner, dtype=torch.int64), torch.ones(n - n_inner, dtype=torch.int64)]
    )
    z = torch.randn(n, d, generator=generator, dtype=torch.float64)
    radii = torch.tensor([r1, r2], dtype=torch.float64)[labels]
    x = z * (radii / torch.linalg.vector_norm(z, dim=1)).unsqueeze(1)
    order = torch.randperm(n, generator=generator)
    return x[order].to(dtype), labels[order]


def sphere_label(x: Tensor, *, r1: float, r2: float) -> Tensor:
    r"""The analytic oracle: 0 inside the mid radius, 1 outside.

    :math:`o(x) = 0` if :math:`\lVert x \rVert_2 < (r_1 + r_2)/2` else 1, the max-margin rule of
    Jacobsen et al. (2019), appendix A. It labels any input, on or off the spheres, independently
    of any model, which makes it the oracle of invariance attacks on this data set.

    Args:
        x: Points of shape ``(..., d)``; the norm is taken over the last dimension.
        r1: Inner radius.
        r2: Outer radius, larger than ``r1``.

    Returns:
        int64 labels of shape ``x.shape[:-1]`` on ``x``'s device.

    Raises:
        ConfigError: For radii not satisfying :math:`0 < r_1 < r_2`.
        ShapeError: For a zero-dimensional ``x``.

    Example:
        >>> sphere_label(torch.tensor([[0.5, 0.0], [0.0, 6.0]]), r1=1.0, r2=10.0)
        tensor([0, 1])
    """
    _check_radii(r1, r2)
    if x.ndim < 1:
        raise ShapeError("sphere_label needs points of shape (..., d), got a scalar")
    norms = torch.linalg.vector_norm(x, dim=-1)
    return (norms >= (r1 + r2) / 2).to(torch.int64)
