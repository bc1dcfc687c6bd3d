r"""How interpretable single feature entries are: per-entry statistics and one-entry ROC curves.

Section 4.2 of the information-regularisation paper looks at the last-layer features
:math:`F(x) \in \mathbb{R}^d` of a classifier entry by entry:

- :func:`entry_statistics` (figures 2 and 6): for the samples of one class :math:`c`, the mean
  and standard deviation of every entry, the weights :math:`w_c` of that class's logit, and
  their product :math:`w_{c,i}\,\overline{F_i}`, the entry's mean contribution to the logit;
- :func:`representative_entries` and :func:`entry_roc` (figure 3): "for each digit, we find
  the entry of its feature mean with the highest value", use that entry's value as the score
  of the digit, and summarise the ten one-vs-rest ROC curves by their micro and macro
  averages (scikit-learn's :func:`~sklearn.metrics.roc_auc_score`);
- :func:`zero_fraction` (figure 4, appendix H): the share of exactly zero weights.

Deviation, and why: the paper does not say how the macro-average curve is drawn; we average
the true-positive rates of the per-class curves on the union of their false-positive rates
(the usual scikit-learn recipe), while the reported areas come from ``roc_auc_score`` itself.

References:
    Anonymous (2019), *Information Regularized Neural Networks* (ICLR 2019 submission),
    section 4.2 (figures 2 and 3), section 4.3 (figure 4), appendices F and H (figures 6, 8).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from sklearn.metrics import roc_auc_score, roc_curve
from torch import Tensor

from preimage.errors import ShapeError

__all__ = [
    "EntryRoc",
    "EntryStatistics",
    "entry_roc",
    "entry_statistics",
    "representative_entries",
    "zero_fraction",
]


def _as_numpy(a: Any) -> np.ndarray:
    if isinstance(a, Tensor):
        return a.detach().cpu().double().numpy() if a.is_floating_point() else a.cpu().numpy()
    return np.asarray(a)


def _check(features: Any, labels: Any) -> tuple[np.ndarray, np.ndarray]:
    f, y = _as_numpy(features), _as_numpy(labels).astype(np.int64)
    if f.ndim != 2 or y.shape != (f.shape[0],) or f.shape[0] == 0:
        raise ShapeError(f"features (n, d) and labels (n,) expected, got {f.shape} and {y.shape}")
    return f.astype(np.float64), y


@dataclass(frozen=True)
class EntryStatistics:
    """Per-entry statistics of one class's features (figure 2).

    Attributes:
        label: the class.
        mean: ``(d,)`` mean of each entry over the class's samples.
        std: ``(d,)`` standard deviation of each entry.
        weight: ``(d,)`` the class's weights :math:`w_c`.
        product: ``(d,)`` :math:`w_{c,i}\\,\\overline{F_i}`.
    """

    label: int
    mean: np.ndarray
    std: np.ndarray
    weight: np.ndarray
    product: np.ndarray


def entry_statistics(features: Any, labels: Any, weight: Any, label: int) -> EntryStatistics:
    """Mean, std, weight and product of every feature entry over the samples of ``label``.

    Args:
        features: ``(n, d)`` features :math:`F(x)`.
        labels: ``(n,)`` true labels.
        weight: ``(C, d)`` last-layer weights (``nn.Linear.weight``: row :math:`c` is the
            paper's column :math:`w_c`).
        label: the class to describe.

    Raises:
        ShapeError: mismatched shapes or no sample of ``label``.

    Example:
        >>> f = np.array([[1.0, 0.0], [3.0, 0.0], [0.0, 5.0]])
        >>> s = entry_statistics(f, [9, 9, 1], np.ones((10, 2)), 9)
        >>> s.mean.tolist(), s.std.tolist(), s.product.tolist()
        ([2.0, 0.0], [1.0, 0.0], [2.0, 0.0])
    """
    f, y = _check(features, labels)
    w = _as_numpy(weight).astype(np.float64)
    if w.ndim != 2 or w.shape[1] != f.shape[1] or not 0 <= label < w.shape[0]:
        raise ShapeError(f"weight of shape {w.shape} does not fit {f.shape[1]} features / {label}")
    rows = f[y == label]
    if rows.shape[0] == 0:
        raise ShapeError(f"no sample of class {label}")
    mean = rows.mean(axis=0)
    return EntryStatistics(label, mean, rows.std(axis=0), w[label], w[label] * mean)


def representative_entries(features: Any, labels: Any, num_classes: int) -> np.ndarray:
    """For each class, the entry with the largest class-mean feature value (section 4.2.2).

    Raises:
        ShapeError: a class has no sample.

    Example:
        >>> representative_entries([[0.0, 2.0, 1.0], [3.0, 0.0, 0.0]], [0, 1], 2).tolist()
        [1, 0]
    """
    f, y = _check(features, labels)
    out = np.empty(num_classes, dtype=np.int64)
    for c in range(num_classes):
        rows = f[y == c]
        if rows.shape[0] == 0:
            raise ShapeError(f"no sample of class {c}")
        out[c] = int(np.argmax(rows.mean(axis=0)))
    return out


@dataclass(frozen=True)
class EntryRoc:
    """ROC of scoring each class by its representative entry (figure 3).

    Attributes:
        entries: ``(C,)`` the entry used for each class.
        auc_micro: micro-average area (all class/sample pairs pooled).
        auc_macro: macro-average area (mean of the per-class areas).
        auc_per_class: ``(C,)`` per-class areas.
        micro_curve: ``(fpr, tpr)`` of the pooled curve.
        macro_curve: ``(fpr, tpr)``, the per-class rates averaged on a common grid.
    """

    entries: np.ndarray
    auc_micro: float
    auc_macro: float
    auc_per_class: np.ndarray
    micro_curve: tuple[np.ndarray, np.ndarray]
    macro_curve: tuple[np.ndarray, np.ndarray]


def entry_roc(features: Any, labels: Any, entries: Any) -> EntryRoc:
    """One-vs-rest ROC of the scores ``features[:, entries[c]]`` for class ``c``.

    Args:
        features: ``(n, d)`` features (of held-out samples).
        labels: ``(n,)`` labels in ``[0, C)``; every class must occur.
        entries: ``(C,)`` the entry per class (e.g. :func:`representative_entries` of the
            training features).

    Example:
        >>> f = np.array([[5.0, 0.0], [4.0, 1.0], [0.0, 3.0], [1.0, 2.0]])
        >>> roc = entry_roc(f, [0, 0, 1, 1], [0, 1])
        >>> roc.auc_micro, roc.auc_macro
        (1.0, 1.0)
    """
    f, y = _check(features, labels)
    idx = _as_numpy(entries).astype(np.int64)
    c = idx.shape[0]
    if idx.ndim != 1 or bool((idx < 0).any()) or bool((idx >= f.shape[1]).any()):
        raise ShapeError(f"entries must be (C,) indices below {f.shape[1]}, got {idx.tolist()}")
    if bool((y < 0).any()) or bool((y >= c).any()) or np.unique(y).size != c:
        raise ShapeError(f"labels must cover every class in [0, {c})")
    scores = f[:, idx]
    onehot = np.eye(c, dtype=np.int64)[y]
    micro = roc_auc_score(onehot, scores, average="micro")
    per_class = roc_auc_score(onehot, scores, average=None)
    micro_curve = roc_curve(onehot.ravel(), scores.ravel())[:2]
    curves = [roc_curve(onehot[:, k], scores[:, k])[:2] for k in range(c)]
    grid = np.unique(np.concatenate([fpr for fpr, _ in curves]))
    macro_tpr = np.mean([np.interp(grid, fpr, tpr) for fpr, tpr in curves], axis=0)
    return EntryRoc(
        idx,
        float(micro),
        float(np.mean(per_class)),
        np.asarray(per_class, dtype=np.float64),
        (micro_curve[0], micro_curve[1]),
        (grid, macro_tpr),
    )


def zero_fraction(weight: Any) -> float:
    """Share of entries that are exactly zero.

    Example:
        >>> zero_fraction(np.array([[0.0, 1.0], [0.0, -0.0]]))
        0.75
    """
    w = _as_numpy(weight)
    if w.size == 0:
        raise ShapeError("zero_fraction of an empty array")
    return float(np.mean(w == 0))
