r"""Information in a classifier's predictions: :math:`I(X;\hat Y)`, :math:`I(Y;\hat Y)` and
the "Constrain" :math:`I(X;\hat Y) - I(Y;\hat Y)` of information-regularised networks.

A probabilistic classifier gives, for each input :math:`x_k`, a distribution
:math:`p(\hat y \mid x_k)` over the classes :math:`\mathcal C`. The estimators here use
those soft predictions (not their arg-max), as the paper does:

- :func:`predictive_information`, proposition 2.1 / appendices A and I:
  :math:`\hat I(X;\hat Y) = \hat H(\hat Y) - \frac1n \sum_k H(p(\cdot \mid x_k))`, with
  :math:`\hat H(\hat Y) = \log\lvert\mathcal C\rvert` under the paper's assumption (I) that
  :math:`\hat Y` is uniform (``marginal="uniform"``), or the entropy of the mean prediction
  :math:`\bar p = \frac1n\sum_k p(\cdot\mid x_k)` (``marginal="empirical"``). Since
  :math:`H(\bar p) \le \log\lvert\mathcal C\rvert`, **the uniform version is an upper bound** on
  the empirical one, equal only when :math:`\bar p` is uniform.
- :func:`soft_confusion`, lemma B.1: the joint :math:`\hat\pi_{y\hat y}` of true and predicted
  labels, the soft predictions summed per true class.
- :func:`relevant_information`, proposition 2.2: :math:`I(\hat\pi) = \sum_{y\hat y}
  \hat\pi_{y\hat y} \log \frac{\hat\pi_{y\hat y}}{\hat\pi_{y+}\hat\pi_{+\hat y}}`.
- :func:`irrelevant_information`: the paper's "Constrain" (tables 1-2), the difference of the two;
  :class:`ConstrainLogger` records it after every training epoch.

With ``prior="empirical"`` (the default) both estimates are mutual informations of one
empirical joint distribution of :math:`(X, Y, \hat Y)` (uniform over the samples) in which
:math:`Y \to X \to \hat Y`, so the data-processing inequality gives
:math:`\hat I(Y;\hat Y) \le \hat I(X;\hat Y)` exactly: the Constrain is never negative.

Deviation, and why: the paper states its propositions for two classes with
:math:`p(\hat y = \pm 1 \mid x) = \sigma(\pm w^\top F(x))`; the estimators here take the softmax
probabilities of any number of classes, the multi-class form the paper's experiments use.

References:
    Anonymous (2019), *Information Regularized Neural Networks* (ICLR 2019 submission),
    section 2.1 (propositions 2.1 and 2.2), appendix A (eq. 10), appendix B (lemma B.1,
    eq. 16-18), appendix I (eq. 59-60), section 4.1 and table 1 ("Constrain").
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from preimage.errors import ConfigError, ShapeError
from preimage.nn.classifier import logits_of
from preimage.train.loop import Callback, Trainer

__all__ = [
    "MARGINALS",
    "PRIORS",
    "UNITS",
    "ConstrainLogger",
    "irrelevant_information",
    "predictive_information",
    "relevant_information",
    "soft_confusion",
]

MARGINALS: tuple[str, ...] = ("uniform", "empirical")
"""Marginals of :math:`\\hat Y` for :func:`predictive_information`."""

PRIORS: tuple[str, ...] = ("empirical", "uniform")
"""Label marginals of :func:`soft_confusion`: the sample frequencies or lemma B.1's uniform."""

UNITS: dict[str, float] = {"nats": 1.0, "bits": 1.0 / math.log(2.0)}
"""Factor from nats to each unit."""


def _unit_factor(unit: str) -> float:
    try:
        return UNITS[unit]
    except KeyError:
        raise ConfigError(f"unit must be one of {', '.join(UNITS)}, got {unit!r}") from None


def _check_probs(probs: Any) -> Tensor:
    p = torch.as_tensor(probs)
    if not p.is_floating_point():
        p = p.double()
    if p.dim() != 2 or p.shape[0] == 0 or p.shape[1] < 2:
        raise ShapeError(
            f"probs must have shape (n, classes) with classes >= 2, got {tuple(p.shape)}"
        )
    with torch.no_grad():
        bad = bool((p < 0).any()) or not bool(
            torch.allclose(p.sum(dim=1), torch.ones((), dtype=p.dtype, device=p.device), atol=1e-4)
        )
    if bad:
        raise ShapeError("probs must be non-negative with rows summing to 1 (apply softmax)")
    return p


def _entropy(p: Tensor) -> Tensor:
    """Entropy in nats along the last axis, with :math:`0 \\log 0 = 0` (and a zero gradient)."""
    return -torch.special.xlogy(p, p).sum(dim=-1)


def predictive_information(probs: Any, marginal: str = "uniform", *, unit: str = "nats") -> Tensor:
    r"""Estimate :math:`I(X;\hat Y)` from soft predictions (proposition 2.1, appendix I).

    .. math::

        \hat I(X;\hat Y) = \hat H(\hat Y) - \frac1n\sum_{k=1}^n H\big(p(\cdot\mid x_k)\big),
        \qquad
        \hat H(\hat Y) = \begin{cases} \log\lvert\mathcal C\rvert & \text{uniform} \\
        H(\bar p) & \text{empirical.} \end{cases}

    The uniform version (appendix A, eq. 10: :math:`\sum_{\hat y} p(\hat y|x) \log(|\mathcal C|
    p(\hat y|x))` averaged over the samples) is the paper's, under its assumption (I); it is an
    **upper bound** on the empirical version whenever the mean prediction :math:`\bar p` is not
    uniform, and may then exceed :math:`H(Y)`.

    Args:
        probs: ``(n, C)`` predicted class probabilities (rows sum to 1).
        marginal: ``"uniform"`` or ``"empirical"``.
        unit: ``"nats"`` or ``"bits"``.

    Returns:
        A scalar tensor, differentiable in ``probs``.

    Raises:
        ShapeError: ``probs`` is not a ``(n, C)`` matrix of distributions.
        ConfigError: unknown ``marginal`` or ``unit``.

    Example:
        >>> import torch
        >>> round(float(predictive_information(torch.eye(4))), 4)  # ln 4
        1.3863
        >>> float(predictive_information(torch.full((5, 4), 0.25), unit="bits"))
        0.0
    """
    factor = _unit_factor(unit)
    p = _check_probs(probs)
    if marginal == "uniform":
        h_marginal = torch.as_tensor(math.log(p.shape[1]), dtype=p.dtype, device=p.device)
    elif marginal == "empirical":
        h_marginal = _entropy(p.mean(dim=0))
    else:
        raise ConfigError(f"marginal must be one of {', '.join(MARGINALS)}, got {marginal!r}")
    return (h_marginal - _entropy(p).mean()) * factor


def soft_confusion(probs: Any, y: Any, num_classes: int, *, prior: str = "empirical") -> Tensor:
    r"""The soft joint distribution :math:`\hat\pi_{y\hat y}` of true and predicted labels
    (lemma B.1).

    .. math::

        \hat\pi_{y\hat y} = \hat p(y)\,\frac{1}{n_y}\sum_{k:\,y_k = y} p(\hat y\mid x_k),
        \qquad \hat p(y) = \begin{cases} n_y / n & \text{empirical} \\
        1/\lvert\mathcal C\rvert & \text{uniform (lemma B.1's } \tfrac{1}{2n_y}\text{).}
        \end{cases}

    Rows are true labels, columns predictions; the matrix sums to 1. With ``prior="uniform"``
    every class must occur in ``y``; with ``"empirical"`` an absent class gets a zero row.
    The result is a probability table, so it has no ``unit``.

    Args:
        probs: ``(n, C)`` predicted probabilities.
        y: ``(n,)`` integer labels in ``[0, num_classes)``.
        num_classes: :math:`C`, the number of columns of ``probs``.
        prior: ``"empirical"`` or ``"uniform"``.

    Returns:
        ``(C, C)`` tensor, differentiable in ``probs``.

    Raises:
        ShapeError: mismatched shapes or labels out of range.
        ConfigError: unknown ``prior``, or a class absent from ``y`` under the uniform prior.

    Example:
        >>> import torch
        >>> pi = soft_confusion(torch.tensor([[0.75, 0.25], [0.5, 0.5]]), torch.tensor([0, 1]), 2)
        >>> pi.tolist()
        [[0.375, 0.125], [0.25, 0.25]]
    """
    p = _check_probs(probs)
    labels = torch.as_tensor(y, device=p.device)
    if labels.dim() != 1 or labels.shape[0] != p.shape[0]:
        raise ShapeError(f"y must have shape ({p.shape[0]},), got {tuple(labels.shape)}")
    if labels.is_floating_point() or labels.dtype == torch.bool:
        raise ShapeError(f"y must hold integer labels, got {labels.dtype}")
    if p.shape[1] != num_classes:
        raise ShapeError(f"probs has {p.shape[1]} columns, num_classes is {num_classes}")
    labels = labels.long()
    if bool((labels < 0).any()) or bool((labels >= num_classes).any()):
        raise ShapeError(f"labels must lie in [0, {num_classes})")
    sums = torch.zeros(num_classes, num_classes, dtype=p.dtype, device=p.device)
    sums = sums.index_add(0, labels, p)
    if prior == "empirical":
        return sums / p.shape[0]
    if prior != "uniform":
        raise ConfigError(f"prior must be one of {', '.join(PRIORS)}, got {prior!r}")
    counts = torch.bincount(labels, minlength=num_classes).to(p.dtype)
    if bool((counts == 0).any()):
        raise ConfigError("prior='uniform' needs every class in y")
    return sums / (counts[:, None] * num_classes)


def relevant_information(
    probs: Any, y: Any, num_classes: int, *, prior: str = "empirical", unit: str = "nats"
) -> Tensor:
    r"""Estimate :math:`I(Y;\hat Y)` as the mutual information of the soft confusion
    (proposition 2.2, appendix B eq. 17).

    .. math::

        I(\hat\pi) = \sum_{y,\hat y} \hat\pi_{y\hat y}
        \log\frac{\hat\pi_{y\hat y}}{\hat\pi_{y+}\,\hat\pi_{+\hat y}}.

    Args:
        probs: ``(n, C)`` predicted probabilities.
        y: ``(n,)`` true labels.
        num_classes: :math:`C`.
        prior: label marginal of :func:`soft_confusion`.
        unit: ``"nats"`` or ``"bits"``.

    Returns:
        A scalar tensor, differentiable in ``probs``.

    Example:
        >>> import torch
        >>> y = torch.tensor([0, 1, 2, 3])
        >>> round(float(relevant_information(torch.eye(4), y, 4, unit="bits")), 6)
        2.0
    """
    factor = _unit_factor(unit)
    pi = soft_confusion(probs, y, num_classes, prior=prior)
    outer = pi.sum(dim=1, keepdim=True) * pi.sum(dim=0, keepdim=True)
    # xlogy(pi, pi) - xlogy(pi, outer): every term with pi = 0 is exactly 0 (outer may be 0 too).
    terms = torch.special.xlogy(pi, pi) - torch.special.xlogy(pi, outer)
    return terms.sum() * factor


def irrelevant_information(
    probs: Any,
    y: Any,
    num_classes: int,
    *,
    marginal: str = "empirical",
    prior: str = "empirical",
    unit: str = "nats",
) -> Tensor:
    r"""The paper's "Constrain": :math:`\hat I(X;\hat Y) - \hat I(Y;\hat Y)` (equation 3,
    tables 1-2).

    :func:`predictive_information` minus :func:`relevant_information`. With the default
    empirical marginal and prior it is non-negative (data processing, see the module notes);
    ``marginal="uniform"`` adds :math:`\log\lvert\mathcal C\rvert - H(\bar p) \ge 0`, the
    paper's assumption (I).

    Args:
        probs: ``(n, C)`` predicted probabilities.
        y: ``(n,)`` true labels.
        num_classes: :math:`C`.
        marginal: marginal of :math:`\hat Y` in :math:`\hat I(X;\hat Y)`.
        prior: label marginal of the soft confusion.
        unit: ``"nats"`` or ``"bits"``.

    Example:
        >>> import torch
        >>> probs = torch.tensor([[0.9, 0.1], [0.9, 0.1], [0.1, 0.9], [0.1, 0.9]])
        >>> float(irrelevant_information(probs, torch.tensor([0, 0, 1, 1]), 2)) < 1e-7
        True
    """
    return predictive_information(probs, marginal, unit=unit) - relevant_information(
        probs, y, num_classes, prior=prior, unit=unit
    )


class ConstrainLogger(Callback):
    r"""A :class:`~preimage.train.Callback` that measures the Constrain after every epoch.

    After each epoch it evaluates the model (eval mode, no gradients, batches of the trainer's
    ``eval_batch_size``) on a fixed data set, softmaxes :func:`~preimage.nn.logits_of`
    and appends ``{"epoch", "i_x_yhat", "i_y_yhat", "constrain"}`` to :attr:`history`. Table 1
    reports the *average* Constrain over training, :attr:`mean_constrain`.

    Args:
        data: ``(inputs, labels)`` to measure on (the paper: the training data).
        num_classes: :math:`C`.
        marginal: see :func:`irrelevant_information`.
        unit: ``"nats"`` or ``"bits"``.

    Attributes:
        history: one dict per finished epoch.

    Example:
        >>> import torch
        >>> from torch import nn
        >>> from preimage.train import TrainConfig, Trainer
        >>> torch.manual_seed(0)  # doctest: +ELLIPSIS
        <torch._C.Generator object at ...>
        >>> x, y = torch.rand(16, 4), torch.randint(0, 2, (16,))
        >>> logger = ConstrainLogger((x, y), 2)
        >>> cfg = TrainConfig(epochs=2, batch_size=8, device="cpu", max_shift=0, dequantize=False)
        >>> _ = Trainer(nn.Linear(4, 2), (x, y), None, cfg, callbacks=[logger],
        ...             progress=False).fit()
        >>> [h["epoch"] for h in logger.history], logger.mean_constrain >= 0
        ([1, 2], True)
    """

    def __init__(
        self,
        data: tuple[Tensor, Tensor],
        num_classes: int,
        *,
        marginal: str = "empirical",
        unit: str = "nats",
    ) -> None:
        if marginal not in MARGINALS:
            raise ConfigError(f"marginal must be one of {', '.join(MARGINALS)}, got {marginal!r}")
        _unit_factor(unit)
        self.inputs, self.labels = data
        self.num_classes = int(num_classes)
        self.marginal = marginal
        self.unit = unit
        self.history: list[dict[str, float | int]] = []

    @torch.no_grad()
    def measure(self, trainer: Trainer) -> dict[str, float]:
        """The three estimates for the trainer's model now (its mode is restored)."""
        model = trainer.model
        was_training = model.training
        model.eval()
        try:
            probs = torch.cat(
                [
                    torch.softmax(logits_of(model, x.to(trainer.device)).double(), dim=1).cpu()
                    for x in self.inputs.split(trainer.config.eval_batch_size)
                ]
            )
        finally:
            model.train(was_training)
        i_x = predictive_information(probs, self.marginal, unit=self.unit)
        i_y = relevant_information(probs, self.labels, self.num_classes, unit=self.unit)
        return {"i_x_yhat": float(i_x), "i_y_yhat": float(i_y), "constrain": float(i_x - i_y)}

    def on_epoch_end(self, trainer: Trainer, epoch: int, metrics: dict[str, float]) -> None:
        self.history.append({"epoch": epoch, **self.measure(trainer)})

    @property
    def mean_constrain(self) -> float:
        """The Constrain averaged over the logged epochs (NaN before the first)."""
        if not self.history:
            return math.nan
        return sum(h["constrain"] for h in self.history) / len(self.history)
