r"""Information regularisation: cross-entropy plus a penalty on :math:`|w_y^\top F(x)|`.

For an invertible feature map :math:`F`, :math:`I(X;\hat Y) = I(F(X);\hat Y)`, and the paper
moves the constraint on the irrelevant information :math:`I(X;\hat Y) - I(Y;\hat Y)` of
problem (3) onto the last linear layer :math:`w` (propositions 2.1, 2.2): a small
:math:`|w_y^\top F(x)|` means a less confident prediction and less :math:`I(X;\hat Y)`.
Hölder's inequality bounds :math:`|w_{y}^\top F(x)|` by both
:math:`\sup F \cdot \lVert w_y\rVert_1` and :math:`\lVert w_y\rVert_2 \lVert F(x)\rVert_2`
(an elastic net, section 2.2), which gives the objective

.. math::

    L = \alpha_1 \lVert w\rVert_1 + \frac1n\sum_{k=1}^n \Big[\alpha_2\,
    \lVert w_{y_k}\rVert_2\,\lVert F(x_k)\rVert_2
    - \log\frac{e^{w_{y_k}^\top F(x_k)}}{\sum_j e^{w_j^\top F(x_k)}}\Big].

**Our reading of equation 7**, whose typesetting is garbled in the text: the :math:`\ell_1` term
stands once, outside the mean over the samples, on the whole matrix :math:`w` (entry-wise;
:math:`\sup F` is absorbed into :math:`\alpha_1`, as the text says, and figure 4's zero rows of
:math:`w` are what an entry-wise penalty on all of :math:`w` produces); the :math:`\ell_2`
product is inside the mean, on the true class's column :math:`w_{y_k}` only (equation 6:
"constrain :math:`w_{y_k}^\top F(x_k)` and do not encourage increasing :math:`w_j^\top
F(x_k)`"). Both norms are plain (not squared) Euclidean norms. In PyTorch's
:class:`~torch.nn.Linear` the paper's column :math:`w_j` is row ``j`` of ``head.weight``; the
bias, absent from the paper's :math:`w^\top F(x)`, is not penalised.

**Naive baseline** (table 1, "NaiveReg"): ``mode="naive"`` replaces the product by
:math:`\alpha_2 \lVert w\rVert_2` on the whole matrix (Frobenius norm), which the paper shows
the network can neutralise by growing :math:`\lVert F(x)\rVert` (section 4.3).

**The** :math:`\ell_1` **term** is either a penalty in the loss (``l1="penalty"``), or, as
appendix E's "we apply the :math:`\ell_1` norm regularization every 30 iterations" and the
exactly zero entries of figure 4 and appendix H suggest, a proximal step (``l1="proximal"``):
every ``prox_every`` training calls, :math:`w \leftarrow \operatorname{sign}(w)
\max(|w| - t, 0)` with :math:`t = \alpha_1 \eta N`, the soft-thresholding of one proximal
gradient step of size :math:`\eta` = ``prox_lr`` for each of the :math:`N` accumulated steps.
Deviations, and why: the threshold uses the fixed ``prox_lr`` (the loss does not see the
optimiser's decaying learning rate); a subgradient penalty never gives exact zeros, so the
proximal form is the only one that reproduces them. Call :meth:`InformationRegularizedLoss.flush`
after training to apply the steps accumulated since the last threshold.

References:
    Anonymous (2019), *Information Regularized Neural Networks* (ICLR 2019 submission),
    section 2.2 (equations 5-7), section 4.1 and table 1 (naive regularisation), section 4.3
    and figure 4, appendix E (every 30 iterations), appendix H (sparsity of :math:`w`).
    Zou & Hastie (2005), *Regularization and variable selection via the elastic net*.
"""

from __future__ import annotations

import math
from typing import Protocol, runtime_checkable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from preimage.errors import ConfigError, ShapeError, require_non_negative

__all__ = [
    "L1_MODES",
    "MODES",
    "FeatureClassifier",
    "InformationRegularizedLoss",
    "check_feature_classifier",
    "soft_threshold",
]

MODES: tuple[str, ...] = ("proposed", "naive")
"""Regularisers: the paper's :math:`\\lVert w_y\\rVert\\lVert F(x)\\rVert` or the naive one."""

L1_MODES: tuple[str, ...] = ("penalty", "proximal")
"""How :math:`\\alpha_1 \\lVert w\\rVert_1` is applied."""


@runtime_checkable
class FeatureClassifier(Protocol):
    """A classifier whose logits are ``head(features(x))``: the decomposition of section 1.

    ``features(x)`` is the (ideally invertible) feature map :math:`F`, returning ``(B, d)``;
    ``head`` is the last linear layer :math:`w` (``nn.Linear(d, C)``).
    """

    head: nn.Linear

    def features(self, x: Tensor) -> Tensor:
        """The last-layer features :math:`F(x)`, shape ``(B, d)``."""
        ...


def check_feature_classifier(model: object) -> nn.Linear:
    """The ``head`` of ``model``, after checking that it is a :class:`FeatureClassifier`.

    Raises:
        ConfigError: ``model`` lacks ``features`` or an ``nn.Linear`` ``head``.

    Example:
        >>> check_feature_classifier(nn.Linear(2, 2))
        Traceback (most recent call last):
        ...
        preimage.errors.ConfigError: Linear needs a features(x) method and an nn.Linear head
    """
    head = getattr(model, "head", None)
    if not callable(getattr(model, "features", None)) or not isinstance(head, nn.Linear):
        raise ConfigError(
            f"{type(model).__name__} needs a features(x) method and an nn.Linear head"
        )
    return head


def soft_threshold(w: Tensor, threshold: float) -> Tensor:
    r"""The proximal operator of :math:`t\lVert\cdot\rVert_1`:
    :math:`\operatorname{sign}(w)\max(|w| - t, 0)`; entries with :math:`|w| \le t` become
    exactly zero.

    Example:
        >>> soft_threshold(torch.tensor([-2.0, -0.5, 0.25, 3.0]), 0.5).tolist()
        [-1.5, -0.0, 0.0, 2.5]
    """
    if not (math.isfinite(threshold) and threshold >= 0):
        raise ConfigError(f"threshold must be finite and >= 0, got {threshold!r}")
    return torch.sign(w) * torch.clamp(w.abs() - threshold, min=0.0)


class InformationRegularizedLoss(nn.Module):
    r"""Equation 7 as a trainer ``loss_fn(model, x, y) -> (loss, metrics)``.

    The model must be a :class:`FeatureClassifier` (``features(x)`` and ``head``). The module
    has no parameters; its buffers count the training calls (so that a resumed run thresholds
    on the same steps) and are checkpointed by :class:`~preimage.train.Trainer`.

    Args:
        alpha1: weight :math:`\alpha_1` of :math:`\lVert w\rVert_1`.
        alpha2: weight :math:`\alpha_2` of the :math:`\ell_2` term.
        mode: ``"proposed"`` (:math:`\lVert w_y\rVert\lVert F(x)\rVert`, true class) or
            ``"naive"`` (:math:`\lVert w\rVert` on the whole matrix).
        l1: ``"penalty"`` (in the loss) or ``"proximal"`` (soft-thresholding of ``head.weight``
            every ``prox_every`` training calls).
        prox_every: :math:`N` (appendix E: 30).
        prox_lr: step size :math:`\eta` of the proximal step.

    Returns (of a call):
        ``(loss, metrics)`` with metrics ``ce``, ``reg`` (the unweighted :math:`\ell_2` term),
        ``l1`` (:math:`\lVert w\rVert_1`), ``accuracy`` and ``loss``.

    Example:
        >>> from preimage.models import InvNet
        >>> torch.manual_seed(0)  # doctest: +ELLIPSIS
        <torch._C.Generator object at ...>
        >>> model = InvNet((1, 8, 8), 10)
        >>> loss_fn = InformationRegularizedLoss(0.002, 0.002, l1="proximal")
        >>> loss, metrics = loss_fn(model, torch.rand(4, 1, 8, 8), torch.tensor([0, 1, 2, 3]))
        >>> sorted(metrics), loss.shape
        (['accuracy', 'ce', 'l1', 'loss', 'reg'], torch.Size([]))

    References:
        Anonymous (2019), *Information Regularized Neural Networks*, equations 6-7, table 1,
        appendix E.
    """

    steps: Tensor
    last_prox: Tensor

    def __init__(
        self,
        alpha1: float,
        alpha2: float,
        *,
        mode: str = "proposed",
        l1: str = "penalty",
        prox_every: int = 30,
        prox_lr: float = 0.1,
    ) -> None:
        super().__init__()
        self.alpha1 = require_non_negative("alpha1", alpha1)
        self.alpha2 = require_non_negative("alpha2", alpha2)
        if mode not in MODES:
            raise ConfigError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
        if l1 not in L1_MODES:
            raise ConfigError(f"l1 must be one of {', '.join(L1_MODES)}, got {l1!r}")
        if isinstance(prox_every, bool) or not isinstance(prox_every, int) or prox_every < 1:
            raise ConfigError(f"prox_every must be an integer >= 1, got {prox_every!r}")
        self.mode = mode
        self.l1 = l1
        self.prox_every = prox_every
        self.prox_lr = require_non_negative("prox_lr", prox_lr)
        self.register_buffer("steps", torch.zeros((), dtype=torch.long))
        self.register_buffer("last_prox", torch.zeros((), dtype=torch.long))

    def extra_repr(self) -> str:
        return (
            f"alpha1={self.alpha1}, alpha2={self.alpha2}, mode={self.mode!r}, l1={self.l1!r}, "
            f"prox_every={self.prox_every}, prox_lr={self.prox_lr}"
        )

    def regularizer(self, weight: Tensor, features: Tensor, y: Tensor) -> Tensor:
        r"""The unweighted :math:`\ell_2` term: batch mean of
        :math:`\lVert w_{y_k}\rVert\,\lVert F(x_k)\rVert` (proposed) or :math:`\lVert w\rVert`
        (naive).

        Example:
            >>> loss_fn = InformationRegularizedLoss(0.0, 1.0)
            >>> w = torch.tensor([[1.0, 2.0], [0.0, 1.0]])
            >>> reg = loss_fn.regularizer(w, torch.tensor([[3.0, 4.0]]), torch.tensor([0]))
            >>> round(float(reg), 4)  # sqrt(5) * 5
            11.1803
        """
        if self.mode == "naive":
            return torch.linalg.vector_norm(weight)
        if features.dim() != 2 or features.shape[1] != weight.shape[1]:
            raise ShapeError(
                f"features of shape {tuple(features.shape)} do not fit a head of "
                f"{weight.shape[1]} inputs"
            )
        w_y = weight[y]
        return (
            torch.linalg.vector_norm(w_y, dim=1) * torch.linalg.vector_norm(features, dim=1)
        ).mean()

    @torch.no_grad()
    def proximal_step(self, model: nn.Module, steps: int | None = None) -> None:
        r"""Soft-threshold ``model.head.weight`` in place by :math:`\alpha_1\eta` times
        ``steps`` (default ``prox_every``)."""
        head = check_feature_classifier(model)
        n = self.prox_every if steps is None else steps
        head.weight.copy_(soft_threshold(head.weight, self.alpha1 * self.prox_lr * n))
        self.last_prox.copy_(self.steps)

    def flush(self, model: nn.Module) -> None:
        """Apply the proximal step for the training calls since the last one (``l1="proximal"``
        only; a no-op otherwise or when none are pending): call it after training."""
        pending = int(self.steps - self.last_prox)
        if self.l1 == "proximal" and pending > 0:
            self.proximal_step(model, pending)

    def forward(self, model: nn.Module, x: Tensor, y: Tensor) -> tuple[Tensor, dict[str, float]]:
        head = check_feature_classifier(model)
        training = model.training and torch.is_grad_enabled()
        due = int(self.steps - self.last_prox) >= self.prox_every
        if training and self.l1 == "proximal" and due:
            # Threshold after every prox_every optimiser steps, i.e. before the next forward.
            self.proximal_step(model)
        features = model.features(x)  # type: ignore[operator]
        logits = head(features)
        ce = F.cross_entropy(logits, y)
        reg = self.regularizer(head.weight, features, y)
        l1_norm = head.weight.abs().sum()
        loss = ce + self.alpha2 * reg
        if self.l1 == "penalty":
            loss = loss + self.alpha1 * l1_norm
        if training:
            self.steps += 1
        accuracy = (logits.argmax(dim=1) == y).float().mean()
        metrics = {
            "loss": float(loss.detach()),
            "ce": float(ce.detach()),
            "reg": float(reg.detach()),
            "l1": float(l1_norm.detach()),
            "accuracy": float(accuracy),
        }
        return loss, metrics
