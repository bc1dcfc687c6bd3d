r"""Metameric sampling: exact logit pre-images of a bijective classifier.

For a bijective network :math:`F` with simplified read-out, :math:`z = F(x) = (z_s, z_n)` with
the logits :math:`z_s` and the nuisance :math:`z_n`. A *metamer* combines the logits of one input
with the nuisance of another,

.. math::

    x_{met} = F^{-1}\big(z_s(x_{semantic}),\ z_n(x_{nuisance})\big),

so that :math:`F(x_{met})_{1..C} = z_s(x_{semantic})` exactly (up to floating point): it lies in
the logit pre-image of :math:`x_{semantic}` (definition 1 (ii)) and is an invariance-based
adversarial example whenever an oracle labels it differently (definition 3).

The model must follow the invertible-classifier contract: ``model(x) -> (z, logdet)`` with flat
``z``, ``model.inverse(z) -> x``, ``model.split(z) -> (z_s, z_n)`` and
``model.merge(z_s, z_n) -> z``. Everything here runs under ``torch.no_grad`` in eval mode (every
submodule's training flag is restored afterwards).

References:
    Jacobsen, Behrmann, Zemel, Bethge (2019), *Excessive Invariance Causes Adversarial
    Vulnerability*, section 2.1 ("Analytic attack", metameric sampling), figures 1, 5 and 7.
    Behrmann (thesis), *Invertibility and Domain Knowledge*, definition 6.8.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from preimage.attacks.base import eval_mode
from preimage.errors import ConfigError, ShapeError
from preimage.nn.classifier import BijectiveClassifier

__all__ = ["interpolate_nuisance", "metamer_grid", "metameric_sample"]


def _check_model(model: nn.Module) -> None:
    if not isinstance(model, BijectiveClassifier):
        raise ConfigError(
            f"{type(model).__name__} is not a bijective classifier (see "
            "preimage.nn.BijectiveClassifier); metameric sampling needs inverse, split and merge"
        )


def _check_batch(x: Tensor, name: str) -> None:
    if not isinstance(x, Tensor):
        raise ConfigError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if x.dim() < 2 or x.shape[0] == 0:
        raise ShapeError(f"{name} must be a non-empty batch (batch, ...), got {tuple(x.shape)}")
    if not bool(torch.isfinite(x).all()):
        raise ConfigError(f"{name} contain NaN or infinite values")


def _check_pair(a: Tensor, b: Tensor, names: tuple[str, str]) -> None:
    _check_batch(a, names[0])
    _check_batch(b, names[1])
    if a.shape[1:] != b.shape[1:]:
        raise ShapeError(
            f"{names[0]} and {names[1]} must have the same sample shape, got "
            f"{tuple(a.shape[1:])} and {tuple(b.shape[1:])}"
        )


def _split(model: nn.Module, x: Tensor) -> tuple[Tensor, Tensor]:
    z, _ = model(x)
    return model.split(z)


def metameric_sample(model: nn.Module, x_semantic: Tensor, x_nuisance: Tensor) -> Tensor:
    r"""Pair-wise metamers :math:`F^{-1}(z_s(x_{semantic}[i]), z_n(x_{nuisance}[i]))`.

    Args:
        model: an invertible classifier (see the module docstring).
        x_semantic: batch whose logits the metamers keep, shape ``(B, ...)``.
        x_nuisance: batch whose nuisance the metamers take, same shape.

    Returns:
        The metamers, shape ``(B, ...)``.

    Raises:
        ConfigError: the model lacks the contract's methods, or the inputs are not finite.
        ShapeError: the two batches differ in shape.

    Example:
        >>> import torch
        >>> from preimage.models import FiRevNet
        >>> model = FiRevNet((1, 8, 8), 10, stages=2, blocks_per_stage=1, hidden=8)
        >>> a, b = torch.rand(3, 1, 8, 8), torch.rand(3, 1, 8, 8)
        >>> x_met = metameric_sample(model, a, b)
        >>> with torch.no_grad():
        ...     same = (model.eval().logits(x_met) - model.logits(a)).abs().max()
        >>> bool(same < 1e-4)
        True

    References:
        Jacobsen et al. (2019), *Excessive Invariance Causes Adversarial Vulnerability*,
        section 2.1 ("Analytic attack").
    """
    _check_model(model)
    _check_pair(x_semantic, x_nuisance, ("x_semantic", "x_nuisance"))
    if x_semantic.shape[0] != x_nuisance.shape[0]:
        raise ShapeError(
            f"x_semantic and x_nuisance must have the same batch size, got "
            f"{x_semantic.shape[0]} and {x_nuisance.shape[0]}; use metamer_grid for all pairs"
        )
    batch = x_semantic.shape[0]
    with eval_mode(model), torch.no_grad():
        # One forward pass over both sources (eval mode: no batch statistics couple them).
        z_s, z_n = _split(model, torch.cat((x_semantic, x_nuisance)))
        return model.inverse(model.merge(z_s[:batch], z_n[batch:]))


def metamer_grid(model: nn.Module, x_semantic: Tensor, x_nuisance: Tensor) -> Tensor:
    r"""All metamers :math:`F^{-1}(z_s(x_{semantic}[r]), z_n(x_{nuisance}[k]))` on a grid.

    Row ``r`` keeps the logits of ``x_semantic[r]``; column ``k`` takes the nuisance of
    ``x_nuisance[k]`` (the layout of figures 1 and 5).

    Args:
        model: an invertible classifier (see the module docstring).
        x_semantic: ``(R, ...)`` logit sources.
        x_nuisance: ``(K, ...)`` nuisance sources with the same sample shape.

    Returns:
        Tensor of shape ``(R, K, ...)``.

    Example:
        >>> import torch
        >>> from preimage.models import FiRevNet
        >>> model = FiRevNet((1, 8, 8), 10, stages=2, blocks_per_stage=1, hidden=8)
        >>> metamer_grid(model, torch.rand(2, 1, 8, 8), torch.rand(3, 1, 8, 8)).shape
        torch.Size([2, 3, 1, 8, 8])

    References:
        Jacobsen et al. (2019), *Excessive Invariance Causes Adversarial Vulnerability*,
        section 2.1, figures 1 and 5.
    """
    _check_model(model)
    _check_pair(x_semantic, x_nuisance, ("x_semantic", "x_nuisance"))
    rows, cols = x_semantic.shape[0], x_nuisance.shape[0]
    with eval_mode(model), torch.no_grad():
        z_s, _ = _split(model, x_semantic)
        _, z_n = _split(model, x_nuisance)
        z_s = z_s.repeat_interleave(cols, dim=0)
        z_n = z_n.repeat(rows, 1)
        x = model.inverse(model.merge(z_s, z_n))
    return x.reshape(rows, cols, *x.shape[1:])


def interpolate_nuisance(model: nn.Module, x: Tensor, x_target: Tensor, steps: int) -> Tensor:
    r"""Keep :math:`z_s(x)` and move :math:`z_n` linearly from :math:`z_n(x)` to :math:`z_n(x^*)`.

    Step :math:`j` of ``steps`` uses :math:`t_j = j / (\text{steps} - 1)` and returns
    :math:`F^{-1}(z_s(x), (1 - t_j)\, z_n(x) + t_j\, z_n(x^*))`: the first step reconstructs
    ``x``, the last is the metamer of ``x`` with the nuisance of ``x_target`` (figure 7).

    Args:
        model: an invertible classifier (see the module docstring).
        x: ``(B, ...)`` inputs whose logits are kept.
        x_target: ``(B, ...)`` nuisance targets, or ``(1, ...)`` to use one target for all.
        steps: number of interpolation points including both ends, at least 2.

    Returns:
        Tensor of shape ``(steps, B, ...)``.

    Example:
        >>> import torch
        >>> from preimage.models import FiRevNet
        >>> model = FiRevNet((1, 8, 8), 10, stages=2, blocks_per_stage=1, hidden=8)
        >>> x, t = torch.rand(2, 1, 8, 8), torch.rand(1, 1, 8, 8)
        >>> path = interpolate_nuisance(model, x, t, steps=5)
        >>> path.shape, bool((path[0] - x).abs().max() < 1e-4)
        (torch.Size([5, 2, 1, 8, 8]), True)

    References:
        Jacobsen et al. (2019), *Excessive Invariance Causes Adversarial Vulnerability*,
        section 4 ("Robustness under metameric sampling attack"), figure 7.
    """
    _check_model(model)
    _check_pair(x, x_target, ("x", "x_target"))
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 2:
        raise ConfigError(f"steps must be an integer >= 2, got {steps!r}")
    batch = x.shape[0]
    if x_target.shape[0] not in (1, batch):
        raise ShapeError(
            f"x_target must hold 1 or {batch} samples (the batch size of x), got "
            f"{x_target.shape[0]}"
        )
    with eval_mode(model), torch.no_grad():
        z_s, z_n = _split(model, x)
        _, z_t = _split(model, x_target)
        t = torch.linspace(0.0, 1.0, steps, device=z_n.device, dtype=z_n.dtype)
        # lerp evaluates to exactly the end point at t = 1 (``a + t(b - a)`` need not).
        z_path = torch.lerp(
            z_n.unsqueeze(0).expand(steps, -1, -1),
            z_t.expand(batch, -1).unsqueeze(0).expand(steps, -1, -1),
            t.view(steps, 1, 1),
        )
        z_s = z_s.unsqueeze(0).expand(steps, -1, -1)
        z = model.merge(z_s.reshape(steps * batch, -1), z_path.reshape(steps * batch, -1))
        out = model.inverse(z)
    return out.reshape(steps, batch, *out.shape[1:])
