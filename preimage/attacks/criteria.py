r"""Oracles and the success criteria of invariance- and perturbation-based attacks.

An *oracle* :math:`o: \mathbb{R}^d \to \{1, \dots, C\}` labels inputs independently of the
attacked classifier :math:`D` (a human, an analytic rule, a separately trained classifier).
Relative to a reference input :math:`x` and an attack output :math:`x^*`:

- a *perturbation-based* adversarial example (definition 2) changes the decision but not the
  oracle label: :math:`D(x^*) \ne D(x)` and :math:`o(x^*) = o(x)` (the perturbation is a nuisance
  perturbation in the sense of definition 4);
- an *invariance-based* adversarial example (definition 3) keeps the decision but changes the
  oracle label: :math:`D(x^*) = D(x)` and :math:`o(x^*) \ne o(x)` (a semantic perturbation the
  classifier is invariant to).

On Adversarial Spheres the oracle is analytic: the class is the sphere a point lies on, decided
by its norm (appendix A, example 7).

References:
    Jacobsen, Behrmann, Zemel, Bethge (2019), *Excessive Invariance Causes Adversarial
    Vulnerability*, definitions 2-4, equations 3-4 and appendix A (examples 7 and 8).
    Gilmer et al. (2018), *Adversarial Spheres*.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import torch
from torch import Tensor, nn

from preimage.attacks.base import eval_mode
from preimage.errors import ConfigError, ShapeError
from preimage.nn.classifier import logits_of

__all__ = [
    "ClassifierOracle",
    "Oracle",
    "RadiusOracle",
    "decision",
    "invariance_success",
    "perturbation_success",
]


@runtime_checkable
class Oracle(Protocol):
    """Anything that maps a batch ``(B, ...)`` to integer labels ``(B,)``, independently of the
    attacked model.

    Example:
        >>> isinstance(RadiusOracle(1.0, 10.0), Oracle)
        True
    """

    def __call__(self, x: Tensor) -> Tensor: ...


@dataclass(frozen=True)
class RadiusOracle:
    r"""Oracle of two concentric spheres: label 0 for :math:`\|x\|_2 \le (r_1 + r_2)/2`, else 1.

    The norm is taken over every entry of a sample. The threshold is the max-margin boundary of
    appendix A, :math:`D(x) = \operatorname{sign}(\|x\| - (R_1 + R_2)/2)`; points exactly on it
    count as inner.

    Args:
        r1: radius of the inner sphere (class 0), at least 0.
        r2: radius of the outer sphere (class 1), larger than ``r1``.

    Example:
        >>> import torch
        >>> oracle = RadiusOracle(1.0, 10.0)
        >>> oracle(torch.tensor([[1.0, 0.0], [0.0, 6.0], [3.0, 4.0]])).tolist()
        [0, 1, 0]

    References:
        Jacobsen et al. (2019), appendix A (example 7) and appendix D.1 (R1 = 1, R2 = 10).
        Gilmer et al. (2018), *Adversarial Spheres*, section 3.
    """

    r1: float
    r2: float

    def __post_init__(self) -> None:
        if not (math.isfinite(self.r1) and math.isfinite(self.r2)):
            raise ConfigError(f"radii must be finite, got r1={self.r1}, r2={self.r2}")
        if not 0 <= self.r1 < self.r2:
            raise ConfigError(f"radii need 0 <= r1 < r2, got r1={self.r1}, r2={self.r2}")

    @property
    def threshold(self) -> float:
        """The decision radius :math:`(r_1 + r_2) / 2`."""
        return 0.5 * (self.r1 + self.r2)

    def __call__(self, x: Tensor) -> Tensor:
        _check_batch(x, "RadiusOracle")
        norms = x.reshape(x.shape[0], -1).norm(dim=1)
        return (norms > self.threshold).long()


class ClassifierOracle:
    r"""Oracle given by a separately trained classifier: the argmax of its logits.

    Runs the classifier in eval mode (restoring its training flags) without gradients, in chunks
    of ``batch_size`` samples when given.

    Args:
        model: a classifier returning logits, or an invertible classifier with ``logits``. It
            should be trained independently of the attacked model.
        batch_size: evaluate at most this many samples at once (``None``: all at once).

    Example:
        >>> import torch
        >>> from torch import nn
        >>> clf = nn.Linear(2, 2)
        >>> with torch.no_grad():
        ...     _ = clf.weight.copy_(torch.eye(2)), clf.bias.zero_()
        >>> ClassifierOracle(clf)(torch.tensor([[1.0, 0.0], [0.0, 2.0]])).tolist()
        [0, 1]

    References:
        Jacobsen et al. (2019), definition 2 (the oracle :math:`o`).
    """

    def __init__(self, model: nn.Module, *, batch_size: int | None = None) -> None:
        if not isinstance(model, nn.Module):
            raise ConfigError(f"model must be an nn.Module, got {type(model).__name__}")
        if batch_size is not None and (isinstance(batch_size, bool) or batch_size < 1):
            raise ConfigError(f"batch_size must be None or >= 1, got {batch_size!r}")
        self.model = model
        self.batch_size = batch_size

    def __call__(self, x: Tensor) -> Tensor:
        _check_batch(x, "ClassifierOracle")
        return decision(self.model, x, batch_size=self.batch_size)

    def __repr__(self) -> str:
        return f"ClassifierOracle({type(self.model).__name__}, batch_size={self.batch_size})"


def _check_batch(x: Tensor, who: str) -> None:
    if not isinstance(x, Tensor):
        raise ConfigError(f"{who} expects a torch.Tensor, got {type(x).__name__}")
    if x.dim() < 2:
        raise ShapeError(f"{who} expects a batch (batch, ...), got shape {tuple(x.shape)}")


def decision(model: nn.Module, x: Tensor, *, batch_size: int | None = None) -> Tensor:
    r"""The classifier's decision :math:`D(x) = \arg\max_k f(x)_k`, shape ``(batch,)``.

    Eval mode (training flags restored), no gradients, optionally in chunks.

    Example:
        >>> import torch
        >>> from torch import nn
        >>> decision(nn.Identity(), torch.tensor([[0.1, 0.9], [2.0, -1.0]])).tolist()
        [1, 0]
    """
    _check_batch(x, "decision")
    chunk = x.shape[0] if batch_size is None else batch_size
    with eval_mode(model), torch.no_grad():
        parts = [logits_of(model, part).argmax(dim=1) for part in x.split(chunk)]
    return torch.cat(parts)


def _labels(oracle: Oracle, x: Tensor) -> Tensor:
    out = oracle(x)
    if not isinstance(out, Tensor) or tuple(out.shape) != (x.shape[0],):
        shape = tuple(out.shape) if isinstance(out, Tensor) else type(out).__name__
        raise ShapeError(f"the oracle must return labels of shape ({x.shape[0]},), got {shape}")
    return out


def _check_pair(x_orig: Tensor, x_adv: Tensor) -> None:
    _check_batch(x_orig, "x_orig")
    _check_batch(x_adv, "x_adv")
    if x_orig.shape != x_adv.shape:
        raise ShapeError(
            f"x_orig and x_adv must have the same shape, got {tuple(x_orig.shape)} and "
            f"{tuple(x_adv.shape)}"
        )


def invariance_success(model: nn.Module, oracle: Oracle, x_orig: Tensor, x_adv: Tensor) -> Tensor:
    r"""Invariance-based success: :math:`D(x^*) = D(x)` and :math:`o(x^*) \ne o(x)`.

    Args:
        model: the attacked classifier :math:`D`.
        oracle: labels inputs independently of ``model``.
        x_orig: the reference inputs :math:`x` (for a metamer: the logit source).
        x_adv: the attack outputs :math:`x^*`, same shape.

    Returns:
        Bool tensor of shape ``(batch,)``.

    Example:
        >>> import torch
        >>> from torch import nn
        >>> model = nn.Linear(2, 2, bias=False)  # decides by comparing the two coordinates
        >>> with torch.no_grad():
        ...     _ = model.weight.copy_(torch.eye(2))
        >>> oracle = RadiusOracle(1.0, 10.0)
        >>> x = torch.tensor([[1.0, 0.0], [1.0, 0.0]])
        >>> x_adv = torch.tensor([[9.0, 1.0], [0.0, 9.0]])  # same decision / changed decision
        >>> invariance_success(model, oracle, x, x_adv).tolist()
        [True, False]

    References:
        Jacobsen et al. (2019), definition 3 and equation 4; appendix A (example 7).
    """
    _check_pair(x_orig, x_adv)
    kept = decision(model, x_adv) == decision(model, x_orig)
    changed = _labels(oracle, x_adv) != _labels(oracle, x_orig)
    return kept & changed.to(kept.device)


def perturbation_success(model: nn.Module, oracle: Oracle, x_orig: Tensor, x_adv: Tensor) -> Tensor:
    r"""Perturbation-based success: :math:`D(x^*) \ne D(x)` and :math:`o(x^*) = o(x)`.

    Args and returns: as :func:`invariance_success` (``x_orig``: the reference inputs).

    Example:
        >>> import torch
        >>> from torch import nn
        >>> oracle = RadiusOracle(1.0, 10.0)  # the logits of nn.Identity() are the point itself
        >>> x = torch.tensor([[1.0, 0.0], [1.0, 0.0]])
        >>> x_adv = torch.tensor([[0.0, 1.0], [0.0, 9.0]])  # oracle kept / oracle changed
        >>> perturbation_success(nn.Identity(), oracle, x, x_adv).tolist()
        [True, False]

    References:
        Jacobsen et al. (2019), definition 2 and equation 3.
    """
    _check_pair(x_orig, x_adv)
    changed = decision(model, x_adv) != decision(model, x_orig)
    kept = _labels(oracle, x_adv) == _labels(oracle, x_orig)
    return changed & kept.to(changed.device)
