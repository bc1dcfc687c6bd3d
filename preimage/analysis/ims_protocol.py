r"""The thesis' evaluation protocol for tumour typing from IMS spectra (section 7.4).

* **Folds**: randomised :math:`k`-fold cross-validation on TMA level (:func:`tma_folds`): the
  TMAs are shuffled and dealt to the folds, so no TMA (measurement) ever contributes spots to
  both the training and the test side of a fold.
* **Scores**: balanced accuracy :math:`\tfrac12(TP/P + TN/N)` at spot level and at core level,
  a core taking the majority vote of its spots' predictions (:func:`core_vote`).
* **Baseline ROC/LDA** (Boskamp et al. 2017): per m/z bin the Mann-Whitney-Wilcoxon statistic
  of the two classes (:func:`mann_whitney_auc`, via :func:`scipy.stats.mannwhitneyu`), the
  :math:`K` most discriminative bins for :math:`K = 5..100`, and a linear discriminant
  analysis (scikit-learn) on them (:func:`roc_lda_predict`); worst and best :math:`K` are
  reported.
* **Networks** (:func:`cross_validate_network`): one model per fold trained with
  :class:`~preimage.train.Trainer`; a whole cross-validation is repeated with different seeds
  and the median and interquartile range over repetitions reported (:func:`median_iqr`).
  Table A.2's weight regularisation :math:`\lambda` is read as Keras' ``l2(λ)`` kernel
  regulariser (:class:`KernelL2Loss`): :math:`\lambda \sum \lVert W \rVert^2` over the
  convolution, locally connected and dense kernels is added to the loss; biases and batch-norm
  scales are not penalised (an optimiser weight decay on every parameter pulls the batch-norm
  scales to zero and, at table A.2's :math:`\lambda = 0.05`, collapsed IsotopeNet to a
  constant prediction in our runs).

Scores of one cross-validation are computed on the pooled out-of-fold predictions (every spot
is predicted exactly once, by the model that did not see its TMA); :func:`fold_scores` gives the
per-fold values the thesis' box plots show (figure 7.5, right).

References:
    Behrmann (thesis), *Invertibility and Domain Knowledge*, section 7.4 and figure 7.5.
    Boskamp et al. (2017), *A new classification method for MALDI imaging mass spectrometry
    data acquired on formalin-fixed paraffin-embedded tissue samples*, BBA Proteins Proteom.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from numpy.typing import ArrayLike
from scipy.stats import mannwhitneyu
from sklearn.discriminant_analysis import LinearDiscriminantAnalysis
from sklearn.metrics import balanced_accuracy_score
from torch import Tensor, nn

from preimage.errors import ConfigError, DataError, ShapeError
from preimage.models.isotopenet import LocallyConnected1d
from preimage.train import Callback, LossFn, TrainConfig, Trainer, cross_entropy_loss

__all__ = [
    "DEFAULT_KS",
    "AugmentedLoss",
    "CosineLr",
    "CvPredictions",
    "KernelL2Loss",
    "SpectrumAugment",
    "balanced_accuracy",
    "core_balanced_accuracy",
    "core_vote",
    "cross_validate_network",
    "cross_validate_roc_lda",
    "fold_scores",
    "kernel_weights",
    "mann_whitney_auc",
    "median_iqr",
    "roc_lda_predict",
    "shift_spectra",
    "tma_folds",
]

DEFAULT_KS: tuple[int, ...] = tuple(range(5, 101))
"""Numbers of features the ROC/LDA baseline tries (thesis: K = 5 to 100)."""

Fold = tuple[np.ndarray, np.ndarray]


def tma_folds(tma: ArrayLike, n_folds: int = 4, *, seed: int = 0) -> list[Fold]:
    r"""Randomised ``n_folds``-fold cross-validation grouped by TMA.

    The distinct TMAs are shuffled with ``seed`` and dealt round-robin to the folds (12 TMAs give
    3 per fold); fold :math:`f` tests on the spots of its TMAs and trains on all others.

    Returns:
        ``[(train_index, test_index), ...]``, int64 arrays of spot indices.

    Raises:
        ConfigError: fewer TMAs than folds, or fewer than 2 folds.

    Example:
        >>> folds = tma_folds([0, 0, 1, 2, 3, 3, 4, 5], 3, seed=0)
        >>> [sorted(set(np.array([0, 0, 1, 2, 3, 3, 4, 5])[te].tolist())) for _, te in folds]
        [[3, 4], [0, 2], [1, 5]]
    """
    groups = np.asarray(tma).reshape(-1)
    distinct = np.unique(groups)
    if n_folds < 2 or distinct.size < n_folds:
        raise ConfigError(f"need 2 <= n_folds <= number of TMAs ({distinct.size}), got {n_folds}")
    shuffled = np.random.default_rng(seed).permutation(distinct)
    folds = []
    for f in range(n_folds):
        test = np.isin(groups, shuffled[f::n_folds])
        folds.append((np.flatnonzero(~test), np.flatnonzero(test)))
    return folds


def balanced_accuracy(labels: ArrayLike, predictions: ArrayLike) -> float:
    r"""Balanced accuracy, the mean of the per-class recalls (:math:`\tfrac12(TP/P + TN/N)`).

    Example:
        >>> balanced_accuracy([0, 0, 0, 1], [0, 0, 0, 0])
        0.5
    """
    return float(balanced_accuracy_score(np.asarray(labels), np.asarray(predictions)))


def core_vote(
    predictions: ArrayLike, core: ArrayLike, labels: ArrayLike
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Majority vote of the spot predictions of every core.

    A tie goes to the smallest class among the tied ones.

    Returns:
        ``(cores, core_labels, core_predictions)``, one entry per distinct core.

    Raises:
        ShapeError: arrays of different lengths.
        DataError: a core whose spots carry different labels.

    Example:
        >>> core_vote([1, 1, 0, 0, 0, 1], [7, 7, 7, 8, 8, 8], [1, 1, 1, 0, 0, 0])
        (array([7, 8]), array([1, 0]), array([1, 0]))
    """
    pred, cores, lab = (np.asarray(a).reshape(-1) for a in (predictions, core, labels))
    if not pred.shape == cores.shape == lab.shape:
        raise ShapeError("predictions, core and labels need one value per spot")
    distinct, inverse = np.unique(cores, return_inverse=True)
    classes, pred_idx = np.unique(pred, return_inverse=True)
    votes = np.zeros((distinct.size, classes.size), dtype=np.int64)
    np.add.at(votes, (inverse, pred_idx), 1)
    core_pred = classes[votes.argmax(axis=1)]
    core_lab = np.empty(distinct.size, dtype=lab.dtype)
    core_lab[inverse] = lab
    if np.any(core_lab[inverse] != lab):
        raise DataError("the spots of a core carry different labels")
    return distinct, core_lab, core_pred


def core_balanced_accuracy(labels: ArrayLike, predictions: ArrayLike, core: ArrayLike) -> float:
    """Balanced accuracy over cores, each core predicted by the majority of its spots.

    Example:
        >>> core_balanced_accuracy([1, 1, 1, 0, 0, 0], [1, 0, 1, 0, 1, 0], [7, 7, 7, 8, 8, 8])
        1.0
    """
    _, core_lab, core_pred = core_vote(predictions, core, labels)
    return balanced_accuracy(core_lab, core_pred)


def mann_whitney_auc(spectra: ArrayLike, labels: ArrayLike) -> np.ndarray:
    r"""Per bin, the Mann-Whitney U of class 1 against class 0 divided by :math:`n_0 n_1`.

    That is the area under the ROC curve of the bin's intensity as a score for class 1; the
    discriminative power of a bin is :math:`|AUC - 1/2|`.

    Raises:
        DataError: labels other than two classes 0 and 1.

    Example:
        >>> x = np.array([[0.0, 5.0], [1.0, 5.0], [2.0, 4.0], [3.0, 6.0]])
        >>> mann_whitney_auc(x, [0, 0, 1, 1]).tolist()
        [1.0, 0.5]
    """
    x = np.asarray(spectra, dtype=np.float64)
    y = np.asarray(labels).reshape(-1)
    if x.ndim != 2 or x.shape[0] != y.size:
        raise ShapeError("spectra must be (n_spots, n_bins) with one label per spot")
    if not np.array_equal(np.unique(y), [0, 1]):
        raise DataError("ROC needs labels of exactly the two classes 0 and 1")
    x1, x0 = x[y == 1], x[y == 0]
    u = mannwhitneyu(x1, x0, axis=0, method="asymptotic").statistic
    return np.asarray(u, dtype=np.float64) / (x1.shape[0] * x0.shape[0])


def roc_lda_predict(
    train_x: ArrayLike, train_y: ArrayLike, test_x: ArrayLike, ks: Sequence[int] = DEFAULT_KS
) -> tuple[np.ndarray, np.ndarray]:
    r"""ROC feature selection and LDA: predictions on ``test_x`` for every :math:`K` in ``ks``.

    The bins are ranked by :math:`|AUC - 1/2|` on the training data (:func:`mann_whitney_auc`);
    for each :math:`K` a plain LDA (scikit-learn's default ``svd`` solver, no shrinkage) is
    fitted on the top :math:`K` bins.

    Returns:
        ``(ranking, predictions)``: bin indices from most to least discriminative, and
        predictions of shape ``(len(ks), n_test)``.

    Example:
        >>> rng = np.random.default_rng(0)
        >>> x = rng.normal(size=(200, 30)); y = np.arange(200) % 2; x[:, 7] += 2.0 * y
        >>> ranking, pred = roc_lda_predict(x[:100], y[:100], x[100:], ks=[1, 5])
        >>> int(ranking[0]), [round(balanced_accuracy(y[100:], p), 2) for p in pred]
        (7, [0.87, 0.86])
    """
    xtr = np.asarray(train_x, dtype=np.float64)
    xte = np.asarray(test_x, dtype=np.float64)
    ytr = np.asarray(train_y).reshape(-1)
    if not ks or min(ks) < 1 or max(ks) > xtr.shape[1]:
        raise ConfigError(f"ks must lie in 1..{xtr.shape[1]} (the number of bins), got {ks}")
    ranking = np.argsort(-np.abs(mann_whitney_auc(xtr, ytr) - 0.5), kind="stable")
    preds = np.empty((len(ks), xte.shape[0]), dtype=ytr.dtype)
    for i, k in enumerate(ks):
        lda = LinearDiscriminantAnalysis()
        cols = ranking[:k]
        preds[i] = lda.fit(xtr[:, cols], ytr).predict(xte[:, cols])
    return ranking, preds


@dataclass(frozen=True)
class CvPredictions:
    """Out-of-fold predictions of one cross-validation run.

    Attributes:
        predictions: predicted class of every spot, by the model of the fold that tested it.
        folds: the folds used.
        scores: optional class scores (logits) per spot, ``(n_spots, n_classes)``.
    """

    predictions: np.ndarray
    folds: list[Fold]
    scores: np.ndarray | None = None

    def spot_accuracy(self, labels: ArrayLike) -> float:
        """Balanced accuracy at spot level."""
        return balanced_accuracy(labels, self.predictions)

    def core_accuracy(self, labels: ArrayLike, core: ArrayLike) -> float:
        """Balanced accuracy at core level (majority vote)."""
        return core_balanced_accuracy(labels, self.predictions, core)


def fold_scores(
    predictions: ArrayLike, labels: ArrayLike, core: ArrayLike, folds: Sequence[Fold]
) -> tuple[list[float], list[float]]:
    """Spot- and core-level balanced accuracy of each fold's test spots.

    Example:
        >>> folds = [(np.array([2, 3]), np.array([0, 1])), (np.array([0, 1]), np.array([2, 3]))]
        >>> fold_scores([0, 1, 1, 1], [0, 1, 0, 1], [0, 1, 2, 3], folds)
        ([1.0, 0.5], [1.0, 0.5])
    """
    pred, lab, cores = (np.asarray(a).reshape(-1) for a in (predictions, labels, core))
    spot, per_core = [], []
    for _, test in folds:
        spot.append(balanced_accuracy(lab[test], pred[test]))
        per_core.append(core_balanced_accuracy(lab[test], pred[test], cores[test]))
    return spot, per_core


def cross_validate_roc_lda(
    spectra: ArrayLike, labels: ArrayLike, folds: Sequence[Fold], ks: Sequence[int] = DEFAULT_KS
) -> dict[int, CvPredictions]:
    """ROC/LDA in every fold: out-of-fold predictions for every :math:`K`.

    Example:
        >>> rng = np.random.default_rng(1)
        >>> x = rng.normal(size=(80, 20)); y = np.arange(80) % 2; x[:, 3] += 3.0 * y
        >>> cv = cross_validate_roc_lda(x, y, tma_folds(np.arange(80) // 10, 4), ks=[5])
        >>> round(cv[5].spot_accuracy(y), 2)
        0.89
    """
    x = np.asarray(spectra)
    y = np.asarray(labels).reshape(-1)
    out = np.empty((len(ks), y.size), dtype=y.dtype)
    for train, test in folds:
        _, preds = roc_lda_predict(x[train], y[train], x[test], ks)
        out[:, test] = preds
    return {int(k): CvPredictions(out[i], list(folds)) for i, k in enumerate(ks)}


def kernel_weights(model: nn.Module) -> list[nn.Parameter]:
    """The kernels Keras' ``kernel_regularizer`` acts on: weights of convolutions, locally
    connected and dense layers (not biases, not batch-norm parameters).

    Example:
        >>> from preimage.models import IsotopeNet
        >>> len(kernel_weights(IsotopeNet((1, 60), 2)))  # 8 convs, 3 shortcut convs, LC, dense
        13
    """
    kinds = (nn.Conv1d, nn.Linear, LocallyConnected1d)
    return [m.weight for m in model.modules() if isinstance(m, kinds)]


@dataclass(frozen=True)
class KernelL2Loss:
    r"""Cross-entropy plus Keras' ``l2(λ)`` kernel regulariser, :math:`\lambda\sum\lVert W\rVert^2`.

    The sum runs over :func:`kernel_weights`; the metrics add ``cross_entropy`` (the loss
    without the penalty) to those of :func:`~preimage.train.cross_entropy_loss`.

    Attributes:
        l2: the coefficient :math:`\lambda` (thesis table A.2).

    Example:
        >>> net = nn.Sequential(nn.Flatten(), nn.Linear(2, 2))
        >>> with torch.no_grad():
        ...     _ = net[1].weight.fill_(1.0), net[1].bias.fill_(5.0)
        >>> loss, metrics = KernelL2Loss(0.1)(net, torch.zeros(3, 1, 2), torch.zeros(3).long())
        >>> round(float(loss.detach()) - metrics["cross_entropy"], 6)  # 0.1 * 4 unit weights
        0.4
    """

    l2: float

    def __post_init__(self) -> None:
        if not self.l2 >= 0.0:
            raise ConfigError(f"l2 must be >= 0, got {self.l2}")

    def __call__(
        self, model: nn.Module, x: torch.Tensor, y: torch.Tensor
    ) -> tuple[torch.Tensor, dict[str, float]]:
        loss, metrics = cross_entropy_loss(model, x, y)
        metrics["cross_entropy"] = metrics["loss"]
        if self.l2 == 0.0:
            return loss, metrics
        penalty = torch.stack([w.pow(2).sum() for w in kernel_weights(model)]).sum()
        return loss + self.l2 * penalty, metrics


def shift_spectra(x: Tensor, shifts: Tensor) -> Tensor:
    r"""Move spectrum :math:`b` of ``x`` by ``shifts[b]`` bins towards higher bin indices.

    :math:`x'_{b,c,j} = x_{b,c,j - s_b}` for integer :math:`s_b`; a fractional shift interpolates
    linearly between the two neighbouring bins. Bins shifted in from outside the range repeat
    the edge bin (the ends of a spectrum are baseline and noise, so no artificial zeros appear).

    Args:
        x: spectra, ``(batch, maps, n_bins)``.
        shifts: one shift per spectrum, ``(batch,)``, in bins (any sign).

    Raises:
        ShapeError: ``x`` not 3-D or ``shifts`` not one value per spectrum.

    Example:
        >>> x = torch.arange(5.0).reshape(1, 1, 5).repeat(2, 1, 1)
        >>> shift_spectra(x, torch.tensor([1.0, -2.0]))[:, 0].tolist()
        [[0.0, 0.0, 1.0, 2.0, 3.0], [2.0, 3.0, 4.0, 4.0, 4.0]]
    """
    if x.ndim != 3 or shifts.shape != (x.shape[0],):
        raise ShapeError(
            f"need spectra (batch, maps, n_bins) and one shift per spectrum, got {tuple(x.shape)} "
            f"and {tuple(shifts.shape)}"
        )
    n = x.shape[-1]
    grid = torch.arange(n, device=x.device, dtype=x.dtype)
    source = (grid[None, :] - shifts.to(x)[:, None]).clamp(0, n - 1)
    lo = source.floor()
    weight = (source - lo).unsqueeze(1)
    lo_idx = lo.long().unsqueeze(1).expand(-1, x.shape[1], -1)
    hi_idx = (lo_idx + 1).clamp(max=n - 1)
    return (1 - weight) * x.gather(2, lo_idx) + weight * x.gather(2, hi_idx)


@dataclass(frozen=True)
class SpectrumAugment:
    r"""Random m/z shift and gain of each training spectrum (measurement variation, not biology).

    The thesis names mis-aligned peaks (section 7.3.2: "due to the binning or mis-alignment of
    peaks"; section 7.5: features have a fixed position "when neglecting small mass
    mis-alignments") and the variation of data characteristics across measurements (section
    7.5), but trains without augmentation (table A.2 lists none). Each call draws, per spectrum,
    a shift :math:`s \sim \mathcal{U}\{-m, \dots, m\}` bins (:func:`shift_spectra`; on a TOF
    grid a calibration error in ppm moves a peak by nearly the same number of bins over a few
    hundred Da) and a gain :math:`g = e^{\epsilon}`, :math:`\epsilon \sim \mathcal{N}(0,
    \sigma_g^2)`, multiplying the whole spectrum.

    Attributes:
        max_shift: :math:`m`, the largest shift in bins (0: none).
        gain_sd: :math:`\sigma_g` (0: no gain change).

    Example:
        >>> aug = SpectrumAugment(max_shift=2)
        >>> x = torch.zeros(3, 1, 50); x[:, 0, 25] = 1.0
        >>> g = torch.Generator().manual_seed(0)
        >>> [int(p) - 25 for p in aug(x, generator=g)[:, 0].argmax(1)]
        [2, 2, 1]
    """

    max_shift: int = 0
    gain_sd: float = 0.0

    def __post_init__(self) -> None:
        if self.max_shift < 0 or not self.gain_sd >= 0.0:
            raise ConfigError(
                f"need max_shift >= 0 and gain_sd >= 0, got {self.max_shift}, {self.gain_sd}"
            )

    @property
    def active(self) -> bool:
        """Whether a call changes the spectra at all."""
        return self.max_shift > 0 or self.gain_sd > 0.0

    def __call__(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """Augmented copy of the spectra ``x`` (``(batch, maps, n_bins)``)."""
        b = x.shape[0]
        if self.max_shift > 0:
            draw = torch.randint(-self.max_shift, self.max_shift + 1, (b,), generator=generator)
            x = shift_spectra(x, draw.to(x.device))
        if self.gain_sd > 0.0:
            eps = torch.randn(b, 1, 1, generator=generator, dtype=x.dtype) * self.gain_sd
            x = x * eps.exp().to(x.device)
        return x


@dataclass(frozen=True)
class AugmentedLoss:
    """``loss`` on augmented spectra while the model trains, on the spectra as given otherwise.

    The trainer has no batch hook for 1-D data, so the augmentation rides on the objective;
    its draws come from torch's global generator, which the trainer seeds per epoch.

    Attributes:
        loss: the objective, ``loss(model, x, y) -> (loss, metrics)``.
        augment: the augmentation.

    Example:
        >>> net = nn.Sequential(nn.Flatten(), nn.Linear(4, 2))
        >>> x, y = torch.ones(2, 1, 4), torch.zeros(2).long()
        >>> loss = AugmentedLoss(KernelL2Loss(0.0), SpectrumAugment(gain_sd=1.0))
        >>> bool(loss(net.eval(), x, y)[0] == KernelL2Loss(0.0)(net, x, y)[0])
        True
    """

    loss: LossFn
    augment: SpectrumAugment

    def __call__(self, model: nn.Module, x: Tensor, y: Tensor) -> tuple[Tensor, dict[str, float]]:
        return self.loss(model, self.augment(x) if model.training else x, y)


class CosineLr(Callback):
    r"""Cosine learning-rate decay per step, :math:`\eta_t = \tfrac12\eta(1 + \cos(\pi t / T))`.

    :math:`T` is the number of steps of the whole training (epochs times steps per epoch), so
    the step size falls from the configured ``lr`` to 0 at the last step. Use with
    ``lr_decay=1`` (the trainer's step schedule then leaves the rate alone).

    Example:
        >>> x, y = torch.randn(8, 1, 4), torch.randint(0, 2, (8,))
        >>> net = nn.Sequential(nn.Flatten(), nn.Linear(4, 2))
        >>> cfg = TrainConfig(epochs=2, batch_size=4, lr=0.1, lr_decay=1.0, max_shift=0,
        ...                   dequantize=False, device="cpu")
        >>> trainer = Trainer(net, (x, y), None, cfg, callbacks=[CosineLr()], progress=False)
        >>> _ = trainer.fit()
        >>> [round(h["lr"], 3) for h in trainer.history], trainer.optimizer.param_groups[0]["lr"]
        ([0.1, 0.05], 0.0)
    """

    def on_train_start(self, trainer: Trainer) -> None:
        cfg = trainer.config
        per_rank = -(-trainer.train_labels.shape[0] // trainer.context.world_size)
        steps = -(-per_rank // cfg.batch_size)
        if cfg.max_steps_per_epoch is not None:
            steps = min(steps, cfg.max_steps_per_epoch)
        self.total = max(1, cfg.epochs * steps)
        self.base = cfg.lr

    def on_batch_end(self, trainer: Trainer, step: int, metrics: dict[str, float]) -> None:
        assert trainer.optimizer is not None
        lr = 0.5 * self.base * (1.0 + math.cos(math.pi * min(step, self.total) / self.total))
        for group in trainer.optimizer.param_groups:
            group["lr"] = lr


def cross_validate_network(
    build: Callable[[], nn.Module],
    spectra: ArrayLike,
    labels: ArrayLike,
    folds: Sequence[Fold],
    train_config: TrainConfig,
    *,
    loss_fn: LossFn | None = None,
    callbacks: Sequence[Callback] = (),
    progress: bool = False,
) -> tuple[CvPredictions, list[nn.Module]]:
    r"""Train one fresh network per fold (``build()``) and predict that fold's test spots.

    Inputs are fed as ``(n, 1, n_bins)`` float32 tensors; ``train_config`` should switch off the
    image augmentations (``max_shift=0``, ``dequantize=False``), which spectra do not have.
    ``loss_fn`` and ``callbacks`` go to every fold's :class:`~preimage.train.Trainer`.

    Returns:
        The out-of-fold predictions (with logits) and the trained models, in evaluation mode.
    """
    x = torch.as_tensor(np.asarray(spectra, dtype=np.float32)).unsqueeze(1)
    y = torch.as_tensor(np.asarray(labels).reshape(-1)).long()
    predictions = np.empty(y.numel(), dtype=np.int64)
    scores: np.ndarray | None = None
    models = []
    for train, test in folds:
        model = build()
        trainer = Trainer(
            model,
            (x[train], y[train]),
            None,
            train_config,
            loss_fn=loss_fn,
            callbacks=callbacks,
            progress=progress,
        )
        trainer.fit()
        model.eval()
        logits = _predict(model, x[test], trainer.device, train_config.eval_batch_size)
        if scores is None:
            scores = np.empty((y.numel(), logits.shape[1]), dtype=np.float32)
        scores[test] = logits
        predictions[test] = logits.argmax(axis=1)
        models.append(model)
    return CvPredictions(predictions, list(folds), scores), models


@torch.no_grad()
def _predict(model: nn.Module, x: torch.Tensor, device: torch.device, batch: int) -> np.ndarray:
    parts = [model(chunk.to(device)).float().cpu() for chunk in x.split(batch)]
    return torch.cat(parts).numpy()


def median_iqr(values: ArrayLike) -> tuple[float, float]:
    """Median and interquartile range (75th minus 25th percentile) of ``values``.

    Example:
        >>> median_iqr([0.8, 0.82, 0.84, 0.9])
        (0.83, 0.04)
    """
    v = np.asarray(values, dtype=np.float64)
    if v.size == 0:
        raise ConfigError("median_iqr needs at least one value")
    q25, q50, q75 = np.percentile(v, [25, 50, 75])
    return round(float(q50), 12), round(float(q75 - q25), 12)
