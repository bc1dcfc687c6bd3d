r"""Typed classifier contracts and the one rule that turns a model into logits.

Two runtime-checkable protocols describe what training, attacks and analyses may assume:

* :class:`Classifier` - anything with ``logits(x) -> (batch, C)``;
* :class:`BijectiveClassifier` - an invertible classifier with the simplified read-out of
  Jacobsen et al. (2019): ``forward(x) -> (z, logdet)``, ``inverse(z)``, ``split(z) -> (z_s, z_n)``,
  ``merge(z_s, z_n)``, ``logits(x)`` and ``num_classes``. Its logits are :math:`z_s` (or, for
  :class:`~preimage.models.FiRevNet` with ``logit_norm=True``, a batch norm of :math:`z_s`, a
  fixed per-class affine map in eval mode), so every :math:`F^{-1}(z_s(a), z_n(b))` is a metamer
  of :math:`a`.

:func:`logits_of` is the single place that decides how logits are obtained: ``model.logits(x)``
for a :class:`Classifier`, otherwise ``model(x)``, which must then be a tensor. Models satisfy the
protocols by what they *are*: a model without a semantic/nuisance split (e.g. an i-ResNet with a
linear head, :class:`~preimage.models.IResNetLinear`) simply has no ``split`` attribute.

References:
    Jacobsen, Behrmann, Zemel, Bethge (2019), *Excessive Invariance Causes Adversarial
    Vulnerability*, section 2.1 (bijective classifiers with simplified read-out).
    Behrmann (thesis), *Invertibility and Domain Knowledge*, definition 6.7.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import torch
from torch import Tensor, nn

from preimage.errors import ConfigError, ShapeError

__all__ = [
    "BijectiveClassifier",
    "Classifier",
    "SimplifiedReadout",
    "check_code",
    "logits_of",
    "merge_codes",
    "model_output",
]


@runtime_checkable
class Classifier(Protocol):
    """A model with a ``logits(x)`` method returning class scores of shape ``(batch, C)``.

    Example:
        >>> from preimage.models import FiRevNet
        >>> from torch import nn
        >>> isinstance(FiRevNet((4,), 2, stages=1, blocks_per_stage=1, hidden=4), Classifier)
        True
        >>> isinstance(nn.Linear(3, 2), Classifier)
        False
    """

    def logits(self, x: Tensor) -> Tensor: ...


@runtime_checkable
class BijectiveClassifier(Protocol):
    r"""An invertible classifier whose logits are the first ``num_classes`` entries of its code.

    ``forward(x) -> (z, logdet)``, ``inverse(z) -> x``, ``split(z) -> (z_s, z_n)``,
    ``merge(z_s, z_n) -> z`` (the inverse of ``split``), ``classify(z_s)`` (the class scores of a
    logit code: the identity, or a fixed head such as the batch norm of
    ``FiRevNet(logit_norm=True)``) and ``logits(x) = classify(z_s(x))``.

    References:
        Jacobsen et al. (2019), *Excessive Invariance Causes Adversarial Vulnerability*,
        section 2.1; Behrmann (thesis), *Invertibility and Domain Knowledge*, definition 6.7.

    Example:
        >>> from preimage.models import FiRevNet, IResNetLinear
        >>> isinstance(FiRevNet((4,), 2, stages=1, blocks_per_stage=1, hidden=4),
        ...            BijectiveClassifier)
        True
        >>> linear = IResNetLinear((1, 4, 4), 2, stages=1, blocks_per_stage=1, hidden=4)
        >>> isinstance(linear, Classifier), isinstance(linear, BijectiveClassifier)
        (True, False)
    """

    num_classes: int

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]: ...

    def inverse(self, z: Tensor) -> Tensor: ...

    def split(self, z: Tensor) -> tuple[Tensor, Tensor]: ...

    def merge(self, z_s: Tensor, z_n: Tensor) -> Tensor: ...

    def classify(self, z_s: Tensor) -> Tensor: ...

    def logits(self, x: Tensor) -> Tensor: ...


class SimplifiedReadout:
    r"""``split`` and ``merge`` of a :class:`BijectiveClassifier` with the simplified read-out:
    the first ``num_classes`` entries of its flat code ``(batch, code_dim)`` are :math:`z_s`,
    the rest :math:`z_n`. A model mixes this in and sets ``num_classes`` and ``code_dim``.

    References:
        Jacobsen et al. (2019), *Excessive Invariance Causes Adversarial Vulnerability*,
        section 2.1 ("Bijective classifiers with simplified readout").

    Example:
        >>> import torch
        >>> class Toy(SimplifiedReadout):
        ...     num_classes, code_dim = 2, 5
        >>> z = torch.arange(10.0).reshape(2, 5)
        >>> z_s, z_n = Toy().split(z)
        >>> z_s.shape, z_n.shape, torch.equal(Toy().merge(z_s, z_n), z)
        (torch.Size([2, 2]), torch.Size([2, 3]), True)
    """

    num_classes: int
    code_dim: int

    def split(self, z: Tensor) -> tuple[Tensor, Tensor]:
        """``(z_s, z_n)``: the logits (first ``num_classes`` entries) and the nuisance."""
        check_code(z, self.code_dim, f"{type(self).__name__}.split")
        return z[:, : self.num_classes], z[:, self.num_classes :]

    def merge(self, z_s: Tensor, z_n: Tensor) -> Tensor:
        """``merge(z_s, z_n) -> z``, the inverse of :meth:`split`."""
        return merge_codes(z_s, z_n, self.num_classes, self.code_dim)


def model_output(model: nn.Module, x: Tensor) -> Tensor:
    r"""The output a classifier bases its decision on: ``model.logits(x)`` or ``model(x)``.

    A :class:`Classifier` is asked for its ``logits``; a submodule that happens to be *named*
    ``logits`` (e.g. a final ``nn.Linear``) is not that method, so such a model is called
    instead. Any other model must return a tensor from its forward pass (of any shape: feature
    adversaries use this on feature extractors too; :func:`logits_of` adds the shape check).

    Raises:
        ConfigError: the model returns something other than a tensor (e.g. the ``(z, logdet)``
            pair of an invertible module without ``logits``).

    Example:
        >>> import torch
        >>> from torch import nn
        >>> model_output(nn.Conv2d(1, 2, 3), torch.zeros(4, 1, 5, 5)).shape
        torch.Size([4, 2, 3, 3])
    """
    if isinstance(model, Classifier) and not isinstance(model.logits, nn.Module):
        out = model.logits(x)
    else:
        out = model(x)
    if not isinstance(out, Tensor):
        raise ConfigError(
            f"{type(model).__name__} returned a {type(out).__name__}, not logits; give it a "
            "logits(x) method (or pass a loss_fn for models that are no classifiers)"
        )
    return out


def logits_of(model: nn.Module, x: Tensor) -> Tensor:
    r"""Class scores ``(batch, C)`` of ``model`` for ``x`` (the rule of :func:`model_output`).

    Used by training (:mod:`preimage.train.loop`) and by every attack.

    Raises:
        ConfigError: the model returns something other than a tensor and has no ``logits``.
        ShapeError: the scores are not a ``(batch, C)`` matrix.

    Example:
        >>> import torch
        >>> from torch import nn
        >>> logits_of(nn.Linear(4, 3), torch.zeros(2, 4)).shape
        torch.Size([2, 3])
    """
    out = model_output(model, x)
    if out.dim() != 2 or out.shape[0] != x.shape[0]:
        raise ShapeError(
            f"{type(model).__name__} returned shape {tuple(out.shape)}, expected logits of "
            f"shape ({x.shape[0]}, num_classes)"
        )
    return out


def check_code(z: Tensor, dim: int, who: str) -> None:
    """Refuse anything but a non-empty batch of flat codes ``(batch, dim)`` (a ``ShapeError``).

    Example:
        >>> import torch
        >>> check_code(torch.zeros(2, 5), 5, "split")
        >>> try:
        ...     check_code(torch.zeros(2, 4), 5, "split")
        ... except ShapeError as err:
        ...     print(err)
        split expects codes of shape (batch, 5), got (2, 4)
    """
    if not isinstance(z, Tensor):
        raise ConfigError(f"{who} expects a torch.Tensor, got {type(z).__name__}")
    if z.dim() != 2 or z.shape[1] != dim or z.shape[0] == 0:
        raise ShapeError(f"{who} expects codes of shape (batch, {dim}), got {tuple(z.shape)}")


def merge_codes(z_s: Tensor, z_n: Tensor, num_classes: int, dim: int) -> Tensor:
    """``cat(z_s, z_n)`` after checking the widths ``num_classes`` and ``dim - num_classes``.

    Example:
        >>> import torch
        >>> merge_codes(torch.zeros(3, 2), torch.ones(3, 4), 2, 6).shape
        torch.Size([3, 6])
    """
    check_code(z_s, num_classes, "merge (z_s)")
    check_code(z_n, dim - num_classes, "merge (z_n)")
    if z_s.shape[0] != z_n.shape[0]:
        raise ShapeError(f"merge got batches of different sizes: {z_s.shape[0]} and {z_n.shape[0]}")
    return torch.cat((z_s, z_n), dim=1)
